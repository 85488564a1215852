"""Direct logit attribution (DLA) and logit differences.

DLA: with the final LayerNorm's scale frozen at its cached value (``ln_final.hook_scale``) the map
from the final residual ``x`` to a logit is affine::

    logit_t = sum_c  x_c . u_t / scale   +   ln_final.b . W_U[:, t]   +   b_U[t]
    u_t     = centre(ln_final.w * W_U[:, t])          (centre(v) = v - mean(v))

where ``x_c`` are the residual writes of :mod:`interp.observe.residual`. So the contribution of every
component plus the two bias rows (``ln_final.b`` and ``b_U``) sums exactly to the logit, and with a
``contrast`` token to the logit difference ``logit_target - logit_contrast``. With ``norm="none"``
there is no LayerNorm: ``u_t = W_U[:, t]`` and there is no ``ln_final.b`` row. Post-norm models are
refused (see :data:`interp.observe.residual.POST_NORM_MESSAGE`). Only the needed unembedding columns are ever
used: nothing of size ``[component, batch, pos, d_vocab]`` is built.

Granularity (``per``), coarse to fine; every level sums to the same logit:

- ``"layer"``: ``embed``, ``pos_embed``, ``L{l}`` (attention + MLP of block l), bias rows
- ``"component"``: ``embed``, ``pos_embed``, ``L{l}.attn``, ``L{l}.mlp``, bias rows
- ``"head"``: ``embed``, ``pos_embed``, ``L{l}H{h}``, ``L{l}.attn_bias``, ``L{l}.mlp``, bias rows
- ``"neuron"``: as ``"head"`` but each MLP split into ``L{l}N{n}`` (neuron n's write) and ``L{l}.mlp_bias``

Targets: ``None`` (default) is the actual next token ``tokens[:, pos + 1]``; at the **last position**,
which has no next token, it is the model's own top prediction (argmax of the logits there). A target
or contrast may also be an int (every position), a one-character string (``"e"``, or a special such as
``"<bos>"``) or a tensor broadcastable to ``[batch, pos]``. Ids outside the vocabulary raise a ValueError.

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> tokens = model.to_tokens("hello")
    >>> logits, cache = model.run_with_cache(tokens)
    >>> df = direct_logit_attribution(model, tokens, cache, target="o", per="head")
    >>> total = df.groupby(["batch", "pos"]).contribution.sum()
    >>> bool(abs(total.loc[(0, 4)] - logits[0, 4, model.to_single_token("o")].item()) < 1e-4)
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.common.checks import check_int, prepare, require_finite
from interp.common.vocabulary import nullable_ints
from interp.observe.residual import (
    _final_resid_name,
    _head_writes,
    _label_frame,
    _strings,
    long_frame,
    require_additive,
)
from model.network.cache import ActivationCache
from model.network.labels import component_label
from model.network.minigpt import MiniGPT
from model.network.token_ids import char_id

PER = ("layer", "component", "head", "neuron")
DLA_COLUMNS = ["batch", "pos", "pos_str", "target", "target_str", "contrast", "contrast_str", "component", "layer"]
DLA_COLUMNS += ["head", "neuron", "component_type", "contribution"]
TargetLike = int | str | Sequence[int] | Int[Tensor, "..."] | None


@torch.no_grad()
def final_logits(
    model: MiniGPT, tokens: Int[Tensor, "batch pos"], cache: ActivationCache | None = None
) -> Float[Tensor, "batch pos d_vocab"]:
    """The model's logits recomputed from the cache: the final residual through ``model.read_out``.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> tokens = model.to_tokens("hi")
        >>> logits, cache = model.run_with_cache(tokens)
        >>> bool(torch.allclose(final_logits(model, tokens, cache), logits, atol=1e-5))
        True
    """
    model, _, cache = prepare(model, tokens, cache, what="final_logits")
    return cache_logits(model, cache)


def cache_logits(model: MiniGPT, cache: ActivationCache) -> Float[Tensor, "batch pos d_vocab"]:
    """:func:`final_logits` from a model and a cache the caller has checked (``prepare``): the final residual through
    ``model.read_out``, on the cache's device. A KeyError names the final residual when the cache lacks it."""
    name = _final_resid_name(model)
    if not isinstance(cache, ActivationCache) or name not in cache:
        raise KeyError(f"{name!r} is not in this cache; the logits are read out from the final residual: record it")
    final = cache[name]
    return model.read_out(final.to(model.device)).to(final.device)


