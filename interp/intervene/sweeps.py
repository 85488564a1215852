"""Batched ablation sweeps: every head (or neuron) ablated one at a time, without one full forward each.

Ablating head ``h`` of layer ``l`` changes nothing below that layer's attention write: the ablated
``resid_mid`` is the clean ``resid_pre + attn_out`` plus head ``h``'s write of ``z_replacement - z``. So
:func:`head_sweep` runs the clean model once with a cache, builds those states for all heads of a
layer at once, and runs only what lies above (layer ``l``'s MLP and the later blocks) on the stacked
``[head * batch]`` batch, in chunks (see :mod:`interp.intervene.engine`). Neurons work the same way from the
MLP write: ``(post_replacement - post)[n] * W_out[n]``.

Each row equals the same single ablation run by :func:`interp.intervene.ablate.ablate` (to float rounding);
the tests check that for zero, mean and resample on every test config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor

from interp.common.checks import check_int, check_model, check_seed, require_finite
from interp.common.metrics import Metric, as_metric
from interp.intervene.engine import (
    cached_run,
    check_chunk_size,
    check_layers,
    position_mask,
    progress_bar,
    run_variants,
)
from interp.intervene.replace import _replacements
from interp.intervene.specs import check_method, resolve_positions
from model.network.minigpt import MiniGPT

SWEEP_COLUMNS = ["metric_clean", "metric_ablated", "delta"]


def _frame(index: list[tuple[int, int]], columns: list[str], clean: float, ablated: Tensor) -> pd.DataFrame:
    values = ablated.cpu().double().numpy()
    cells = np.array(index, dtype=np.int64).reshape(len(index), 2)
    data = {columns[0]: cells[:, 0], columns[1]: cells[:, 1], "metric_clean": np.full(len(values), clean)}
    data["metric_ablated"], data["delta"] = values, values - clean
    return pd.DataFrame(data)


def head_sweep(
    model: MiniGPT,
    tokens: Int[Tensor, "batch pos"] | str,
    method: str = "zero",
    metric: Metric | str | Callable[[Tensor, Tensor], Tensor] = "loss",
    *,
    reference: Int[Tensor, "ref_batch ref_pos"] | None = None,
    seed: int = 0,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    chunk_size: int | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Ablate every head alone (``method`` zero | mean | resample) and measure ``metric``, batched per layer.

    Columns: ``layer`` (int), ``head`` (int), ``metric_clean`` (float, the metric without ablation),
    ``metric_ablated`` (float, with that head ablated at ``positions``, all by default),
    ``delta`` (``metric_ablated - metric_clean``). ``chunk_size`` caps the sequences per pass
    (default: see :func:`interp.intervene.engine.default_chunk_size`); ``progress`` shows a tqdm bar
    (None: only on a terminal).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> frame = head_sweep(model, model.to_tokens("hello there, hello there"), metric="loss")
        >>> list(frame.columns), len(frame)
        (['layer', 'head', 'metric_clean', 'metric_ablated', 'delta'], 8)
    """
    check_method(method)
    tokens, metric = check_model(model).check_tokens(tokens), as_metric(metric)
    layers = check_layers(model, layers)
    n_pos, n_heads = tokens.shape[1], model.cfg.n_heads
    chunk = check_chunk_size(chunk_size, model, n_pos, metric)
    pos = resolve_positions(positions, n_pos)
    z_names = {layer: f"blocks.{layer}.attn.hook_z" for layer in layers}
    names = [f"blocks.{layer}.{n}" for layer in layers for n in ("hook_resid_pre", "hook_attn_out", "attn.hook_z")]
    rows, values = [], []
    with torch.no_grad():
        clean, acts = cached_run(model, tokens, names, metric)
        repl = _replacements(model, method, z_names.values(), tokens, reference, check_seed(seed))
        bar = progress_bar(len(layers) * n_heads, progress, "head sweep")
        for layer in layers:
            z = acts[z_names[layer]]
            dz = (repl[z_names[layer]] - z) if method != "zero" else -z  # [batch, pos, head, d_head]
            dz = dz if pos is None else dz * position_mask(n_pos, pos, dz)[:, None, None]
            base = acts[f"blocks.{layer}.hook_resid_pre"] + acts[f"blocks.{layer}.hook_attn_out"]
            writes = model.blocks[layer].attn.write(dz, per_head=True).permute(2, 0, 1, 3)  # head batch pos d_model

            def make(a: int, b: int, writes=writes, base=base) -> Tensor:
                return base + writes[a:b]

            values.append(run_variants(model, make, n_heads, layer, "attn_sum", metric, tokens, chunk, bar.update))
            rows += [(layer, h) for h in range(n_heads)]
        bar.close()
    values = torch.cat(values)
    require_finite(torch.cat([clean.reshape(1), values]), "head_sweep", model, tokens=tokens)
    return _frame(rows, ["layer", "head"], float(clean), values)


