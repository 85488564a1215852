"""Path patching in the style of Wang et al. 2022 (IOI): a sender's corrupted value along its direct paths only.

For each sender node, the clean pass is repeated with the sender's **direct** edges into the receivers
carrying its corrupted write, and every other reader of the sender seeing its clean write. Receivers are
inputs (``L1H0.k``), or nodes standing for all their inputs (``L1H0`` = its ``q``, ``k`` and ``v``;
``L1.mlp``; ``logits``). The receivers recompute from there, and so does everything after them. Every
other node is *frozen*: it reads the sender's clean value, because only the listed edges are corrupted.
Unlike the IOI paper's implementation, MLPs are frozen too: a path through an MLP is a path of two edges,
and patching it means listing the MLP as a receiver (and as a sender).

This is the masked forward of :mod:`interp.discover.masked` with one mask per sender; with one receiver
input it is :func:`~interp.discover.patching.edge_patching` of that edge.

Columns: ``upstream`` (the sender), ``downstream`` (the receiver inputs it reaches, comma-separated),
``metric_patched``, ``score`` (``metric_patched - metric_clean``), ``abs_score``, ``normalized``,
``metric_clean``, ``metric_corrupted``; one row per sender, in the order given.

Example:
    >>> import torch
    >>> from model import MiniGPT
    >>> from interp import LossAt
    >>> from model.training.data import repeated_pair_batch
    >>> model = MiniGPT.from_pretrained("induction-2l")
    >>> clean = repeated_pair_batch(8, 15, torch.Generator().manual_seed(0))
    >>> corrupted = repeated_pair_batch(8, 15, torch.Generator().manual_seed(1))
    >>> frame = path_patching(model, clean, corrupted, ["embed", "L0H0"], ["L1H0"], LossAt(range(17, 31)))
    >>> frame[["upstream", "downstream"]].values.tolist()
    [['embed', 'L1H0.q,L1H0.k,L1H0.v'], ['L0H0', 'L1H0.q,L1H0.k,L1H0.v']]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor

from interp.common.checks import require_finite
from interp.discover.graph import SLOTS, EdgeGraph
from interp.discover.layout import graph_name
from interp.discover.masked import _masked_metrics
from interp.discover.recording import MetricLike, _check_pair, _record
from model.network.labels import component_label
from model.network.minigpt import MiniGPT

COLUMNS = ["upstream", "downstream", "metric_patched", "score", "abs_score", "normalized", "metric_clean",
           "metric_corrupted"]  # fmt: skip


def _names(value: object, what: str) -> list[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, Sequence) or isinstance(names, bytes) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{what} must be a name or a list of names, got {value!r}")
    if not names:
        raise ValueError(f"{what} is empty; give at least one")
    return list(names)


def _receiver_inputs(graph: EdgeGraph, receivers: list[str]) -> list[str]:
    out: list[str] = []
    for name in receivers:
        component = graph_name(name)
        if component.kind == "head" and component.read is None:
            inputs = [component_label("head", component.layer, component.index, s) for s in SLOTS]
        else:
            inputs = [name]
        for inp in inputs:
            if inp not in graph.downstream:
                raise KeyError(f"receiver {name!r} is not an input of this model's graph; inputs are e.g. "
                               f"{graph.downstream[0]}, {graph.downstream[-2]}, logits")  # fmt: skip
            if inp not in out:
                out.append(inp)
    return out


def _sender_edges(graph: EdgeGraph, sender: str, inputs: list[str]) -> tuple[list[int], list[str]]:
    if sender not in graph.upstream:
        raise KeyError(f"sender {sender!r} is not a node of this model's graph; nodes are {list(graph.upstream)}")
    pairs = [(sender, d) for d in inputs if (sender, d) in graph.edge_index]
    if not pairs:
        raise ValueError(f"sender {sender} reaches none of the receivers {inputs} directly: it is computed after them")
    return [graph.edge_index[p] for p in pairs], [d for _, d in pairs]


def path_patching(
    model: MiniGPT,
    clean: Int[Tensor, "batch pos"] | str,
    corrupted: Int[Tensor, "batch pos"] | str,
    senders: str | Sequence[str],
    receivers: str | Sequence[str],
    metric: MetricLike,
) -> pd.DataFrame:
    """Each sender's direct paths into ``receivers`` carry its corrupted value, all else clean (module docstring).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> frame = path_patching(model, "abcabc", "abdabd", ["L0H0", "L0H1"], ["L1H0.k", "logits"], "loss")
        >>> frame.downstream.tolist()
        ['L1H0.k,logits', 'L1H0.k,logits']
    """
    model, graph, clean, corrupted, metric = _check_pair(model, clean, corrupted, metric)
    senders, inputs = _names(senders, "senders"), _receiver_inputs(graph, _names(receivers, "receivers"))
    if len(set(senders)) != len(senders):
        raise ValueError(f"senders lists a node twice: {senders}")
    plans = [_sender_edges(graph, s, inputs) for s in senders]
    recording = _record(model, graph, clean, corrupted, metric)
    masks = torch.ones(len(senders), graph.n_edges)
    for row, (edges, _) in enumerate(plans):
        masks[row, edges] = 0.0
    values = _masked_metrics(model, recording, masks, metric)
    require_finite(values, "path_patching", model, tokens=clean)
    patched = values.double().cpu().numpy()
    frame = pd.DataFrame({"upstream": senders, "downstream": [",".join(reached) for _, reached in plans],
                          "metric_patched": patched, "score": patched - recording.metric_clean})  # fmt: skip
    frame["abs_score"] = np.abs(frame["score"])
    frame["normalized"] = recording.normalized(patched)
    frame["metric_clean"], frame["metric_corrupted"] = recording.metric_clean, recording.metric_corrupted
    return frame[COLUMNS]
