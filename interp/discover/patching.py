"""Exact edge patching: the metric when one edge alone carries its corrupted value, for many edges at once.

This is the ground truth every estimate in :mod:`interp.discover` is scored against. Corrupting edge
``(u, d)`` adds ``corrupted write_u - clean write_u`` to input ``d`` and to nothing else; everything
below ``d`` is the clean run, and everything that reads ``d``'s node recomputes. So each edge needs only
what runs from ``d`` upwards, and the edges into one layer are stacked into one batch (run from the middle
of the model by :mod:`interp.intervene.engine`, chunked):

- an edge into ``L{l}H{h}.q`` (``.k``, ``.v``): the clean ``resid_pre`` plus the delta goes through ``ln1``
  and head ``h``'s query (key, value) weights; that one head is recomputed with its other two inputs
  clean, its new write replaces its clean one, and the blocks above run;
- an edge into ``L{l}.mlp``: the MLP alone reads ``resid_mid`` plus the delta, its output is added to the
  clean ``resid_mid``, and the blocks above run;
- an edge into ``logits``: the final residual plus the delta is unembedded.

Every variant in a batch is its own sequence, so each one's patched input is a residual stream of its own
(what auto-circuit does with masks, without computing the inputs nobody patched).
:func:`interp.discover.reference.edge_patching_reference` does the same with one hooked forward of the
model per edge; the tests hold the two to 1e-5.

Columns: ``upstream, downstream, metric_patched, score (metric_patched - metric_clean), abs_score,
metric_clean, metric_corrupted`` (the corrupted run's logits read against the clean tokens), one row per edge
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
from interp.discover.runs import MetricLike, _check_pair, _edge_frame, _record, _Runs
from interp.discover.upward import _rows, _score_rows, _upward
from interp.intervene.engine import check_chunk_size, progress_bar, unembedding
from model.network.minigpt import MiniGPT

COLUMNS = ["upstream", "downstream", "metric_patched", "score", "abs_score", "metric_clean", "metric_corrupted"]


def _head_variants(model: MiniGPT, runs: _Runs, layer: int, pairs: list[tuple[int, int]], rows: Tensor | None):
    """``make(a, b)`` for the edges ``(slot, node)`` into layer ``layer``'s heads (slot = 3 * head + q/k/v): the
    state at ``attn_sum``; at the query positions ``rows`` only, when given (the last block). When every pair is a
    query's (``rows`` given, no rotary), the patched input is built at ``rows`` alone too: the keys and values
    stay clean, so no other position changes."""
    block, b = model.blocks[layer], f"blocks.{layer}."
    attn, clean, delta = block.attn, runs.clean, runs.delta
    pre = clean[b + "hook_resid_pre"]
    base = pre + clean[b + "hook_attn_out"]  # resid_mid: the state the MLP half starts from
    queries_only = rows is not None and attn.cfg.positional != "rotary" and all(s % 3 == 0 for s, _ in pairs)
    slots = torch.tensor([s for s, _ in pairs], device=pre.device)
    nodes = torch.tensor([u for _, u in pairs], device=pre.device)
    heads, kinds = slots // 3, slots % 3
    weight = torch.stack([attn.W_Q, attn.W_K, attn.W_V])  # 3 head d_model d_head
    bias = None if attn.b_Q is None else torch.stack([attn.b_Q, attn.b_K, attn.b_V])
    qkv = torch.stack([clean[b + f"attn.hook_{s}"] for s in "qkv"])  # 3 batch pos head d_head
    head0 = runs.graph.head_node(layer, 0)
    result = runs.clean_writes[head0 : head0 + attn.cfg.n_heads].permute(1, 2, 0, 3)  # batch pos head d_model
    n_pos = pre.shape[1]
    mask = attn.mask[:n_pos, :n_pos]
    if rows is not None:
        base, result, mask = base.index_select(1, rows), result.index_select(1, rows), mask.index_select(0, rows)
    if queries_only:
        pre, delta = pre.index_select(1, rows), delta.index_select(2, rows)

    def make(start: int, stop: int) -> Tensor:
        h, s = heads[start:stop], kinds[start:stop]
        x = pre + delta[nodes[start:stop]]  # variant batch pos d_model (batch rows d_model: queries only)
        x = block.ln1(x) if block.ln1 is not None else x
        proj = torch.einsum("vbpd,vde->vbpe", x, weight[s, h])
        if bias is not None:
            proj = proj + bias[s, h][:, None, None]
        if queries_only:  # q at rows is the projection; k and v are head h's clean ones
            q = proj
            k, v = (qkv[i].index_select(2, h).permute(2, 0, 1, 3) for i in (1, 2))
        else:
            q, k, v = (qkv[i].index_select(2, h).permute(2, 0, 1, 3) for i in range(3))  # variant batch pos d_head
            q, k, v = (torch.where((s == i)[:, None, None, None], proj, c) for i, c in enumerate((q, k, v)))
            if attn.cfg.positional == "rotary":
                q, k = (attn.rotate(c.reshape(-1, n_pos, 1, c.shape[-1])).view(q.shape) for c in (q, k))
            if rows is not None:
                q = q.index_select(2, rows)
        z = ((q @ k.transpose(-1, -2)) * attn.scale + mask).softmax(-1) @ v
        out = torch.einsum("vbpe,ved->vbpd", z, attn.W_O.index_select(0, h))
        return base + out - result.index_select(2, h).permute(2, 0, 1, 3)

    return make


def _mlp_variants(model: MiniGPT, runs: _Runs, layer: int, nodes: list[int], rows: Tensor | None):
    block = model.blocks[layer]
    mid = runs.clean[f"blocks.{layer}.hook_resid_mid"]
    delta = runs.delta
    if rows is not None:
        mid, delta = mid.index_select(1, rows), delta.index_select(2, rows)
    index = torch.tensor(nodes, device=mid.device)

    def make(start: int, stop: int) -> Tensor:
        x = mid + delta[index[start:stop]]
        return mid + block.mlp(block.ln2(x) if block.ln2 is not None else x)

    return make


def _logit_variants(runs: _Runs, nodes: list[int], rows: Tensor):
    final, delta = runs.clean[runs.final_name].index_select(1, rows), runs.delta.index_select(2, rows)
    index = torch.tensor(nodes, device=final.device)
    return lambda start, stop: final + delta[index[start:stop]]


def _run(model, make, n: int, layer: int, stage: str, metric: Metric, runs: _Runs, chunk: int, on_chunk) -> Tensor:
    """The metric of ``n`` variants built by ``make`` (state at ``stage`` of ``layer``), in chunks of sequences."""
    tokens = runs.tokens
    rows = _rows(metric, tokens.shape[1])
    per_chunk, unembed, values = max(1, chunk // tokens.shape[0]), unembedding(model, metric), []
    at_rows = layer == model.cfg.n_layers - 1
    for start in range(0, n, per_chunk):
        states = make(start, min(n, start + per_chunk)).flatten(0, 1)
        resid = states if stage == "final" else _upward(model, states, layer, stage, rows, at_rows=at_rows)
        values.append(_score_rows(model, resid, metric, tokens, unembed))
        on_chunk(values[-1].shape[0])
    return torch.cat(values)


def _patch_edges(model: MiniGPT, runs: _Runs, index: list[int], metric: Metric, chunk: int, on_chunk) -> Tensor:
    """The patched metric of every edge of ``index`` (sorted, graph order)."""
    graph, cfg = runs.graph, model.cfg
    rows = torch.tensor(_rows(metric, runs.tokens.shape[1]), device=runs.tokens.device)
    by_input: dict[int, list[int]] = defaultdict(list)
    for i in index:
        by_input[graph.edge_down[i]].append(graph.edge_up[i])
    values, first = [], 0
    for layer in range(cfg.n_layers):
        at = rows if layer == cfg.n_layers - 1 else None
        pairs = [(d - first, u) for d in range(first, first + 3 * cfg.n_heads) for u in by_input[d]]
        groups = [pairs] if at is None else [[p for p in pairs if p[0] % 3 == 0], [p for p in pairs if p[0] % 3]]
        parts = []  # the last block: queries (patched at the read rows only) apart from keys and values
        for group in (g for g in groups if g):
            make = _head_variants(model, runs, layer, group, at)
            parts.append((group, _run(model, make, len(group), layer, "attn_sum", metric, runs, chunk, on_chunk)))
        if parts:
            got = {p: v for group, vals in parts for p, v in zip(group, vals, strict=True)}
            values.append(torch.stack([got[p] for p in pairs]))
        first += 3 * cfg.n_heads
        if not cfg.attn_only:
            if nodes := by_input[first]:
                make = _mlp_variants(model, runs, layer, nodes, at)
                values.append(_run(model, make, len(nodes), layer, "mlp_sum", metric, runs, chunk, on_chunk))
            first += 1
    if nodes := by_input[first]:
        make = _logit_variants(runs, nodes, rows)
        values.append(_run(model, make, len(nodes), cfg.n_layers - 1, "final", metric, runs, chunk, on_chunk))
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
    the clean run with that edge alone carrying its corrupted value; batched (see the module docstring).

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
    runs = _record(model, graph, clean, corrupted, metric, qkv=True)
    bar = progress_bar(len(index), progress, "edge patching")
    with torch.no_grad():
        values = _patch_edges(model, runs, index, metric, chunk, bar.update)
    bar.close()
    require_finite(values, "edge_patching", model, tokens=clean)
    frame = _edge_frame(graph, index, values.double() - runs.metric_clean, metric_patched=values.double().numpy(),
                        metric_clean=runs.metric_clean, metric_corrupted=runs.metric_corrupted)  # fmt: skip
    return frame[COLUMNS]
