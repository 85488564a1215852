"""Exact edge patching: the metric when one edge alone carries its corrupted value, for many edges at once.

This is the ground truth every estimate in :mod:`interp.discover` is scored against. Corrupting edge
``(u, d)`` adds ``corrupted write_u - clean write_u`` to input ``d`` and to nothing else; everything
below ``d`` is the clean pass, and everything that reads ``d``'s node recomputes. So each edge needs only
what runs from ``d`` upwards, and the edges into one layer are stacked into one batch (run from the middle
of the model by :mod:`interp.intervene.engine`, chunked):

- an edge into ``L{l}H{h}.q`` (``.k``, ``.v``): the clean ``resid_pre`` plus the delta goes through ``ln1``
  and head ``h``'s query (key, value) weights; that one head is recomputed with its other two inputs
  clean, its new write replaces its clean one, and the blocks above run;
- an edge into ``L{l}.mlp``: the MLP alone reads ``resid_mid`` plus the delta, its output is added to the
  clean ``resid_mid``, and the blocks above run;
- an edge into ``logits``: the final residual plus the delta is unembedded.

Every variant in a batch is its own sequence, so each one's patched input is a residual stream of its own
(what auto-circuit does with masks, without computing the inputs nobody patched). Only what the metric reads is
computed at the top: the last block's queries and its MLP at the metric's read positions (a logit difference at the
last position costs one query row), and the vocabulary columns the metric reads.
:func:`interp.discover.reference.edge_patching_reference` does the same with one hooked forward of the
model per edge; the tests hold the two to 1e-5.

Columns: ``upstream, downstream, metric_patched, score (metric_patched - metric_clean), abs_score,
metric_clean, metric_corrupted`` (the corrupted pass's logits read against the clean tokens), one row per edge
in graph order.

Example:
    >>> from model import MiniGPT
    >>> from interp import LossAt
    >>> from model.training.data import repeated_pair_batch
    >>> import torch
    >>> model = MiniGPT.from_pretrained("induction-2l")
    >>> clean = repeated_pair_batch(8, 15, torch.Generator().manual_seed(0))
    >>> corrupted = repeated_pair_batch(8, 15, torch.Generator().manual_seed(1))
    >>> frame = edge_patching(model, clean, corrupted, LossAt(range(17, 31)))
    >>> frame.nlargest(2, "abs_score")[["upstream", "downstream"]].values.tolist()
    [['embed', 'L1H0.v'], ['L1H0', 'logits']]
"""

from __future__ import annotations

from collections import defaultdict

import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor

from interp.common.checks import require_finite
from interp.common.metrics import Metric
from interp.discover.recording import MetricLike, _check_pair, _edge_frame, _record, _Recording
from interp.intervene.engine import check_chunk_size, progress_bar, read_columns, run_variants
from model.network.minigpt import MiniGPT

COLUMNS = ["upstream", "downstream", "metric_patched", "score", "abs_score", "metric_clean", "metric_corrupted"]


def _head_variants(model: MiniGPT, recording: _Recording, layer: int, pairs: list[tuple[int, int]], rows):
    """``make(a, b)`` for the edges ``(slot, node)`` into layer ``layer``'s heads (slot = 3 * head + q/k/v): the
    state at ``attn_sum``; at the query positions ``rows`` only, when given (the last block). When every pair is a
    query's (``rows`` given, no rotary), the patched input is built at ``rows`` alone too: the keys and values
    stay clean, so no other position changes. Each variant recomputes its one head through the model's attention
    steps (:class:`~model.network.attention.Attention`: ``head_project``, ``scores``, ``pattern``, ``mix``,
    ``head_write``)."""
    block, b = model.blocks[layer], f"blocks.{layer}."
    attn, clean, delta = block.attn, recording.clean, recording.delta
    pre = clean[b + "hook_resid_pre"]
    base = pre + clean[b + "hook_attn_out"]  # resid_mid: the state the MLP half starts from
    queries_only = rows is not None and attn.cfg.positional != "rotary" and all(s % 3 == 0 for s, _ in pairs)
    slots = torch.tensor([s for s, _ in pairs], device=pre.device)
    nodes = torch.tensor([u for _, u in pairs], device=pre.device)
    heads, kinds = slots // 3, slots % 3
    qkv = torch.stack([clean[b + f"attn.hook_{s}"] for s in "qkv"])  # 3 batch pos head d_head
    head0 = recording.graph.head_node(layer, 0)
    result = recording.clean_writes[head0 : head0 + attn.cfg.n_heads].permute(1, 2, 0, 3)  # batch pos head d_model
    if rows is not None:
        base, result = base.index_select(1, rows), result.index_select(1, rows)
    if queries_only:
        pre, delta = pre.index_select(1, rows), delta.index_select(2, rows)

    def make(start: int, stop: int) -> Tensor:
        h, s = heads[start:stop], kinds[start:stop]
        n, batch = stop - start, pre.shape[0]
        proj = attn.head_project(block.attn_input(pre + delta[nodes[start:stop]]), s, h)  # variant batch pos d_head
        clean_q, k, v = (qkv[i].index_select(2, h).permute(2, 0, 1, 3) for i in range(3))  # variant batch pos d_head
        if queries_only:  # q at rows is the projection; k and v are head h's clean ones
            q = proj
        else:
            q, k, v = (torch.where((s == i)[:, None, None, None], proj, c) for i, c in enumerate((clean_q, k, v)))
        # one head per variant: the head axis of the attention steps has size 1
        q, k, v = (c.reshape(n * batch, c.shape[2], 1, -1) for c in (q, k, v))
        if attn.cfg.positional == "rotary":
            q, k = attn.rotate(q), attn.rotate(k)
        if rows is not None and not queries_only:
            q = q.index_select(1, rows)
        z = attn.mix(attn.pattern(attn.scores(q, k, rows)), v)  # (variant batch) rows 1 d_head
        out = attn.head_write(z.view(n, batch, -1, z.shape[-1]), h)
        return base + out - result.index_select(2, h).permute(2, 0, 1, 3)

    return make


