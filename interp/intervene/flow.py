"""The causal check of an information-flow edge (:mod:`interp.observe.flow`): move one edge's part of a residual
state to its value on a corrupted prompt, every other part clean, and run the model up from that state.

The part is recomputed on the corrupted pass (its pattern and values for a head, its MLP output, its carried
state), so the patch is exact, and the first-order prediction beside it (the metric's gradient at that state
times the part's change) is what attribution would have said: where the two differ, linear attribution fails
(a saturated attention pattern has almost no gradient, though moving its value changes a lot).
"""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor

from interp.common.checks import check_index, require_finite
from interp.observe.dla import resolve_target
from interp.observe.flow import flow_edge, flow_hook_names, flow_stages, prepare_flow
from model.network.minigpt import MiniGPT


def patch_flow_edge(
    model: MiniGPT,
    clean: Int[Tensor, "1 pos"] | str,
    corrupted: Int[Tensor, "1 pos"] | str,
    edge: object,
    position: int | None = None,
    target: int | str | None = None,
) -> pd.Series:
    """The causal check of one flow edge: the exact change of the metric when ``edge`` alone carries its value
    from ``corrupted``, beside the attribution's first-order prediction of that change (see the module doc).

    The metric is the log-probability of ``target`` at ``position`` (default: the last position and the clean
    model's top prediction there). Returns ``metric_clean, metric_patched, change, predicted_change`` and the
    edge's ``part_norm_clean``, ``part_norm_corrupted``.

    Example:
        >>> from model import MiniGPT
        >>> from interp.observe.flow import information_flow
        >>> model = MiniGPT.from_pretrained("induction-2l")
        >>> flow = information_flow(model, "qwertyuiop qwertyuiop")
        >>> heads = flow[(flow.component_type == "head") & (flow.layer == 1) & (flow.downstream_pos == 14)]
        >>> edge = heads.nlargest(1, "importance")
        >>> check = patch_flow_edge(model, "qwertyuiop qwertyuiop", "qwextyuiop qwertyuiop", edge, position=14)
        >>> bool(check.change < -1)  # the induction head's read of the first "r" built the prediction of "r"
        True
    """
    model, clean, cache = prepare_flow(model, clean, what="patch_flow_edge")
    corrupted = model.check_tokens(corrupted).to(clean.device)
    if corrupted.shape != clean.shape:
        raise ValueError(
            f"clean tokens {tuple(clean.shape)} and corrupted tokens {tuple(corrupted.shape)} must have the same "
            "shape, so that every position has a counterpart"
        )
    n_pos = clean.shape[1]
    edge = flow_edge(model, edge, n_pos)
    position = n_pos - 1 if position is None else check_index(position, n_pos, "position")
    _, corr_cache = model.run_with_cache(corrupted, names_filter=flow_hook_names(model))
    stages = flow_stages(model)

    if target is None:  # the clean model's top guess, from the clean pass's final residual
        with torch.no_grad():
            target_id = int(model.read_out(cache[stages[-1]][0, position]).argmax())
    else:
        target_id = int(resolve_target(model, clean, target)[0, position])
    state = cache[stages[edge.stage_above(model)]].detach().clone()  # the state the edge adds to
    with torch.no_grad():
        part_clean, part_corr = edge.part(model, cache), edge.part(model, corr_cache)
    stage = f"{edge.sublayer}_sum"

    def metric(x: Tensor) -> Tensor:
        logits = model.forward_from(x, edge.layer, stage, rows=[position])[0, 0]
        return F.log_softmax(logits.double(), -1)[target_id]

    with torch.enable_grad():
        leaf = state.requires_grad_(True)
        value = metric(leaf)
        (grad,) = torch.autograd.grad(value, leaf)
    with torch.no_grad():
        patched_state = state.detach().clone()
        patched_state[0, edge.downstream_pos] += part_corr - part_clean
        patched = metric(patched_state)
        predicted = (grad[0, edge.downstream_pos].double() * (part_corr - part_clean).double()).sum()
    result = torch.stack([value.detach(), patched, patched - value.detach(), predicted])
    require_finite(result, "patch_flow_edge", model, tokens=clean)
    return pd.Series({
        "metric_clean": float(result[0]), "metric_patched": float(result[1]), "change": float(result[2]),
        "predicted_change": float(result[3]), "part_norm_clean": float(part_clean.norm()),
        "part_norm_corrupted": float(part_corr.norm()),
    })  # fmt: skip
