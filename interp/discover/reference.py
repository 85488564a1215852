"""Edge patching one edge at a time, with one hooked forward of the unmodified model per edge.

The reference that :func:`interp.discover.patching.edge_patching` is tested against (to 1e-5) and
benchmarked against: for edge ``(u, d)`` it runs the clean tokens through the model's own forward with two
hooks, one that reads the residual stream that ``d`` reads, and one that replaces what ``d``'s node
computes from it by the same computation on ``residual + corrupted write_u - clean write_u``:

- ``L{l}H{h}.q`` (``.k``, ``.v``): head ``h``'s slice of ``attn.hook_q`` (``hook_k``, ``hook_v``) becomes
  ``ln1(resid_pre + delta) W_Q[h] + b_Q[h]``;
- ``L{l}.mlp``: ``mlp.hook_pre`` becomes ``ln2(resid_mid + delta) W_in + b_in``;
- ``logits``: ``ln_final.hook_normalized`` becomes ``ln_final(final residual + delta)`` (without a final
  LayerNorm, the delta is added to the final residual).

Same columns as :func:`~interp.discover.patching.edge_patching`.

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> frame = edge_patching_reference(model, "abcabc", "abdabd", "loss", edges=[("L0H1", "L1H2.k")])
    >>> frame.metric_patched.round(4).tolist() == frame.metric_clean.add(frame.score).round(4).tolist()
    True
"""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor

from interp.common.checks import require_finite
from interp.discover.graph import EdgeGraph
from interp.discover.layout import parse
from interp.discover.patching import COLUMNS
from interp.discover.runs import MetricLike, _check_pair, _edge_frame, _record
from interp.intervene.engine import progress_bar
from model.network.layers import LayerNorm
from model.network.minigpt import MiniGPT


def _norm(ln: LayerNorm | None, x: Tensor) -> Tensor:
    return x if ln is None else F.layer_norm(x, ln.w.shape, ln.w, ln.b, ln.eps)


def _edge_hooks(model: MiniGPT, graph: EdgeGraph, edge: int, delta: Tensor) -> list:
    """The two hooks (read the residual, replace the input's computation) that corrupt one edge."""
    change = delta[graph.edge_up[edge]]
    kind, layer, head, slot = parse(graph.downstream[graph.edge_down[edge]])
    seen: dict[str, Tensor] = {}

    def grab(act: Tensor, hook) -> None:
        seen["resid"] = act

    if kind == "head":
        block = model.blocks[layer]
        weight, bias = getattr(block.attn, f"W_{slot.upper()}")[head], getattr(block.attn, f"b_{slot.upper()}")

        def swap_head(act: Tensor, hook) -> Tensor:
            new = _norm(block.ln1, seen["resid"] + change) @ weight
            act = act.clone()
            act[:, :, head] = new if bias is None else new + bias[head]
            return act

        return [(f"blocks.{layer}.hook_resid_pre", grab), (f"blocks.{layer}.attn.hook_{slot}", swap_head)]
    if kind == "mlp":
        block = model.blocks[layer]

        def swap_mlp(act: Tensor, hook) -> Tensor:
            return F.linear(_norm(block.ln2, seen["resid"] + change), block.mlp.W_in.t(), block.mlp.b_in)

        return [(f"blocks.{layer}.hook_resid_mid", grab), (f"blocks.{layer}.mlp.hook_pre", swap_mlp)]
    final = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    if model.ln_final is None:
        return [(final, lambda act, hook: act + change)]
    return [
        (final, grab),
        ("ln_final.hook_normalized", lambda act, hook: _norm(model.ln_final, seen["resid"] + change)),
    ]


def edge_patching_reference(
    model: MiniGPT,
    clean: Int[Tensor, "batch pos"] | str,
    corrupted: Int[Tensor, "batch pos"] | str,
    metric: MetricLike,
    edges: object = None,
    *,
    progress: bool | None = None,
) -> pd.DataFrame:
    """:func:`~interp.discover.patching.edge_patching` computed with one full hooked forward per edge (slow;
    the reference the batched version is checked against).

    Example:
        >>> from model import MiniGPT
        >>> model = MiniGPT.from_pretrained("induction-2l")
        >>> len(edge_patching_reference(model, "abcabc", "abdabd", "loss"))
        19
    """
    model, graph, clean, corrupted, metric = _check_pair(model, clean, corrupted, metric)
    index = sorted(graph.indices(edges))
    runs = _record(model, graph, clean, corrupted, metric)
    delta, values = runs.delta, []
    bar = progress_bar(len(index), progress, "edge patching, one edge at a time")
    for edge in index:
        with torch.no_grad(), model.hooks(_edge_hooks(model, graph, edge, delta)):
            values.append(metric(model(clean), clean).reshape(()))
        bar.update(1)
    bar.close()
    values = torch.stack(values) if values else torch.zeros(0)
    require_finite(values, "edge_patching_reference", model, tokens=clean)
    frame = _edge_frame(graph, index, values.double() - runs.metric_clean, metric_patched=values.double().numpy(),
                        metric_clean=runs.metric_clean, metric_corrupted=runs.metric_corrupted)  # fmt: skip
    return frame[COLUMNS]