def neuron_sweep(
    model: MiniGPT,
    tokens: Int[Tensor, "batch pos"] | str,
    method: str = "zero",
    metric: Metric | str | Callable[[Tensor, Tensor], Tensor] = "loss",
    *,
    reference: Int[Tensor, "ref_batch ref_pos"] | None = None,
    seed: int = 0,
    layers: Sequence[int] | None = None,
    neurons: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    chunk_size: int | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Ablate every MLP neuron alone (or those listed in ``neurons``, in each of ``layers``), batched and chunked.

    Columns: ``layer`` (int), ``neuron`` (int), ``metric_clean``, ``metric_ablated``, ``delta``
    (floats, as in :func:`head_sweep`). A tqdm bar counts neurons (``progress``; None: only on a terminal).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> frame = neuron_sweep(model, model.to_tokens("hello there"), layers=[1], neurons=range(8))
        >>> frame[["layer", "neuron"]].values[-1].tolist()
        [1, 7]
    """
    check_method(method)
    if check_model(model).cfg.attn_only:
        raise ValueError("neuron_sweep needs MLPs, but this model is attention-only")
    tokens, metric = model.check_tokens(tokens), as_metric(metric)
    layers, d_mlp = check_layers(model, layers), model.cfg.d_mlp
    idx = torch.arange(d_mlp) if neurons is None else torch.as_tensor(_neuron_list(neurons), dtype=torch.long)
    if idx.numel() == 0 or idx.min() < 0 or idx.max() >= d_mlp:
        raise IndexError(f"neurons must be a non-empty list in 0..{d_mlp - 1}, got {idx.tolist()[:8]}")
    idx = idx.to(model.device)
    n_pos = tokens.shape[1]
    chunk = check_chunk_size(chunk_size, model, n_pos, metric)
    pos = resolve_positions(positions, n_pos)
    post_names = {layer: f"blocks.{layer}.mlp.hook_post" for layer in layers}
    names = [f"blocks.{layer}.{n}" for layer in layers for n in ("hook_resid_mid", "hook_mlp_out", "mlp.hook_post")]
    rows, values = [], []
    with torch.no_grad():
        clean, acts = cached_run(model, tokens, names, metric)
        repl = _replacements(model, method, post_names.values(), tokens, reference, check_seed(seed))
        bar = progress_bar(len(layers) * len(idx), progress, "neuron sweep")
        for layer in layers:
            post = acts[post_names[layer]].index_select(-1, idx)
            d_post = (repl[post_names[layer]].index_select(-1, idx) - post) if method != "zero" else -post
            d_post = d_post if pos is None else d_post * position_mask(n_pos, pos, d_post)[:, None]
            base = acts[f"blocks.{layer}.hook_resid_mid"] + acts[f"blocks.{layer}.hook_mlp_out"]
            W_out = model.blocks[layer].mlp.W_out.index_select(0, idx)

            def make(a: int, b: int, d_post=d_post, base=base, W_out=W_out) -> Tensor:
                return base + torch.einsum("bpn,nd->nbpd", d_post[:, :, a:b], W_out[a:b])

            values.append(run_variants(model, make, len(idx), layer, "mlp_sum", metric, tokens, chunk, bar.update))
            rows += [(layer, int(n)) for n in idx.tolist()]
        bar.close()
    values = torch.cat(values)
    require_finite(torch.cat([clean.reshape(1), values]), "neuron_sweep", model, tokens=tokens)
    return _frame(rows, ["layer", "neuron"], float(clean), values)


def _neuron_list(neurons: object) -> list[int]:
    """``neurons=`` as a list of ints (one int, a list, a range or a 1-d integer tensor)."""
    if isinstance(neurons, Tensor):
        neurons = neurons.tolist()
    if isinstance(neurons, str) or not isinstance(neurons, int | Iterable):
        raise TypeError(f"neurons must be an int or a list of ints, got {type(neurons).__name__}")
    return [check_int(n, "every neuron") for n in ([neurons] if isinstance(neurons, int) else neurons)]
