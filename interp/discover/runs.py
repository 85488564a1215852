"""The clean and the corrupted run, recorded once, and the checks every discovery method starts with.

Every method of :mod:`interp.discover` compares a **clean** run (the behaviour to explain) with runs in
which some edges carry the value their upstream node had on the **corrupted** tokens. :func:`_record`
runs both once and keeps what the methods need: each node's write on both runs (``[node, batch, pos,
d_model]``), the residual stream each input reads (``hook_resid_pre``, ``hook_resid_mid``, the final
residual), the clean ``q``, ``k`` and ``v``, and the metric of both runs.

The metric is always read against the **clean** tokens: ``metric_corrupted`` is the metric of the
corrupted run's logits scored on the clean tokens (what the model outputs when every edge is
corrupted), so that "every edge corrupted" and "the corrupted run" are the same number.
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
from interp.intervene.engine import read_logits, run_from
from model.network.minigpt import MiniGPT

MetricLike = Metric | str | Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class _Runs:
    """What :func:`_record` keeps of the clean and the corrupted run."""

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


def _hook_names(graph: EdgeGraph, qkv: bool = False) -> list[str]:
    """The activations :func:`_record` keeps (with ``q``, ``k``, ``v`` and ``attn_out`` when ``qkv``)."""
    cfg = graph.cfg
    names = ["hook_embed"] + ([] if graph.n_first == 1 else ["hook_pos_embed"])
    for layer in range(cfg.n_layers):
        b = f"blocks.{layer}."
        names += [b + "hook_resid_pre", b + "attn.hook_z"]
        names += [b + f"attn.hook_{s}" for s in "qkv"] + [b + "hook_attn_out"] if qkv else []
        names += [] if cfg.attn_only else [b + "hook_resid_mid", b + "hook_mlp_out"]
    return [*names, f"blocks.{cfg.n_layers - 1}.hook_resid_post"]


def _head_results(model: MiniGPT, layer: int, z: Tensor) -> Float[Tensor, "batch pos head d_model"]:
    """Each head's write ``z_h W_O[h]`` (``attn.hook_result``), computed from ``z`` outside the forward, so that the
    forward keeps its fused output projection."""
    return torch.einsum("bphe,hed->bphd", z, model.blocks[layer].attn.W_O)


def _writes(model: MiniGPT, graph: EdgeGraph, store: dict[str, Tensor]) -> Float[Tensor, "node batch pos d_model"]:
    """Every node's write, in node order, from a run's activations (no graph is recorded)."""
    with torch.no_grad():
        out = [store["hook_embed"]] + ([] if graph.n_first == 1 else [store["hook_pos_embed"]])
        for layer in range(graph.cfg.n_layers):
            out += list(_head_results(model, layer, store[f"blocks.{layer}.attn.hook_z"]).unbind(2))
            out += [] if graph.cfg.attn_only else [store[f"blocks.{layer}.hook_mlp_out"]]
        return torch.stack(out)


def _delta_writes(
    model: MiniGPT, graph: EdgeGraph, clean: dict[str, Tensor], corr: dict[str, Tensor]
) -> Float[Tensor, "node batch pos d_model"]:
    """``corrupted write - clean write`` of every node, built once (a head's from ``z_corr - z_clean``)."""
    with torch.no_grad():
        out = [corr["hook_embed"] - clean["hook_embed"]]
        out += [] if graph.n_first == 1 else [corr["hook_pos_embed"] - clean["hook_pos_embed"]]
        for layer in range(graph.cfg.n_layers):
            z = f"blocks.{layer}.attn.hook_z"
            out += list(_head_results(model, layer, corr[z] - clean[z]).unbind(2))
            if not graph.cfg.attn_only:
                out.append(corr[f"blocks.{layer}.hook_mlp_out"] - clean[f"blocks.{layer}.hook_mlp_out"])
        return torch.stack(out)


def _run(model: MiniGPT, tokens: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
    store: dict[str, Tensor] = {}

    def keep(act: Tensor, hook) -> None:
        store[hook.name] = act

    with model.hooks([(name, keep) for name in names]):  # up to the final residual: the metric unembeds what it reads
        x = model.hook_embed(model.embed(tokens))
        if model.pos_embed is not None:
            x = x + model.hook_pos_embed(model.pos_embed(tokens))
        run_from(model, x, 0)
    return store


def _score_final(
    model: MiniGPT, resid: Float[Tensor, "variant batch pos d_model"], metric: Metric, tokens: Tensor, unembed=None
) -> Float[Tensor, " variant"]:
    """The metric of final residuals (input of ``ln_final``), one value per variant, read against ``tokens``."""
    n_var, batch = resid.shape[:2]
    logits = read_logits(model, resid.flatten(0, 1), metric, tokens.shape[1], unembed)
    return metric.score(logits.unflatten(0, (n_var, batch)), tokens)


def _record(
    model: MiniGPT, graph: EdgeGraph, clean: Tensor, corrupted: Tensor, metric: Metric, *, qkv: bool = False
) -> _Runs:
    """Run the clean and the corrupted tokens once each (no gradients) and keep what discovery needs."""
    names = _hook_names(graph, qkv)
    with torch.no_grad():
        clean_store, corr_store = _run(model, clean, names), _run(model, corrupted, names)
        final = torch.stack([clean_store[names[-1]], corr_store[names[-1]]])
        metrics = _score_final(model, final, metric, clean)
    require_finite(metrics, "circuit discovery", model, tokens=clean)
    return _Runs(
        graph, clean, clean_store, corr_store, _writes(model, graph, clean_store), _writes(model, graph, corr_store),
        float(metrics[0]), float(metrics[1]),
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


def _normalized(values: np.ndarray, runs: _Runs) -> np.ndarray:
    """``(metric - metric_corrupted) / (metric_clean - metric_corrupted)``: 1 = the clean run, 0 = the corrupted."""
    gap = runs.metric_clean - runs.metric_corrupted
    if gap == 0:
        raise ValueError(
            f"the metric is {runs.metric_clean} on both the clean run and the corrupted run, so nothing can be "
            "normalised; choose a metric or a corruption that tells them apart"
        )
    return (np.asarray(values, dtype=np.float64) - runs.metric_corrupted) / gap