def _mlp_variants(model: MiniGPT, recording: _Recording, layer: int, nodes: list[int], rows: Tensor | None):
    """``make(a, b)``: ``resid_mid`` plus the MLP's write from ``resid_mid + delta`` (at ``rows``, when given)."""
    block = model.blocks[layer]
    mid = recording.clean[f"blocks.{layer}.hook_resid_mid"]
    delta = recording.delta
    if rows is not None:
        mid, delta = mid.index_select(1, rows), delta.index_select(2, rows)
    index = torch.tensor(nodes, device=mid.device)
    return lambda start, stop: mid + block.mlp_write(mid + delta[index[start:stop]])


def _logit_variants(recording: _Recording, nodes: list[int], rows: Tensor | None):
    final, delta = recording.clean[recording.final_name], recording.delta
    if rows is not None:
        final, delta = final.index_select(1, rows), delta.index_select(2, rows)
    index = torch.tensor(nodes, device=final.device)
    return lambda start, stop: final + delta[index[start:stop]]


def _patch_edges(model: MiniGPT, recording: _Recording, index: list[int], metric: Metric, chunk: int, on_chunk):
    """The patched metric of every edge of ``index`` (sorted, graph order), each layer's edges run by the engine."""
    graph, cfg, tokens = recording.graph, model.cfg, recording.tokens
    rows, _ = read_columns(model, metric, tokens.shape[1])
    last = cfg.n_layers - 1

    def run(make, n: int, layer: int, stage: str) -> Tensor:
        return run_variants(model, make, n, layer, stage, metric, tokens, chunk, on_chunk, at_rows=layer == last)

    by_input: dict[int, list[int]] = defaultdict(list)
    for i in index:
        by_input[graph.edge_down[i]].append(graph.edge_up[i])
    values, first = [], 0
    for layer in range(cfg.n_layers):
        at = rows if layer == last else None
        pairs = [(d - first, u) for d in range(first, first + 3 * cfg.n_heads) for u in by_input[d]]
        groups = [pairs] if at is None else [[p for p in pairs if p[0] % 3 == 0], [p for p in pairs if p[0] % 3]]
        parts = []  # the last block: queries (patched at the read rows only) apart from keys and values
        for group in (g for g in groups if g):
            make = _head_variants(model, recording, layer, group, at)
            parts.append((group, run(make, len(group), layer, "attn_sum")))
        if parts:
            got = {p: v for group, vals in parts for p, v in zip(group, vals, strict=True)}
            values.append(torch.stack([got[p] for p in pairs]))
        first += 3 * cfg.n_heads
        if not cfg.attn_only:
            if nodes := by_input[first]:
                values.append(run(_mlp_variants(model, recording, layer, nodes, at), len(nodes), layer, "mlp_sum"))
            first += 1
    if nodes := by_input[first]:
        values.append(run(_logit_variants(recording, nodes, rows), len(nodes), last, "final"))
    return torch.cat(values) if values else torch.zeros(0)


def edge_patching(
    model: MiniGPT,
    clean: Int[Tensor, "batch pos"] | str,
    corrupted: Int[Tensor, "batch pos"] | str,
    metric: MetricLike,
    edges: object = None,
    *,
    chunk_size: int | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """For each edge (``edges=None``: every edge of :func:`~interp.discover.graph.circuit_graph`), the metric of
    the clean pass with that edge alone carrying its corrupted value; batched (see the module docstring).

    ``edges``: a frame with ``upstream, downstream`` columns, a :class:`~interp.discover.circuit.Circuit`, or
    ``(upstream, downstream)`` pairs; rows come back in graph order. ``chunk_size``: sequences per pass.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> frame = edge_patching(model, "abcabc", "abdabd", "loss", edges=[("L0H1", "L1H2.k"), ("embed", "logits")])
        >>> frame[["upstream", "downstream"]].values.tolist()
        [['L0H1', 'L1H2.k'], ['embed', 'logits']]
    """
    model, graph, clean, corrupted, metric = _check_pair(model, clean, corrupted, metric)
    index = sorted(graph.indices(edges))
    chunk = check_chunk_size(chunk_size, model, clean.shape[1], metric)
    recording = _record(model, graph, clean, corrupted, metric, qkv=True)
    bar = progress_bar(len(index), progress, "edge patching")
    with torch.no_grad():
        values = _patch_edges(model, recording, index, metric, chunk, bar.update)
    bar.close()
    require_finite(values, "edge_patching", model, tokens=clean)
    frame = _edge_frame(graph, index, values.double() - recording.metric_clean, metric_patched=values.double().numpy(),
                       metric_clean=recording.metric_clean, metric_corrupted=recording.metric_corrupted)  # fmt: skip
    return frame[COLUMNS]
