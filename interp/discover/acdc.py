"""ACDC (Conmy et al. 2023): prune the graph greedily, from the logits backwards, edge by edge.

Start with every edge clean. Visit the inputs in reverse forward order (``logits``, the last MLP, the last
heads' ``v``, ``k``, ``q``, ...), and each input's edges from the latest node to the earliest; corrupt the
edge, and keep it corrupted (remove it) when the metric moves by at most ``threshold`` from the current
graph's, else put it back. An input whose node no kept edge reads any more is dropped whole, without a
run (its node's value cannot reach the logits). The result is :meth:`~interp.discover.circuit.Circuit.pruned`,
with each kept edge's score the change its removal would have caused (``metric_without - metric_with``).

The passes are the masked forward of :mod:`interp.discover.masked`, and the candidates of one input are
evaluated in one batch, speculatively: variant ``i`` removes candidates ``0..i`` together. Walking the
variants in order reproduces the one-at-a-time decisions exactly (candidate ``i`` is judged against the
graph with ``0..i-1`` removed) until the first edge that is kept; the speculation is then wrong for the
rest, which are evaluated again on the graph that keeps it. So one input costs one batch per kept edge
plus one, not one forward per edge. The original compares KL divergences; here ``threshold`` is in the
units of ``metric``, and a change of either sign counts.

Example:
    >>> import torch
    >>> from model import MiniGPT
    >>> from interp import LossAt
    >>> from model.training.data import repeated_pair_batch
    >>> model = MiniGPT.from_pretrained("induction-2l")
    >>> clean = repeated_pair_batch(8, 15, torch.Generator().manual_seed(0))
    >>> corrupted = repeated_pair_batch(8, 15, torch.Generator().manual_seed(1))
    >>> circuit = acdc(model, clean, corrupted, LossAt(range(17, 31)), threshold=0.1, progress=False)
    >>> sorted(circuit.edges)
    [('L0H0', 'L1H0.k'), ('L1H0', 'logits'), ('embed', 'L0H0.v'), ('embed', 'L1H0.q'), ('embed', 'L1H0.v')]
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

from interp.common.checks import require_finite
from interp.common.metrics import Metric
from interp.discover.circuit import Circuit
from interp.discover.masked import _masked_metrics
from interp.discover.recording import MetricLike, _check_pair, _record, _Recording
from interp.intervene.engine import progress_bar
from model.network.minigpt import MiniGPT


def _check_threshold(threshold: object) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not threshold >= 0:
        raise ValueError(f"threshold must be a number >= 0 (in the metric's units), got {threshold!r}")
    return float(threshold)


def _prune_input(model: MiniGPT, recording: _Recording, metric: Metric, mask: Tensor, candidates: list[int],
                 current: float, threshold: float, effects: dict[int, float], bar) -> float:  # fmt: skip
    """Decide every candidate edge of one input (updating ``mask`` and ``effects``); return the new metric."""
    start = 0
    while start < len(candidates):
        rest = candidates[start:]
        variants = mask.repeat(len(rest), 1)
        for i, edge in enumerate(rest):
            variants[i:, edge] = 0.0  # variant i removes rest[0..i]
        values = _masked_metrics(model, recording, variants, metric).tolist()
        kept = next((i for i, v in enumerate(values) if abs(v - (values[i - 1] if i else current)) > threshold), None)
        removed = rest if kept is None else rest[:kept]
        mask[removed] = 0.0
        if removed:
            current = values[len(removed) - 1]
        if kept is None:
            bar.update(len(rest))
            return current
        effects[rest[kept]] = values[kept] - current
        bar.update(kept + 1)
        start += kept + 1
    return current


def acdc(
    model: MiniGPT,
    clean: Int[Tensor, "batch pos"] | str,
    corrupted: Int[Tensor, "batch pos"] | str,
    metric: MetricLike,
    threshold: float,
    *,
    progress: bool | None = None,
) -> Circuit:
    """The circuit ACDC keeps at ``threshold`` (metric units); a progress bar counts the edges decided.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> acdc(model, "abcabc", "abdabd", "loss", threshold=1.0, progress=False).size  # nothing moves it by 1
        0
    """
    model, graph, clean, corrupted, metric = _check_pair(model, clean, corrupted, metric)
    threshold = _check_threshold(threshold)
    recording = _record(model, graph, clean, corrupted, metric)
    mask = torch.ones(graph.n_edges, dtype=recording.clean_writes.dtype, device=recording.clean_writes.device)
    leaving: dict[int, list[int]] = {}
    for edge, node in enumerate(graph.edge_up):
        leaving.setdefault(node, []).append(edge)
    current, effects = recording.metric_clean, {}
    bar = progress_bar(graph.n_edges, progress, "ACDC")
    for d in reversed(range(len(graph.downstream))):
        first, owner = graph.offsets[d], graph.owner[d]
        candidates = [first + u for u in reversed(range(graph.n_reads[d]))]
        if owner is not None and not bool(mask[leaving.get(owner, [])].any()):
            mask[candidates] = 0.0  # nothing reads this node any more
            bar.update(len(candidates))
            continue
        current = _prune_input(model, recording, metric, mask, candidates, current, threshold, effects, bar)
    bar.close()
    kept = [i for i in range(graph.n_edges) if mask[i] > 0]
    scores = torch.tensor([effects.get(i, 0.0) for i in kept])
    require_finite(scores, "acdc", model, tokens=clean)
    return Circuit(tuple(graph.edges[i] for i in kept), tuple(scores.tolist())).pruned()
