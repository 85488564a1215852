"""Activation patching and attribution patching, from a clean prompt into a corrupted one.

Run the corrupted tokens, but put back the *clean* value of one activation; how much of the clean
behaviour returns is ``normalized = (metric_patched - metric_corrupted) / (metric_clean - metric_corrupted)``:
0 means the patch did nothing, 1 means it restored the clean metric.

Grids (``grid=``), each batched per layer: all variants of a layer are stacked into one batch and
run from that layer upwards (see :mod:`interp.intervene.engine`), never one full forward per cell.

================  ===================================================  ===========================
grid              one cell patches                                     index columns
================  ===================================================  ===========================
``resid_pre``     the residual stream entering layer ``l`` at ``pos``  ``layer, pos``
``attn_out``      layer ``l``'s attention output at ``pos``            ``layer, pos``
``mlp_out``       layer ``l``'s MLP output at ``pos``                  ``layer, pos``
``heads``         head ``h``'s ``z`` at every position                 ``layer, head``
``heads_by_pos``  head ``h``'s ``z`` at ``pos``                        ``layer, head, pos``
================  ===================================================  ===========================

:func:`attribution_patching` estimates the same grids from one clean forward, one corrupted forward
and one backward: the first-order change ``(clean_act - corrupted_act) . d metric / d act`` at the
corrupted pass (Nanda's attribution patching). It is exact where the metric is linear in the
activation (e.g. a last-layer head of a model without LayerNorm and a logit-difference metric).

Columns of both: the index columns above, then ``metric_patched`` (float; for attribution, the
first-order estimate ``metric_corrupted + attribution``), ``normalized`` (float), ``metric_clean`` and
``metric_corrupted`` (floats, the same on every row).

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> from interp import LogitDiff
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> clean, corrupted = model.to_tokens("the cat sat"), model.to_tokens("the dog sat")
    >>> metric = LogitDiff(answer=model.to_single_token("a"), wrong=5)
    >>> real = activation_patching(model, clean, corrupted, metric, grid="resid_pre")
    >>> list(real.columns)
    ['layer', 'pos', 'metric_patched', 'normalized', 'metric_clean', 'metric_corrupted']
    >>> estimate = attribution_patching(model, clean, corrupted, metric, grid="heads")
    >>> len(estimate)
    8
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor

from interp.common.checks import check_model, require_finite
from interp.common.metrics import Metric, as_metric
from interp.intervene.engine import cached_run, check_chunk_size, check_layers, progress_bar, run_variants
from model.network.minigpt import MiniGPT

GRIDS = ("resid_pre", "attn_out", "mlp_out", "heads", "heads_by_pos")
_GRID_HOOKS = {  # hooks each grid reads, per layer
    "resid_pre": ("hook_resid_pre",),
    "attn_out": ("hook_resid_pre", "hook_attn_out"),
    "mlp_out": ("hook_resid_mid", "hook_mlp_out"),
    "heads": ("hook_resid_pre", "hook_attn_out", "attn.hook_z"),
    "heads_by_pos": ("hook_resid_pre", "hook_attn_out", "attn.hook_z"),
}
_ATTRIBUTION_HOOK = {"resid_pre": "hook_resid_pre", "attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out"}


def _check(model: MiniGPT, clean: Tensor, corrupted: Tensor, grid: str) -> tuple[Tensor, Tensor]:
    model = check_model(model)
    if grid not in GRIDS:
        raise ValueError(f"grid={grid!r} is not one of {list(GRIDS)}")
    if grid == "mlp_out" and model.cfg.attn_only:
        raise ValueError("grid='mlp_out' needs MLPs, but this model is attention-only")
    clean, corrupted = model.check_tokens(clean), model.check_tokens(corrupted)
    if clean.shape != corrupted.shape:
        raise ValueError(
            f"clean tokens {tuple(clean.shape)} and corrupted tokens {tuple(corrupted.shape)} must have the same "
            "shape, so that every position has a counterpart"
        )
    return clean, corrupted


def _denominator(m_clean: float, m_corr: float) -> float:
    if m_clean == m_corr:
        raise ValueError(
            f"the metric is {m_clean} on both the clean and the corrupted tokens, so patching cannot be "
            "normalised; choose a metric or a corruption that tells them apart"
        )
    return m_clean - m_corr


def _frame(index: list[tuple[int, ...]], columns: list[str], patched: Tensor, m_clean: float, m_corr: float):
    values = patched.detach().cpu().double().numpy()
    cells = np.array(index, dtype=np.int64).reshape(len(index), len(columns))
    data = {name: cells[:, i] for i, name in enumerate(columns)}
    data["metric_patched"] = values
    data["normalized"] = (values - m_corr) / _denominator(m_clean, m_corr)
    data["metric_clean"], data["metric_corrupted"] = np.full(len(values), m_clean), np.full(len(values), m_corr)
    return pd.DataFrame(data)


def _at_positions(base: Tensor, values: Tensor, positions: range) -> Tensor:
    """``[len(positions), batch, pos, d_model]``: copies of ``base`` with ``values`` put at one position each."""
    states = base.expand(len(positions), *base.shape).clone()
    pos = torch.tensor(list(positions), device=base.device)
    states[torch.arange(len(pos)), :, pos] = values[:, pos].transpose(0, 1)
    return states


def _layer_variants(model: MiniGPT, grid: str, layer: int, clean: dict, corr: dict, n_pos: int):
    """``(make, n_variants, stage, index rows)`` for one layer of a grid."""
    name = f"blocks.{layer}."
    if grid == "resid_pre":
        base, values = corr[name + "hook_resid_pre"], clean[name + "hook_resid_pre"]
        return (lambda a, b: _at_positions(base, values, range(a, b))), n_pos, "resid_pre", [(p,) for p in range(n_pos)]
    if grid in ("attn_out", "mlp_out"):
        below, write = ("hook_resid_pre", "hook_attn_out") if grid == "attn_out" else ("hook_resid_mid", "hook_mlp_out")
        base = corr[name + below] + corr[name + write]
        values = corr[name + below] + clean[name + write]
        stage = "attn_sum" if grid == "attn_out" else "mlp_sum"
        return (lambda a, b: _at_positions(base, values, range(a, b))), n_pos, stage, [(p,) for p in range(n_pos)]
    base = corr[name + "hook_resid_pre"] + corr[name + "hook_attn_out"]
    dz = clean[name + "attn.hook_z"] - corr[name + "attn.hook_z"]
    n_heads = model.cfg.n_heads
    delta = model.blocks[layer].attn.write(dz, per_head=True).permute(2, 0, 1, 3)  # head batch pos d_model
    if grid == "heads":
        return (lambda a, b: base + delta[a:b]), n_heads, "attn_sum", [(h,) for h in range(n_heads)]

    def make(a: int, b: int) -> Tensor:
        heads, pos = torch.arange(a, b) // n_pos, torch.arange(a, b) % n_pos
        states = base.expand(b - a, *base.shape).clone()
        states[torch.arange(b - a), :, pos] += delta[heads, :, pos]
        return states

    return make, n_heads * n_pos, "attn_sum", [(h, p) for h in range(n_heads) for p in range(n_pos)]


def activation_patching(
    model: MiniGPT,
    clean_tokens: Int[Tensor, "batch pos"] | str,
    corrupted_tokens: Int[Tensor, "batch pos"] | str,
    metric: Metric | str | Callable[[Tensor, Tensor], Tensor],
    grid: str = "resid_pre",
    *,
    layers: Sequence[int] | None = None,
    chunk_size: int | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Patch each cell of ``grid`` from the clean pass into the corrupted pass; one row per cell (see module doc).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> frame = activation_patching(model, "abcabc", "abdabd", "loss", grid="heads_by_pos")
        >>> list(frame.columns[:3]), len(frame)  # 2 layers x 4 heads x 7 positions
        (['layer', 'head', 'pos'], 56)
    """
    clean_tokens, corrupted_tokens = _check(model, clean_tokens, corrupted_tokens, grid)
    metric, layers, n_pos = as_metric(metric), check_layers(model, layers), clean_tokens.shape[1]
    chunk = check_chunk_size(chunk_size, model, n_pos, metric)
    names = [f"blocks.{layer}.{hook}" for layer in layers for hook in _GRID_HOOKS[grid]]
    index, values = [], []
    with torch.no_grad():
        m_clean, clean = cached_run(model, clean_tokens, names, metric)
        m_corr, corr = cached_run(model, corrupted_tokens, names, metric)
        per_layer = [_layer_variants(model, grid, layer, clean, corr, n_pos) for layer in layers]
        bar = progress_bar(sum(v[1] for v in per_layer), progress, f"patching {grid}")
        for layer, (make, n_variants, stage, rows) in zip(layers, per_layer, strict=True):
            values.append(
                run_variants(model, make, n_variants, layer, stage, metric, corrupted_tokens, chunk, bar.update)
            )
            index += [(layer, *row) for row in rows]
        bar.close()
    columns = ["layer", "head", "pos"] if grid == "heads_by_pos" else ["layer", "head" if grid == "heads" else "pos"]
    patched = torch.cat(values)
    metrics = torch.stack([m_clean, m_corr]).reshape(2)
    require_finite(torch.cat([metrics, patched]), "activation_patching", model, tokens=corrupted_tokens)
    return _frame(index, columns, patched, float(m_clean), float(m_corr))


