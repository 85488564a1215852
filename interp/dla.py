"""Direct logit attribution (DLA), logit differences and the logit lens.

DLA: with the final LayerNorm's scale frozen at its cached value (``ln_final.hook_scale``) the map
from the final residual ``x`` to a logit is affine::

    logit_t = sum_c  x_c . u_t / scale   +   ln_final.b . W_U[:, t]   +   b_U[t]
    u_t     = centre(ln_final.w * W_U[:, t])          (centre(v) = v - mean(v))

where ``x_c`` are the residual writes of :mod:`interp.residual`. So the contribution of every
component plus the two bias rows (``ln_final.b`` and ``b_U``) sums exactly to the logit, and with a
``contrast`` token to the logit difference ``logit_target - logit_contrast``. With ``norm="none"``
there is no LayerNorm: ``u_t = W_U[:, t]`` and there is no ``ln_final.b`` row. Post-norm models are
refused (see :data:`interp.residual.POST_NORM_MESSAGE`). Only the needed unembedding columns are ever
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
    >>> df = direct_logit_attribution(model, cache, tokens, target="o", per="head")
    >>> total = df.groupby(["batch", "pos"]).contribution.sum()
    >>> bool(abs(total.loc[(0, 4)] - logits[0, 4, model.tokenizer.encode("o")[0]].item()) < 1e-4)
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from interp.checks import check_cache, check_model, require_finite
from interp.residual import accumulated_resid, final_resid_name, head_writes, long_frame, require_additive
from model.cache import ActivationCache
from model.minigpt import MiniGPT

PER = ("layer", "component", "head", "neuron")
DLA_COLUMNS = ["batch", "pos", "target", "contrast", "component", "layer", "head", "neuron", "kind", "contribution"]
LENS_COLUMNS = ["batch", "pos", "layer", "stage", "target", "target_token", "target_prob", "target_rank"]
LENS_COLUMNS += ["top_tokens", "top_probs"]
TargetLike = int | str | Sequence[int] | Int[Tensor, "..."] | None


def _prepare(model: MiniGPT, cache: ActivationCache | None, tokens) -> tuple[ActivationCache, Tensor]:
    tokens = check_model(model).check_tokens(tokens)
    if cache is None:
        _, cache = model.run_with_cache(tokens)
    check_cache(cache)
    cached = tuple(cache["hook_embed"].shape[:2])
    if cached != tuple(tokens.shape):
        raise ValueError(f"tokens have shape {tuple(tokens.shape)} but the cache was recorded on {cached}")
    return cache, tokens.to(cache["hook_embed"].device)


@torch.no_grad()
def final_logits(model: MiniGPT, cache: ActivationCache) -> Float[Tensor, "batch pos d_vocab"]:
    """The model's logits recomputed from the cache (final normalised residual through the unembedding).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> logits, cache = model.run_with_cache(model.to_tokens("hi"))
        >>> bool(torch.allclose(final_logits(model, cache), logits, atol=1e-5))
        True
    """
    name = "ln_final.hook_normalized" if check_model(model).ln_final is not None else final_resid_name(model)
    x = check_cache(cache)[name]
    logits = x @ model.W_U.detach().to(x.device)
    return logits if model.b_U is None else logits + model.b_U.detach().to(x.device)


def _token_id(model: MiniGPT, text: str, name: str) -> int:
    if model.tokenizer is None:
        raise ValueError(f"{name}={text!r} is a string but this model has no tokenizer; pass a token id")
    if text in model.tokenizer.symbols:
        return model.tokenizer.symbols.index(text)
    ids = model.tokenizer.encode(text)
    if len(ids) != 1:
        raise ValueError(f"{name}={text!r} encodes to {len(ids)} tokens; give exactly one character (or an id)")
    return ids[0]


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
        target = _token_id(model, target, name)
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


def _directions(
    model: MiniGPT, cache: ActivationCache, target: Tensor, contrast: Tensor | None
) -> tuple[Float[Tensor, "batch pos d_model"], list[tuple[str, str, Tensor]]]:
    """Per-position readout direction (LN centring, weight and frozen scale folded in) and the bias rows."""
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
    if model.b_U is not None:
        b_U = model.b_U.detach().to(device)
        biases.append(("b_U", "unembed_bias", b_U[target] if contrast is None else b_U[target] - b_U[contrast]))
    return readout, biases


def _dot(x: Float[Tensor, "batch pos d_model"], readout: Float[Tensor, "batch pos d_model"]) -> Tensor:
    return (x * readout).sum(-1)[None]  # 1 batch pos


def _layer_rows(model: MiniGPT, cache: ActivationCache, layer: int, readout: Tensor, per: str) -> list:
    """``(labels, values [k, batch, pos])`` blocks for one layer; labels are (component, layer, head, neuron, kind)."""
    block, rows = model.blocks[layer], []
    if per == "layer":
        write = cache["attn_out", layer] + (cache["mlp_out", layer] if block.mlp is not None else 0)
        return [([(f"L{layer}", layer, -1, -1, "layer")], _dot(write, readout))]
    if per == "component":
        rows.append(([(f"L{layer}.attn", layer, -1, -1, "attn")], _dot(cache["attn_out", layer], readout)))
    else:
        if ("result", layer) in cache:
            heads = torch.einsum("bphd,bpd->hbp", head_writes(model, cache, layer), readout)
        else:  # project the readout into each head's z space: no [batch, pos, head, d_model] tensor
            z = cache["z", layer]
            W_O = block.attn.W_O.detach().to(readout.device).flatten(0, 1)  # (head d_head) d_model
            heads = (z * (readout @ W_O.T).view(z.shape)).sum(-1).permute(2, 0, 1)
        labels = [(f"L{layer}H{h}", layer, h, -1, "head") for h in range(heads.shape[0])]
        rows.append((labels, heads))
        if block.attn.b_O is not None:
            b_O = block.attn.b_O.detach().to(readout.device)
            rows.append(([(f"L{layer}.attn_bias", layer, -1, -1, "attn_bias")], (readout @ b_O)[None]))
    if block.mlp is None:
        return rows
    if per != "neuron":
        return [*rows, ([(f"L{layer}.mlp", layer, -1, -1, "mlp")], _dot(cache["mlp_out", layer], readout))]
    W_out = block.mlp.W_out.detach().to(readout.device)
    neurons = (cache["post", layer] * (readout @ W_out.T)).permute(2, 0, 1)  # d_mlp batch pos
    rows.append(([(f"L{layer}N{n}", layer, -1, n, "neuron") for n in range(neurons.shape[0])], neurons))
    if block.mlp.b_out is not None:
        b_out = block.mlp.b_out.detach().to(readout.device)
        rows.append(([(f"L{layer}.mlp_bias", layer, -1, -1, "mlp_bias")], (readout @ b_out)[None]))
    return rows


@torch.no_grad()
def direct_logit_attribution(
    model: MiniGPT,
    cache: ActivationCache | None,
    tokens: Int[Tensor, "batch pos"],
    target: TargetLike = None,
    contrast: TargetLike = None,
    per: str = "component",
) -> pd.DataFrame:
    """Each component's direct contribution to the target's logit (or to ``target - contrast``).

    ``cache=None`` runs the model once. See the module docstring for the maths, the ``per``
    granularities, and what the targets mean. A groupby-sum over ``(batch, pos)`` equals the
    logit (or logit difference) to 1e-4.

    Columns (rows ordered by batch, pos, then component in residual order):
        batch, pos (int); target (int, token id); contrast (int, token id, -1 without a contrast);
        component (str, e.g. ``embed``, ``L1H3``, ``L0.mlp``, ``L0N17``, ``ln_final.b``, ``b_U``);
        layer (int, -1 outside the blocks); head (int, -1 unless a head); neuron (int, -1 unless a
        neuron); kind (str: embed, pos_embed, layer, attn, head, attn_bias, mlp, neuron, mlp_bias,
        ln_bias, unembed_bias); contribution (float64).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> tokens = model.to_tokens("abc")
        >>> df = direct_logit_attribution(model, None, tokens, target="d", contrast="e", per="layer")
        >>> list(df.component[:5])
        ['embed', 'pos_embed', 'L0', 'L1', 'ln_final.b']
    """
    if per not in PER:
        raise ValueError(f"per={per!r} is not one of {list(PER)}")
    require_additive(model, "direct logit attribution")
    cache, tokens = _prepare(model, cache, tokens)
    logits = final_logits(model, cache) if target is None or contrast is None else None
    target_ids = resolve_target(model, tokens, target, logits)
    contrast_ids = None if contrast is None else resolve_target(model, tokens, contrast, logits, name="contrast")
    readout, biases = _directions(model, cache, target_ids, contrast_ids)
    blocks = [([("embed", -1, -1, -1, "embed")], _dot(cache["hook_embed"], readout))]
    if "hook_pos_embed" in cache:
        blocks.append(([("pos_embed", -1, -1, -1, "pos_embed")], _dot(cache["hook_pos_embed"], readout)))
    for layer in range(model.cfg.n_layers):
        blocks += _layer_rows(model, cache, layer, readout, per)
    blocks += [([(name, -1, -1, -1, kind)], value[None]) for name, kind, value in biases]
    labels = pd.DataFrame([row for rows, _ in blocks for row in rows], columns=DLA_COLUMNS[4:9])
    values = torch.cat([value for _, value in blocks])
    require_finite(values, "direct logit attribution", model, cache=cache)
    contrast_col = torch.full_like(target_ids, -1) if contrast_ids is None else contrast_ids
    return long_frame(values, labels, "contribution", {"target": target_ids, "contrast": contrast_col})


@torch.no_grad()
def logit_difference(
    model: MiniGPT, cache: ActivationCache, tokens: Int[Tensor, "batch pos"], target: TargetLike, contrast: TargetLike
) -> Float[Tensor, "batch pos"]:
    """``logit[target] - logit[contrast]`` at every position, from the cached final activations.

    This is what the rows of ``direct_logit_attribution(..., target, contrast)`` sum to;
    ``target=None`` means the next token as there. ``contrast`` is required.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> tokens = model.to_tokens("ab")
        >>> _, cache = model.run_with_cache(tokens)
        >>> logit_difference(model, cache, tokens, "c", "c").abs().max().item()
        0.0
    """
    if contrast is None:
        raise ValueError("logit_difference needs a contrast token (an id, a character or an id tensor)")
    cache, tokens = _prepare(model, cache, tokens)
    logits = final_logits(model, cache)
    target_ids = resolve_target(model, tokens, target, logits)
    contrast_ids = resolve_target(model, tokens, contrast, logits, name="contrast")
    diff = logits.gather(-1, target_ids[..., None])[..., 0] - logits.gather(-1, contrast_ids[..., None])[..., 0]
    require_finite(diff, "logit_difference", model, cache=cache)
    return diff


def _token_names(model: MiniGPT, ids: np.ndarray) -> np.ndarray:
    if model.tokenizer is None:
        return ids
    return np.asarray(model.tokenizer.symbols, dtype=object)[ids]


@torch.no_grad()
def logit_lens(
    model: MiniGPT,
    cache: ActivationCache | None,
    tokens: Int[Tensor, "batch pos"],
    target: TargetLike = None,
    k: int = 5,
) -> pd.DataFrame:
    """The residual at every layer boundary read out through the final LayerNorm and the unembedding.

    Each stage of :func:`interp.residual.accumulated_resid` is normalised by ``ln_final`` with its
    *own* scale (the usual logit lens; ``norm="none"`` and ``"post"`` models have no final LayerNorm,
    so the stage goes straight to ``W_U``) and turned into probabilities. The last stage reproduces
    the model's output. ``target`` is resolved as in :func:`direct_logit_attribution`.

    Columns (rows ordered by batch, pos, layer):
        batch, pos (int); layer (int, stage index 0 .. n_layers); stage (str, e.g. ``L1.resid_pre``);
        target (int id); target_token (str, or the id without a tokenizer); target_prob (float);
        target_rank (int, 0 = the top token); top_tokens (list of k str, or ids without a tokenizer,
        most likely first); top_probs (list of k floats).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> df = logit_lens(model, None, model.to_tokens("hi"), k=3)
        >>> df.shape, len(df.top_tokens[0])
        ((9, 10), 3)
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= check_model(model).cfg.d_vocab:
        raise ValueError(f"k must be an int in [1, {model.cfg.d_vocab}], got {k!r}")
    cache, tokens = _prepare(model, cache, tokens)
    stages, labels = accumulated_resid(model, cache)
    if model.ln_final is not None:
        ln = model.ln_final
        stages = F.layer_norm(stages, ln.w.shape, ln.w.detach(), None if ln.b is None else ln.b.detach(), ln.eps)
    logits = stages @ model.W_U.detach().to(stages.device)
    probs = (logits if model.b_U is None else logits + model.b_U.detach().to(stages.device)).softmax(-1)
    target_ids = resolve_target(model, tokens, target, final_logits(model, cache) if target is None else None)
    target_prob = probs.gather(-1, target_ids.expand(len(labels), -1, -1)[..., None])  # stage batch pos 1
    require_finite(target_prob, "logit_lens", model, cache=cache)
    rank = (probs > target_prob).sum(-1)
    top_probs, top_ids = probs.topk(k, dim=-1)
    order = (1, 2, 0)  # -> batch pos stage
    n_stage, batch, pos = rank.shape
    ids = top_ids.permute(*order, 3).reshape(-1, k).cpu().numpy()
    return pd.DataFrame(
        {
            "batch": np.repeat(np.arange(batch), pos * n_stage),
            "pos": np.tile(np.repeat(np.arange(pos), n_stage), batch),
            "layer": np.tile(np.arange(n_stage), batch * pos),
            "stage": np.tile(np.asarray(labels, dtype=object), batch * pos),
            "target": np.repeat(target_ids.reshape(-1).cpu().numpy(), n_stage),
            "target_token": np.repeat(_token_names(model, target_ids.reshape(-1).cpu().numpy()), n_stage),
            "target_prob": target_prob[..., 0].permute(*order).reshape(-1).double().cpu().numpy(),
            "target_rank": rank.permute(*order).reshape(-1).cpu().numpy(),
            "top_tokens": [list(row) for row in _token_names(model, ids)],
            "top_probs": top_probs.permute(*order, 3).reshape(-1, k).double().cpu().numpy().tolist(),
        }
    )
