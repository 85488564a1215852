"""The engine: many variants of one run, each a residual state in the middle of the model, run to the metric.

Ablation sweeps, activation patching, exact edge patching, ACDC, path patching and TransformerLens's patching
helpers all change one run in many ways, and nothing below a change moves. Each builds its variants of one
residual state, and :func:`run_variants` runs them: stacked in the batch ``[variant * batch, pos, d_model]``, in
chunks of at most ``chunk_size`` sequences (a memory budget, :func:`default_chunk_size`), up through the model's
own partial forward (:meth:`~model.network.minigpt.MiniGPT.forward_from`), computing only the positions and
vocabulary columns the metric reads, and scoring each variant.

Where a variant starts: a stage of block ``layer`` (``resid_pre``, ``attn_sum``, ``resid_mid``, ``mlp_sum``,
``resid_post``: :class:`~model.network.layers.Block` says what each holds), or ``"final"``, the final residual
that only the read-out follows (the masked forward of :mod:`interp.discover.masked` ends there). The maths of the
forward pass is the model's; nothing here recomputes attention or an MLP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm import tqdm  # text bars everywhere (tqdm.auto wants ipywidgets in notebooks)

from interp.common.checks import check_index, check_int
from interp.common.metrics import Metric
from model.network.layers import STAGES
from model.network.minigpt import MiniGPT

CPU_CHUNK_BYTES = 2 * 2**20  # widest activation of one chunk, on CPU (see default_chunk_size)
ACCELERATOR_CHUNK_BYTES = 256 * 2**20  # the same on a GPU


def read_columns(model: MiniGPT, metric: Metric, n_pos: int) -> tuple[Tensor | None, Tensor | None]:
    """``(rows, columns)``: the positions and vocabulary ids ``metric`` reads, as index tensors (None: all)."""
    _check_metric(metric)
    rows = metric.read_positions(n_pos)
    if metric.columns is not None and max(metric.columns) >= model.cfg.d_vocab:
        raise ValueError(f"{metric} reads token ids {metric.columns}, outside the vocabulary of {model.cfg.d_vocab}")
    as_index = lambda ids: None if ids is None else torch.tensor(ids, dtype=torch.long, device=model.device)  # noqa: E731
    return as_index(rows), as_index(metric.columns)


def score_final(
    model: MiniGPT, final: Float[Tensor, "... batch pos d_model"], metric: Metric, tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "..."]:
    """The metric of final residuals (one value per leading variant), read out at what the metric reads only."""
    rows, columns = read_columns(model, metric, tokens.shape[1])
    final = final if rows is None else final.index_select(-2, rows)
    return metric.score(model.read_out(final, columns), tokens)


def cached_run(
    model: MiniGPT, tokens: Int[Tensor, "batch pos"], names: Iterable[str], metric: Metric
) -> tuple[Tensor, dict[str, Tensor]]:
    """One forward: ``(metric value, {name: activation})``, reading out only the vocabulary columns the metric reads.

    Gradients flow when called under ``torch.enable_grad()`` (the activations are then graph nodes).
    """
    _check_metric(metric)
    store: dict[str, Tensor] = {}

    def keep(act: Tensor, hook) -> None:
        store[hook.name] = act

    with model.hooks([(name, keep) for name in names]):
        final = model(tokens, stop_at_layer=model.cfg.n_layers)
    return score_final(model, final, metric, tokens), store


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
    *,
    at_rows: bool = False,
) -> Float[Tensor, " variant"]:
    """Metric of each of ``n_variants`` states; ``make(start, stop)`` builds variants ``start..stop-1``.

    Each chunk holds ``max(1, chunk_size // batch)`` variants, run as one batch from ``stage`` of ``layer`` (or
    ``"final"``) upwards; ``on_chunk(n)`` is called after each (e.g. a progress bar's update). ``at_rows``: ``make``
    builds the states at the metric's read positions only, which is allowed where nothing later reads another
    position (past the last block's attention).
    """
    if stage != "final" and stage not in STAGES:
        raise ValueError(f"stage={stage!r} is not one of {[*STAGES, 'final']}")
    layer = check_index(layer, model.cfg.n_layers, "layer")
    batch, n_pos = tokens.shape
    rows, columns = read_columns(model, metric, n_pos)
    per_chunk, values = max(1, chunk_size // batch), []
    for start in range(0, n_variants, per_chunk):
        stop = min(n_variants, start + per_chunk)
        states = make(start, stop).flatten(0, 1)
        if stage == "final":
            picked = states if at_rows or rows is None else states.index_select(1, rows)
            logits = model.read_out(picked, columns)
        else:
            logits = model.forward_from(states, layer, stage, None if at_rows else rows, columns=columns)
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
