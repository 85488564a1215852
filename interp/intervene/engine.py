"""Run a model from the middle: many variants of one residual state, from a layer upwards, batched and chunked.

Ablation sweeps and activation patching change one activation at a time. Nothing below that
activation's layer changes, so each variant needs only the residual stream at that point
(rebuilt from the clean cache) and the blocks above it. :func:`run_variants` stacks the variants
of one layer into one batch ``[variant * batch, pos, d_model]``, runs it upwards in chunks of at
most ``chunk_size`` sequences, and unembeds only what the metric reads (its positions and its
vocabulary columns).

Where a variant starts (``stage``), for block ``l``:

==============  ==============================================  ===========================================
stage           the state ``x`` given                           what runs
==============  ==============================================  ===========================================
``resid_pre``   ``blocks.l.hook_resid_pre``                     block ``l`` and everything above
``attn_sum``    ``resid_pre + attn_out`` (before ``ln1`` when   block ``l``'s ``ln1`` (post-norm only), its
                ``norm="post"``; equal to ``resid_mid`` else)   MLP half, then the blocks above
``mlp_sum``     ``resid_mid + mlp_out`` (before ``ln2`` when    block ``l``'s ``ln2`` (post-norm only), then
                ``norm="post"``; equal to ``resid_post`` else)  the blocks above
==============  ==============================================  ===========================================

Only public modules are used (``model.blocks[l]``, ``.ln1``, ``.ln2``, ``.mlp``, ``model.ln_final``,
``model.W_U``); the tests check every path against the full forward with hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from tqdm import tqdm  # text bars everywhere (tqdm.auto wants ipywidgets in notebooks)

from interp.common.checks import check_index, check_int
from interp.common.metrics import Metric
from model.network.minigpt import MiniGPT

STAGES = ("resid_pre", "attn_sum", "mlp_sum")
CPU_CHUNK_BYTES = 2 * 2**20  # widest activation of one chunk, on CPU (see default_chunk_size)
ACCELERATOR_CHUNK_BYTES = 256 * 2**20  # the same on a GPU


def _embed(model: MiniGPT, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
    """``blocks.0.hook_resid_pre``: token embedding plus position embedding (none for rotary); ``tokens`` are
    checked ids (the public functions of :mod:`interp.intervene` check them where they come in)."""
    x = model.hook_embed(model.embed(tokens))
    if model.pos_embed is not None:
        x = x + model.hook_pos_embed(model.pos_embed(tokens))
    return x


def run_from(
    model: MiniGPT, x: Float[Tensor, "batch pos d_model"], layer: int, stage: str = "resid_pre"
) -> Float[Tensor, "batch pos d_model"]:
    """The final residual (input of ``ln_final``) from the state ``x`` at ``stage`` of block ``layer``."""
    if stage not in STAGES:
        raise ValueError(f"stage={stage!r} is not one of {list(STAGES)}")
    layer = check_index(layer, model.cfg.n_layers, "layer")
    if x.ndim != 3 or x.shape[-1] != model.cfg.d_model:
        raise ValueError(f"the state x must be [batch, pos, d_model={model.cfg.d_model}], got {tuple(x.shape)}")
    post = model.cfg.norm == "post"
    if stage != "resid_pre":
        block = model.blocks[layer]
        if stage == "attn_sum":
            x = block.ln1(x) if post else x  # resid_mid
            if block.mlp is not None:
                mlp_in = block.ln2(x) if block.ln2 is not None and not post else x
                x = x + block.mlp(mlp_in)
                stage = "mlp_sum"
        if stage == "mlp_sum" and post:
            x = block.ln2(x)  # resid_post
        layer += 1
    for block in model.blocks[layer:]:
        x = block(x)
    return x


def unembedding(model: MiniGPT, metric: Metric) -> tuple[Float[Tensor, "d_model read_vocab"], Tensor | None]:
    """``W_U`` and ``b_U`` restricted to the vocabulary columns ``metric`` reads (all when it reads all)."""
    _check_metric(metric)
    W_U, b_U = model.W_U, model.unembed.b_U
    if metric.columns is None:
        return W_U, b_U
    if max(metric.columns) >= model.cfg.d_vocab:
        raise ValueError(f"{metric} reads token ids {metric.columns}, outside the vocabulary of {model.cfg.d_vocab}")
    cols = torch.tensor(metric.columns, device=W_U.device)
    # rows of W_U.t() (that is W_E when tied): index_select on a transposed view would copy all of it.
    # index_select, not W_U[:, cols]: indexing a parameter from Python can deadlock against another thread
    # recording a graph with it (torch 2.13; tests/model/test_concurrency.py)
    return W_U.t().index_select(0, cols).t(), None if b_U is None else b_U.index_select(0, cols)


def read_logits(
    model: MiniGPT,
    resid: Float[Tensor, "... pos d_model"],
    metric: Metric,
    n_pos: int,
    unembed: tuple[Tensor, Tensor | None] | None = None,
) -> Float[Tensor, "... read_pos read_vocab"]:
    """Logits at the positions and vocabulary columns ``metric`` reads, from the final residual.

    ``unembed``: :func:`unembedding` computed once, when calling this for many chunks.
    """
    positions = _check_metric(metric).read_positions(n_pos)
    if positions is not None:
        resid = resid[..., positions, :]
    if model.ln_final is not None:
        resid = model.ln_final(resid)
    W_U, b_U = unembed if unembed is not None else unembedding(model, metric)
    return F.linear(resid, W_U.t(), b_U)


def cached_run(
    model: MiniGPT, tokens: Int[Tensor, "batch pos"], names: Iterable[str], metric: Metric
) -> tuple[Tensor, dict[str, Tensor]]:
    """One forward: ``(metric value, {name: activation})``, unembedding only what the metric reads.

    Gradients flow when called under ``torch.enable_grad()`` (the activations are then graph nodes).
    """
    _check_metric(metric)
    store: dict[str, Tensor] = {}

    def keep(act: Tensor, hook) -> None:
        store[hook.name] = act

    with model.hooks([(name, keep) for name in names]):
        resid = run_from(model, _embed(model, tokens), 0)
    return metric.score(read_logits(model, resid, metric, tokens.shape[1]), tokens), store


def default_chunk_size(model: MiniGPT, n_pos: int, metric: Metric, budget: int | None = None) -> int:
    """Sequences per chunk so that the widest activation of a chunk stays under ``budget`` bytes.

    The default budget is small on CPU (:data:`CPU_CHUNK_BYTES`): a chunk then runs at about the
    size of an ordinary forward. Bigger chunks save no arithmetic, and their temporaries cost page
    faults once they outgrow what the allocator keeps (measured on the GPT-2-sized config: the
    sweep of the top 3 layers took 3.6 forwards with 4 sequences per chunk, 4.1 with 24).
    """
    cfg, n_pos = model.cfg, check_int(n_pos, "n_pos", minimum=1)
    _check_metric(metric)
    if budget is None:
        budget = CPU_CHUNK_BYTES if model.device.type == "cpu" else ACCELERATOR_CHUNK_BYTES
    width = max(3 * cfg.d_model, 0 if cfg.attn_only else cfg.d_ff, cfg.n_heads * n_pos)
    read = metric.read_positions(n_pos)
    read_pos = n_pos if read is None else len(read)
    read_vocab = cfg.d_vocab if metric.columns is None else len(metric.columns)
    per_seq = model.W_E.element_size() * max(n_pos * width, read_pos * read_vocab)
    return max(1, budget // per_seq)


def check_chunk_size(chunk_size: int | None, model: MiniGPT, n_pos: int, metric: Metric) -> int:
    if chunk_size is None:
        return default_chunk_size(model, n_pos, metric)
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of sequences per pass (or None), got {chunk_size!r}")
    return chunk_size


def run_variants(
    model: MiniGPT,
    make: Callable[[int, int], Float[Tensor, "variant batch pos d_model"]],
    n_variants: int,
    layer: int,
    stage: str,
    metric: Metric,
    tokens: Int[Tensor, "batch pos"],
    chunk_size: int,
    on_chunk: Callable[[int], object] | None = None,
) -> Float[Tensor, " variant"]:
    """Metric of each of ``n_variants`` states; ``make(start, stop)`` builds variants ``start..stop-1``.

    Each chunk holds ``max(1, chunk_size // batch)`` variants, run as one batch from ``stage`` of
    ``layer`` upwards; ``on_chunk(n)`` is called after each (e.g. a progress bar's update).
    """
    batch, n_pos = tokens.shape
    per_chunk = max(1, chunk_size // batch)
    unembed = unembedding(model, metric)
    values = []
    for start in range(0, n_variants, per_chunk):
        stop = min(n_variants, start + per_chunk)
        states = make(start, stop)
        resid = run_from(model, states.flatten(0, 1), layer, stage)
        logits = read_logits(model, resid, metric, n_pos, unembed)
        values.append(metric.score(logits.unflatten(0, (stop - start, batch)), tokens))
        if on_chunk is not None:
            on_chunk(stop - start)
    return torch.cat(values) if values else torch.zeros(0)


def position_mask(n_pos: int, positions: list[int] | None, like: Tensor) -> Tensor:
    """``[pos]`` float mask with 1 at ``positions`` (all when None)."""
    if positions is None:
        return torch.ones(n_pos, dtype=like.dtype, device=like.device)
    bad = [p for p in positions if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < n_pos]
    if bad:
        raise IndexError(f"position {bad[0]!r} is out of range for {n_pos} positions (valid 0..{n_pos - 1})")
    mask = torch.zeros(n_pos, dtype=like.dtype, device=like.device)
    mask[positions] = 1
    return mask


def check_layers(model: MiniGPT, layers: Sequence[int] | None) -> list[int]:
    """The layers to visit (all when None); IndexError names the valid range."""
    n = model.cfg.n_layers
    if layers is None:
        return list(range(n))
    if isinstance(layers, str) or not isinstance(layers, int | Iterable):
        raise TypeError(f"layers must be an int, a list of ints or None, got {type(layers).__name__}")
    layers = [layers] if isinstance(layers, int) else list(layers)
    if not layers:
        raise ValueError(f"layers is empty; give at least one layer (valid 0..{n - 1}) or None for all")
    return [check_index(layer, n, "layer") for layer in layers]


def _check_metric(metric: object) -> Metric:
    if not isinstance(metric, Metric):
        raise TypeError(
            f"metric must be a Metric (interp.common.metrics.as_metric makes one from a name or a function), "
            f"got {type(metric).__name__}"
        )
    return metric


def progress_bar(total: int, progress: bool | None, desc: str) -> tqdm:
    """A tqdm bar over variants; ``progress=None`` shows it only on a terminal."""
    total = check_int(total, "total", minimum=0)
    return tqdm(total=total, desc=desc, unit="variant", disable=None if progress is None else not progress, leave=False)