def resolve_target(
    model: MiniGPT, tokens: Int[Tensor, "batch pos"], target: TargetLike, logits: Tensor | None = None, name="target"
) -> Int[Tensor, "batch pos"]:
    """``target`` as a ``[batch, pos]`` id tensor (see the module docstring for what ``None`` means).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> resolve_target(model, model.to_tokens("ab"), "c").tolist()
        [[17, 17, 17]]
    """
    if target is None:
        if logits is None:
            raise ValueError(f"{name}=None needs the logits to pick the last position's target")
        out = torch.empty_like(tokens)
        out[:, :-1] = tokens[:, 1:]
        out[:, -1] = logits[:, -1].argmax(-1)
        return out
    if isinstance(target, (bool, float)):
        raise TypeError(f"{name} must be a token id, a character or an id tensor, got {target!r}")
    if isinstance(target, str):
        if model.tokenizer is None:
            raise ValueError(f"{name}={target!r} is a string but this model has no tokenizer; pass a token id")
        target = char_id(model.tokenizer, target, what=name)
    try:
        ids = torch.as_tensor(target, device=tokens.device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be a token id, a character or an id tensor: {err}") from None
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    try:
        ids = torch.broadcast_to(ids, tokens.shape)
    except RuntimeError:
        raise ValueError(
            f"{name} has shape {tuple(ids.shape)}, not broadcastable to tokens {tuple(tokens.shape)}"
        ) from None
    bad = ids[(ids < 0) | (ids >= model.cfg.d_vocab)]
    if bad.numel():
        raise ValueError(f"{name} ids {bad.unique().tolist()[:5]} are outside the vocabulary [0, {model.cfg.d_vocab})")
    return ids.long()


def readout_directions(
    model: MiniGPT, cache: ActivationCache, target: Tensor, contrast: Tensor | None
) -> tuple[Float[Tensor, "batch pos d_model"], list[tuple[str, str, Tensor]]]:
    """Per-position read-out direction of ``target`` (minus ``contrast``) with the final LayerNorm's centring, gain
    and recorded scale folded in, and the bias rows: what turns a residual write into its direct logit effect. The
    model and the ``[batch, pos]`` ids are the caller's, checked; a cache without ``ln_final.hook_scale`` (pre-norm
    models) is a KeyError naming it."""
    device = target.device
    W_U_rows = model.W_U.detach().to(device).T  # d_vocab d_model: only the gathered rows are used
    direction = W_U_rows[target] if contrast is None else W_U_rows[target] - W_U_rows[contrast]
    biases: list[tuple[str, str, Tensor]] = []
    readout = direction
    if model.ln_final is not None:
        readout = direction * model.ln_final.w.detach().to(device)
        readout = (readout - readout.mean(-1, keepdim=True)) / cache["ln_final.hook_scale"].to(device)
        if model.ln_final.b is not None:
            biases.append(("ln_final.b", "ln_bias", direction @ model.ln_final.b.detach().to(device)))
    if model.unembed.has_bias:
        b_U = model.unembed.b_U.detach().to(device)
        biases.append(("b_U", "unembed_bias", b_U[target] if contrast is None else b_U[target] - b_U[contrast]))
    return readout, biases


def _dot(x: Float[Tensor, "batch pos d_model"], readout: Float[Tensor, "batch pos d_model"]) -> Tensor:
    return (x * readout).sum(-1)[None]  # 1 batch pos


def _label(kind: str, layer: int, index: int | None = None) -> tuple:
    """A row's label ``(component, layer, head, neuron, component_type)``: the component by its label, None where an
    index does not apply."""
    head, neuron = (index, None) if kind == "head" else (None, index)
    return component_label(kind, layer, index), layer, head, neuron, kind


def _layer_rows(model: MiniGPT, cache: ActivationCache, layer: int, readout: Tensor, per: str) -> list:
    """``(labels, values [k, batch, pos])`` blocks for one layer (labels: :func:`_label`)."""
    block, rows = model.blocks[layer], []
    if per == "layer":
        write = cache["attn_out", layer] + (cache["mlp_out", layer] if block.mlp is not None else 0)
        return [([_label("layer", layer)], _dot(write, readout))]
    if per == "component":
        rows.append(([_label("attn", layer)], _dot(cache["attn_out", layer], readout)))
    else:
        if ("result", layer) in cache:
            heads = torch.einsum("bphd,bpd->hbp", _head_writes(model, cache, layer), readout)
        else:  # project the readout into each head's z space: no [batch, pos, head, d_model] tensor
            z = cache["z", layer]
            W_O = block.attn.W_O.detach().to(readout.device).flatten(0, 1)  # (head d_head) d_model
            heads = (z * (readout @ W_O.T).view(z.shape)).sum(-1).permute(2, 0, 1)
        rows.append(([_label("head", layer, h) for h in range(heads.shape[0])], heads))
        if block.attn.b_O is not None:
            b_O = block.attn.b_O.detach().to(readout.device)
            rows.append(([_label("attn_bias", layer)], (readout @ b_O)[None]))
    if block.mlp is None:
        return rows
    if per != "neuron":
        return [*rows, ([_label("mlp", layer)], _dot(cache["mlp_out", layer], readout))]
    W_out = block.mlp.W_out.detach().to(readout.device)
    neurons = (cache["post", layer] * (readout @ W_out.T)).permute(2, 0, 1)  # d_mlp batch pos
    rows.append(([_label("neuron", layer, n) for n in range(len(neurons))], neurons))
    if block.mlp.b_out is not None:
        b_out = block.mlp.b_out.detach().to(readout.device)
        rows.append(([_label("mlp_bias", layer)], (readout @ b_out)[None]))
    return rows


@torch.no_grad()
def direct_logit_attribution(
    model: MiniGPT,
    tokens: Int[Tensor, "batch pos"],
    cache: ActivationCache | None = None,
    target: TargetLike = None,
    contrast: TargetLike = None,
    per: str = "component",
) -> pd.DataFrame:
    """Each component's direct contribution to the target's logit (or to ``target - contrast``).

    ``cache=None`` runs the model once. See the module docstring for the maths, the ``per``
    granularities, and what the targets mean. A groupby-sum over ``(batch, pos)`` equals the
    logit (or logit difference) to 1e-4.

    Columns (rows ordered by batch, pos, then component in residual order; see :mod:`interp.common.vocabulary`):
        batch, pos (int); pos_str (the token at pos); target (int, token id) and target_str; contrast (Int64,
        <NA> without a contrast) and contrast_str; component (str, e.g. ``embed``, ``L1H3``, ``L0.mlp``,
        ``L0N17``, ``ln_final.b``, ``b_U``); layer (Int64, <NA> outside the blocks); head (Int64, <NA> unless a
        head); neuron (Int64, <NA> unless a neuron); component_type (str: embed, pos_embed, layer, attn, head,
        attn_bias, mlp, neuron, mlp_bias, ln_bias, unembed_bias); contribution (float64).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> tokens = model.to_tokens("abc")
        >>> df = direct_logit_attribution(model, tokens, target="d", contrast="e", per="layer")
        >>> list(df.component[:5]), df.target_str[0], bool(df["head"].isna().all())
        (['embed', 'pos_embed', 'L0', 'L1', 'ln_final.b'], 'd', True)
    """
    if per not in PER:
        raise ValueError(f"per={per!r} is not one of {list(PER)}")
    model, tokens, cache = prepare(model, tokens, cache, what="direct_logit_attribution")
    require_additive(model, "direct logit attribution")
    logits = cache_logits(model, cache) if target is None or contrast is None else None
    target_ids = resolve_target(model, tokens, target, logits)
    contrast_ids = None if contrast is None else resolve_target(model, tokens, contrast, logits, name="contrast")
    readout, biases = readout_directions(model, cache, target_ids, contrast_ids)
    blocks = [([("embed", None, None, None, "embed")], _dot(cache["hook_embed"], readout))]
    if "hook_pos_embed" in cache:
        blocks.append(([("pos_embed", None, None, None, "pos_embed")], _dot(cache["hook_pos_embed"], readout)))
    for layer in range(model.cfg.n_layers):
        blocks += _layer_rows(model, cache, layer, readout, per)
    blocks += [([(name, None, None, None, kind)], value[None]) for name, kind, value in biases]
    labels = _label_frame(tuple(row for rows, _ in blocks for row in rows))
    values = torch.cat([value for _, value in blocks])
    require_finite(values, "direct logit attribution", model, cache=cache)
    return long_frame(
        values,
        labels,
        "contribution",
        token_columns(model, target_ids, contrast_ids),
        pos_str=_strings(model, tokens),
    )


def token_columns(model: MiniGPT, target: Tensor, contrast: Tensor | None = None) -> dict[str, object]:
    """``target, target_str, contrast, contrast_str`` per position (flat, ``batch * pos``): the columns that say
    which logit a row explains. Without a contrast, ``contrast`` is ``<NA>`` (nullable) and so is its string."""
    for name, ids in (("target", target), ("contrast", contrast)):
        if not isinstance(ids, Tensor) and (name == "target" or ids is not None):
            raise TypeError(f"{name} must be a tensor of token ids, got {type(ids).__name__}")
    target_flat = target.reshape(-1).cpu()
    columns: dict[str, object] = {
        "target": target_flat.numpy(),
        "target_str": _strings(model, target_flat),
    }
    if contrast is None:
        columns["contrast"] = nullable_ints(np.zeros(len(target_flat), dtype=np.int64), missing=True)
        columns["contrast_str"] = np.full(len(target_flat), None, dtype=object)
    else:
        contrast_flat = contrast.reshape(-1).cpu()
        columns["contrast"] = nullable_ints(contrast_flat.numpy())
        columns["contrast_str"] = _strings(model, contrast_flat)
    return columns


@torch.no_grad()
def logit_difference(
    model: MiniGPT,
    tokens: Int[Tensor, "batch pos"],
    cache: ActivationCache | None = None,
    target: TargetLike = None,
    contrast: TargetLike = None,
) -> Float[Tensor, "batch pos"]:
    """``logit[target] - logit[contrast]`` at every position, from the cached final activations.

    This is what the rows of ``direct_logit_attribution(..., target, contrast)`` sum to;
    ``target=None`` means the next token as there. ``contrast`` is required.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> tokens = model.to_tokens("ab")
        >>> logit_difference(model, tokens, target="c", contrast="c").abs().max().item()
        0.0
    """
    if contrast is None:
        raise ValueError("logit_difference needs a contrast token (an id, a character or an id tensor)")
    model, tokens, cache = prepare(model, tokens, cache, what="logit_difference")
    logits = cache_logits(model, cache)
    target_ids = resolve_target(model, tokens, target, logits)
    contrast_ids = resolve_target(model, tokens, contrast, logits, name="contrast")
    diff = logits.gather(-1, target_ids[..., None])[..., 0] - logits.gather(-1, contrast_ids[..., None])[..., 0]
    require_finite(diff, "logit_difference", model, cache=cache)
    return diff


def contributions_at(
    frame: pd.DataFrame, pos: int, top: int | None = None, batch: int = 0
) -> tuple[pd.DataFrame, float]:
    """The rows of a :func:`direct_logit_attribution` frame at one position of one sequence (only the ``top`` largest
    by magnitude, when given, largest first) and the sum of all of them there: the logit (difference) they
    add up to.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> rows, total = contributions_at(direct_logit_attribution(model, "hello", target="o"), pos=4, top=3)
        >>> len(rows), bool(abs(total - model(model.to_tokens("hello"))[0, 4, model.to_single_token("o")]) < 1e-4)
        (3, True)
    """
    if not isinstance(frame, pd.DataFrame) or not set(DLA_COLUMNS) <= set(frame.columns):
        raise TypeError("frame must be the frame of direct_logit_attribution(model, tokens, ...)")
    pos, batch = check_int(pos, "pos", minimum=0), check_int(batch, "batch", minimum=0)
    here = frame[(frame["batch"] == batch) & (frame["pos"] == pos)]
    if here.empty:
        raise IndexError(f"the frame has no rows at batch {batch}, pos {pos}; it covers positions "
                         f"0..{int(frame['pos'].max())} of {int(frame['batch'].max()) + 1} sequence(s)")  # fmt: skip
    total = float(here["contribution"].sum())
    if top is not None:
        here = here.loc[here["contribution"].abs().nlargest(check_int(top, "top", minimum=1)).index]
    return here, total
