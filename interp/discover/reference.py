"""Edge patching one edge at a time, with one hooked forward of the unmodified model per edge.

The reference that :func:`interp.discover.patching.edge_patching` is tested against (to 1e-5) and
benchmarked against: for edge ``(u, d)`` it runs the clean tokens through the model's own forward with
hooks that read the residual stream ``d`` reads and replace what ``d``'s node computes from it by the same
computation, with the model's own steps, on ``residual + corrupted write_u - clean write_u``:

- ``L{l}H{h}.q`` (``.k``, ``.v``): head ``h``'s slice of ``attn.hook_q`` (``hook_k``, ``hook_v``) becomes the
  head's projection of ``ln1(resid_pre + delta)``;
- ``L{l}.mlp``: ``hook_mlp_out`` becomes the MLP's write from ``resid_mid + delta``;
- ``logits``: the delta is added to the final residual (which only the read-out reads).

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
from jaxtyping import Int
from torch import Tensor

from interp.common.checks import require_finite
from interp.discover.graph import EdgeGraph
from interp.discover.layout import graph_name
from interp.discover.patching import COLUMNS
from interp.discover.recording import MetricLike, _check_pair, _edge_frame, _record
from interp.intervene.engine import progress_bar
from model.network.minigpt import MiniGPT


def _edge_hooks(model: MiniGPT, graph: EdgeGraph, edge: int, delta: Tensor) -> list:
    """The hooks that corrupt one edge (read the residual the input reads, replace what its node computes from it)."""
    change = delta[graph.edge_up[edge]]
    read = graph_name(graph.downstream[graph.edge_down[edge]])
    kind, layer, head, slot = read.kind, read.layer, read.index, read.read
    if kind == "logits":  # the final residual is read by the read-out alone
        return [(f"blocks.{model.cfg.n_layers - 1}.hook_resid_post", lambda act, hook: act + change)]
    block, seen = model.blocks[layer], {}

    def grab(act: Tensor, hook) -> None:
        seen["resid"] = act

    if kind == "head":
        slots, heads = torch.tensor(["qkv".index(slot)]), torch.tensor([head])

        def swap_head(act: Tensor, hook) -> Tensor:
            act = act.clone()
            act[:, :, head] = block.attn.head_project(block.attn_input(seen["resid"] + change)[None], slots, heads)[0]
            return act

        return [(f"blocks.{layer}.hook_resid_pre", grab), (f"blocks.{layer}.attn.hook_{slot}", swap_head)]

    def swap_mlp(act: Tensor, hook) -> Tensor:
        return block.mlp_write(seen["resid"] + change)

    return [(f"blocks.{layer}.hook_resid_mid", grab), (f"blocks.{layer}.hook_mlp_out", swap_mlp)]


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
    recording = _record(model, graph, clean, corrupted, metric)
    delta, values = recording.delta, []
    bar = progress_bar(len(index), progress, "edge patching, one edge at a time")
    for edge in index:
        with torch.no_grad(), model.hooks(_edge_hooks(model, graph, edge, delta)):
            values.append(metric(model(clean), clean).reshape(()))
        bar.update(1)
    bar.close()
    values = torch.stack(values) if values else torch.zeros(0)
    require_finite(values, "edge_patching_reference", model, tokens=clean)
    frame = _edge_frame(graph, index, values.double() - recording.metric_clean, metric_patched=values.double().numpy(),
                       metric_clean=recording.metric_clean, metric_corrupted=recording.metric_corrupted)  # fmt: skip
    return frame[COLUMNS]
