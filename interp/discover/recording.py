"""The clean and the corrupted pass, recorded once, and the checks every discovery method starts with.

Every method of :mod:`interp.discover` compares a **clean** pass (the behaviour to explain) with passes in
which some edges carry the value their upstream node had on the **corrupted** tokens. :func:`_record` runs
both once and keeps what the methods need in a :class:`_Recording`: each node's write on both passes
(``[node, batch, pos, d_model]``), the residual stream each input reads (``hook_resid_pre``, ``hook_resid_mid``,
the final residual), the clean ``q``, ``k`` and ``v``, and the metric of both passes. (A training *run* is
something else: :mod:`model.storage.runs`.)

The metric is always read against the **clean** tokens: ``metric_corrupted`` is the metric of the
corrupted pass's logits scored on the clean tokens (what the model outputs when every edge is
corrupted), so that "every edge corrupted" and "the corrupted pass" are the same number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.common.checks import check_model, require_finite
from interp.common.metrics import Metric, as_metric
from interp.discover.graph import EdgeGraph, edge_graph
from interp.intervene.engine import score_final
from model.network.minigpt import MiniGPT

MetricLike = Metric | str | Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class _Recording:
    """What :func:`_record` keeps of the clean and the corrupted pass."""

    graph: EdgeGraph
    tokens: Int[Tensor, "batch pos"]  # the clean tokens: every metric is read against them
    clean: dict[str, Tensor]  # hook name -> clean activation
    corr: dict[str, Tensor]  # hook name -> corrupted activation
    clean_writes: Float[Tensor, "node batch pos d_model"]
    corr_writes: Float[Tensor, "node batch pos d_model"]
    metric_clean: float
    metric_corrupted: float

    @property
    def final_name(self) -> str:
        return f"blocks.{self.graph.cfg.n_layers - 1}.hook_resid_post"

    @property
    def delta(self) -> Float[Tensor, "node batch pos d_model"]:
        """``corrupted write - clean write`` of every node: what corrupting one of its edges adds to the input."""
        return self.corr_writes - self.clean_writes

    def normalized(self, values: np.ndarray) -> np.ndarray:
        """``(metric - metric_corrupted) / (metric_clean - metric_corrupted)``: 1 = the clean pass, 0 = the
        corrupted one."""
        gap = self.metric_clean - self.metric_corrupted
        if gap == 0:
            raise ValueError(
                f"the metric is {self.metric_clean} on both the clean pass and the corrupted pass, so nothing can be "
                "normalised; choose a metric or a corruption that tells them apart"
            )
        return (np.asarray(values, dtype=np.float64) - self.metric_corrupted) / gap


def _check_pair(
    model: object, clean: object, corrupted: object, metric: object
) -> tuple[MiniGPT, EdgeGraph, Tensor, Tensor, Metric]:
    """The boundary of every discovery method: the model, its graph, both token inputs (same shape) and the metric."""
    model = check_model(model)
    graph = edge_graph(model.cfg)
    clean, corrupted = model.check_tokens(clean), model.check_tokens(corrupted)
    if clean.shape != corrupted.shape:
        raise ValueError(
            f"clean tokens {tuple(clean.shape)} and corrupted tokens {tuple(corrupted.shape)} must have the same "
            "shape, so that every position has a counterpart"
        )
    return model, graph, clean, corrupted, as_metric(metric)


def _recorded_names(graph: EdgeGraph, qkv: bool = False) -> list[str]:
    """The activations :func:`_record` keeps (with ``q``, ``k``, ``v`` and ``attn_out`` when ``qkv``); the final
    residual last."""
    cfg = graph.cfg
    names = ["hook_embed"] + ([] if graph.n_first == 1 else ["hook_pos_embed"])
    for layer in range(cfg.n_layers):
        b = f"blocks.{layer}."
        names += [b + "hook_resid_pre", b + "attn.hook_z"]
        names += [b + f"attn.hook_{s}" for s in "qkv"] + [b + "hook_attn_out"] if qkv else []
        names += [] if cfg.attn_only else [b + "hook_resid_mid", b + "hook_mlp_out"]
    return [*names, f"blocks.{cfg.n_layers - 1}.hook_resid_post"]


def _node_writes(
    model: MiniGPT, graph: EdgeGraph, store: dict[str, Tensor], other: dict[str, Tensor] | None = None
) -> Float[Tensor, "node batch pos d_model"]:
    """Every node's write, in node order, from one pass's activations; with ``other``, ``other``'s write minus
    ``store``'s (a head's from the difference of the ``z``: one ``W_O`` product). No graph is recorded."""

    def write(name: str) -> Tensor:
        return store[name] if other is None else other[name] - store[name]

    with torch.no_grad():
        out = [write("hook_embed")] + ([] if graph.n_first == 1 else [write("hook_pos_embed")])
        for layer, block in enumerate(model.blocks):
            out += list(block.attn.write(write(f"blocks.{layer}.attn.hook_z"), per_head=True).unbind(-2))
            out += [] if block.mlp is None else [write(f"blocks.{layer}.hook_mlp_out")]
        return torch.stack(out)


def _record_pass(model: MiniGPT, tokens: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
    """One pass of ``tokens`` up to the final residual (no read-out: the metric reads what it needs), keeping
    ``names``; under the caller's grad mode, so that the activations can be graph nodes."""
    store: dict[str, Tensor] = {}

    def keep(act: Tensor, hook) -> None:
        store[hook.name] = act

    with model.hooks([(name, keep) for name in names]):
        model(tokens, stop_at_layer=model.cfg.n_layers)
    return store


def _record(
    model: MiniGPT, graph: EdgeGraph, clean: Tensor, corrupted: Tensor, metric: Metric, *, qkv: bool = False
) -> _Recording:
    """Run the clean and the corrupted tokens once each (no gradients) and keep what discovery needs."""
    names = _recorded_names(graph, qkv)
    with torch.no_grad():
        clean_store, corr_store = _record_pass(model, clean, names), _record_pass(model, corrupted, names)
        final = torch.stack([clean_store[names[-1]], corr_store[names[-1]]])
        metrics = score_final(model, final, metric, clean)
    require_finite(metrics, "circuit discovery", model, tokens=clean)
    return _Recording(
        graph, clean, clean_store, corr_store, _node_writes(model, graph, clean_store),
        _node_writes(model, graph, corr_store), float(metrics[0]), float(metrics[1]),
    )  # fmt: skip


def _edge_frame(graph: EdgeGraph, index: Sequence[int], scores: Tensor, **columns: object) -> pd.DataFrame:
    """``upstream, downstream, [columns], score, abs_score`` for the edges ``index`` (scores in that order)."""
    values = scores.detach().double().cpu().numpy()
    data: dict[str, object] = {
        "upstream": [graph.upstream[graph.edge_up[i]] for i in index],
        "downstream": [graph.downstream[graph.edge_down[i]] for i in index],
    }
    data.update({k: (np.full(len(index), v) if np.isscalar(v) else v) for k, v in columns.items()})
    data["score"], data["abs_score"] = values, np.abs(values)
    return pd.DataFrame(data)