def attribution_patching(
    model: MiniGPT,
    clean_tokens: Int[Tensor, "batch pos"] | str,
    corrupted_tokens: Int[Tensor, "batch pos"] | str,
    metric: Metric | str | Callable[[Tensor, Tensor], Tensor],
    grid: str = "heads",
    *,
    layers: Sequence[int] | None = None,
) -> pd.DataFrame:
    """First-order estimate of :func:`activation_patching` for ``grid``: one clean pass, one corrupted pass and
    one backward, whatever the number of cells. Same columns (``metric_patched`` is the linear estimate).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> frame = attribution_patching(model, "abcabc", "abdabd", "loss", grid="resid_pre")
        >>> len(frame)  # 2 layers x 7 positions
        14
    """
    if torch.is_inference_mode_enabled():
        raise ValueError("attribution patching needs gradients; call it outside torch.inference_mode()")
    clean_tokens, corrupted_tokens = _check(model, clean_tokens, corrupted_tokens, grid)
    metric, layers, n_pos = as_metric(metric), check_layers(model, layers), clean_tokens.shape[1]
    hook = _ATTRIBUTION_HOOK.get(grid, "attn.hook_z")
    names = [f"blocks.{layer}.{hook}" for layer in layers]
    with torch.inference_mode():  # the clean pass needs no graph, nor the version counters no_grad keeps
        m_clean, clean = cached_run(model, clean_tokens, names, metric)
    first = f"blocks.{min(layers)}.{hook}"

    def start_graph(act: Tensor, hook) -> Tensor:
        # Nothing below the lowest activation asked for needs a graph: record from here on only,
        # with that activation as a leaf (so frozen weights work too). The no_grad below restores the mode.
        torch.set_grad_enabled(True)
        return act.detach().requires_grad_(True)

    with torch.no_grad(), model.hooks([(first, start_graph)]):
        m_corr, corr = cached_run(model, corrupted_tokens, names, metric)
    grads = torch.autograd.grad(m_corr, [corr[n] for n in names], allow_unused=True)
    index, values = [], []
    for layer, name, grad in zip(layers, names, grads, strict=True):
        diff = clean[name] - corr[name].detach()
        attr = torch.zeros_like(diff) if grad is None else diff * grad  # [batch, pos, (head,) d]
        attr = attr.sum(-1).sum(0)  # [pos] or [pos, head]
        if grid == "heads":
            attr = attr.sum(0)
        elif grid == "heads_by_pos":
            attr = attr.T.reshape(-1)  # head-major, like activation_patching
        index += [(layer, *cell) for cell in _cells(grid, model.cfg.n_heads, n_pos)]
        values.append(attr)
    columns = ["layer", "head", "pos"] if grid == "heads_by_pos" else ["layer", "head" if grid == "heads" else "pos"]
    attrs = torch.cat(values).detach()
    metrics = torch.stack([m_clean, m_corr.detach()]).reshape(2)
    require_finite(
        torch.cat([metrics, attrs.to(metrics.dtype)]), "attribution_patching", model, tokens=corrupted_tokens
    )
    m_corr = float(m_corr.detach())
    return _frame(index, columns, attrs.double() + m_corr, float(m_clean), m_corr)


def _cells(grid: str, n_heads: int, n_pos: int) -> list[tuple[int, ...]]:
    if grid == "heads":
        return [(h,) for h in range(n_heads)]
    if grid == "heads_by_pos":
        return [(h, p) for h in range(n_heads) for p in range(n_pos)]
    return [(p,) for p in range(n_pos)]
