"""Reading one feature: where it fires most (with the character marked), how its activations spread, which
characters its decoder direction promotes and suppresses, and its direct logit attribution.

- :func:`sae_activations`: every non-zero feature activation, one row per (batch, pos, feature);
- :func:`top_activations`: the ``k`` strongest activations of a feature, each with its context, the
  activating character marked ``«c»``;
- :func:`activation_histogram`: the distribution of a feature's non-zero activations;
- :func:`feature_logit_effects`: the decoder direction through the final LayerNorm's weight (centred, as the
  LayerNorm centres) and the unembedding, the weights' view of what a feature says about the next token;
- :func:`feature_dla`: each active feature's direct contribution to the target logit at each position (its
  activation times its decoder direction, through the frozen final LayerNorm scale and the unembedding), plus
  the SAE's bias and error rows, which together sum exactly to the direct contribution of the activation the SAE
  reconstructs (see :mod:`interp.observe.dla`).

Example:
    >>> from model import MiniGPT
    >>> from interp.features.sae import SAE
    >>> model, sae = MiniGPT.from_pretrained("minigpt-text"), SAE.from_pretrained("minigpt-text-resid-post-0")
    >>> tokens = model.to_tokens(["the value of the attribute is", "the name of the class is here"])
    >>> top = top_activations(model, tokens, sae=sae, feature=int(sae_activations(model, tokens, sae=sae).feature[0]))
    >>> list(top.columns[:4]), bool((top.activation.diff().dropna() <= 0).all())
    (['feature', 'batch', 'pos', 'pos_str'], True)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor

from interp.common.checks import check_int, check_model, require_finite
from interp.common.vocabulary import nullable_ints
from interp.features.common import RESIDUAL_WRITES, _check_feature, _check_sae, _prepare_features, _write_point
from interp.features.sae import SAE
from interp.observe.dla import cache_logits, readout_directions, resolve_target, token_columns
from interp.observe.residual import pos_strings
from model.network.cache import ActivationCache
from model.network.token_ids import token_labels

MARK = ("«", "»")  # not among the 64 symbols, so a marked context is never ambiguous


def sae_activations(
    model: object, tokens: Int[Tensor, "batch pos"], cache: ActivationCache | None = None, *, sae: SAE
) -> pd.DataFrame:
    """Every non-zero activation: columns batch, pos, pos_str, feature, activation (rows by batch, pos, then
    activation, strongest first)."""
    model, tokens, _, acts = _prepare_features(model, tokens, cache, sae, what="sae_activations")
    require_finite(acts, "sae_activations", model)
    b, p, f = (acts > 0).nonzero(as_tuple=True)
    values = acts[b, p, f].double().cpu().numpy()
    strs = pos_strings(model, tokens)
    b, p, f = (t.cpu().numpy() for t in (b, p, f))
    frame = pd.DataFrame({"batch": b, "pos": p, "pos_str": strs[b, p], "feature": f, "activation": values})
    return frame.sort_values(["batch", "pos", "activation"], ascending=[True, True, False], ignore_index=True)


def _contexts(labels: list[list[str]], rows: np.ndarray, cols: np.ndarray, left: int, right: int) -> dict:
    before = ["".join(labels[b][max(p - left, 0) : p]) for b, p in zip(rows, cols, strict=True)]
    after = ["".join(labels[b][p + 1 : p + 1 + right]) for b, p in zip(rows, cols, strict=True)]
    here = [labels[b][p] for b, p in zip(rows, cols, strict=True)]
    marked = [f"{x}{MARK[0]}{c}{MARK[1]}{y}" for x, c, y in zip(before, here, after, strict=True)]
    return {"context_left": before, "context_right": after, "context": marked}


def top_activations(
    model: object,
    tokens: Int[Tensor, "batch pos"],
    cache: ActivationCache | None = None,
    *,
    sae: SAE,
    feature: int,
    k: int = 10,
    left: int = 12,
    right: int = 4,
) -> pd.DataFrame:
    """The ``k`` strongest activations of ``feature`` on ``tokens``, strongest first (fewer if it fires less).

    Columns: feature, batch, pos, pos_str (the activating character), activation, context_left (up to ``left``
    characters before it), context_right (up to ``right`` after it, in the same sequence), context (the three
    joined, the activating character marked ``«c»``), next_str (the character after it; <NA> at the end).
    """
    model, tokens, _, acts = _prepare_features(model, tokens, cache, sae, what="top_activations")
    feature = _check_feature(sae, feature)
    k, left, right = (check_int(v, n, minimum=m) for v, n, m in ((k, "k", 1), (left, "left", 0), (right, "right", 0)))
    column = acts[..., feature].flatten().cpu()
    order = column.argsort(descending=True, stable=True)[: min(k, int((column > 0).sum()))]
    rows, cols = np.divmod(order.numpy(), tokens.shape[1])
    labels = [token_labels(model.tokenizer, seq) for seq in tokens.tolist()]
    nexts = [labels[b][p + 1] if p + 1 < tokens.shape[1] else None for b, p in zip(rows, cols, strict=True)]
    return pd.DataFrame({
        "feature": np.full(len(order), feature), "batch": rows, "pos": cols,
        "pos_str": [labels[b][p] for b, p in zip(rows, cols, strict=True)],
        "activation": column[order].double().numpy(), **_contexts(labels, rows, cols, left, right),
        "next_str": pd.array(nexts, dtype="object"),
    })  # fmt: skip


def activation_histogram(
    model: object,
    tokens: Int[Tensor, "batch pos"],
    cache: ActivationCache | None = None,
    *,
    sae: SAE,
    feature: int,
    bins: int = 20,
) -> pd.DataFrame:
    """The non-zero activations of ``feature`` in ``bins`` equal-width bins from 0 to its maximum.

    Columns: feature, bin_start, bin_end, count (int), firing_rate (the fraction of all tokens in this bin). No
    rows when the feature never fires on ``tokens``.
    """
    model, tokens, _, acts = _prepare_features(model, tokens, cache, sae, what="activation_histogram")
    feature, bins = _check_feature(sae, feature), check_int(bins, "bins", minimum=1)
    values = acts[..., feature].flatten().double().cpu()
    fired = values[values > 0]
    if len(fired) == 0:
        return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in (("feature", "int64"), ("bin_start", "float64"),
                             ("bin_end", "float64"), ("count", "int64"), ("firing_rate", "float64"))})  # fmt: skip
    counts = torch.histc(fired, bins=bins, min=0.0, max=float(fired.max())).long()
    edges = np.linspace(0.0, float(fired.max()), bins + 1)
    return pd.DataFrame({"feature": np.full(bins, feature), "bin_start": edges[:-1], "bin_end": edges[1:],
                         "count": counts.numpy(), "firing_rate": counts.double().numpy() / len(values)})  # fmt: skip


@torch.no_grad()
def feature_logit_effects(model: object, sae: SAE, feature: int, k: int = 10) -> pd.DataFrame:
    """The ``k`` characters a feature's decoder direction most promotes and the ``k`` it most suppresses.

    ``logit_effect`` = ``centre(W_dec[feature] * ln_final.w) @ W_U`` (no final LayerNorm: ``W_dec[feature] @ W_U``):
    the direct effect on each logit of writing the unit direction, up to the LayerNorm's scale. Needs an SAE
    that writes the residual stream. Columns: feature, side (``promoted`` / ``suppressed``), rank (0 = strongest
    on its side), target, target_str, logit_effect.

    Example:
        >>> from model import MiniGPT
        >>> model, sae = MiniGPT.from_pretrained("minigpt-text"), SAE.from_pretrained("minigpt-text-resid-post-1")
        >>> effects = feature_logit_effects(model, sae, 0, k=3)
        >>> effects.side.tolist(), bool(effects.logit_effect.iloc[0] >= effects.logit_effect.iloc[-1])
        (['promoted', 'promoted', 'promoted', 'suppressed', 'suppressed', 'suppressed'], True)
    """
    model = check_model(model)
    sae = _check_sae(model, sae)
    feature, k = _check_feature(sae, feature), check_int(k, "k", minimum=1)
    if _write_point(sae).rsplit(".", 1)[-1] not in RESIDUAL_WRITES:
        raise ValueError(f"the SAE writes {_write_point(sae)!r}, not the residual stream: its decoder direction has no "
                         "direct path to the logits")  # fmt: skip
    direction = sae.W_dec[feature].detach().to(model.device)
    if model.ln_final is not None:
        direction = direction * model.ln_final.w.detach()
        direction = direction - direction.mean()
    effect = (direction @ model.W_U.detach()).double().cpu()
    k = min(k, len(effect))
    top, bottom = effect.topk(k), (-effect).topk(k)
    ids = torch.cat([top.indices, bottom.indices])
    return pd.DataFrame(
        {
            "feature": np.full(2 * k, feature),
            "side": ["promoted"] * k + ["suppressed"] * k,
            "rank": np.tile(np.arange(k), 2),
            "target": ids.numpy(),
            "target_str": token_labels(model.tokenizer, ids.tolist()),
            "logit_effect": effect[ids].numpy(),
        }
    )


@torch.no_grad()
def feature_dla(
    model: object,
    tokens: Int[Tensor, "batch pos"],
    cache: ActivationCache | None = None,
    *,
    sae: SAE,
    target: object = None,
) -> pd.DataFrame:
    """Each active feature's direct contribution to the target's logit, at every position (see the module docstring).

    ``target`` as in :func:`interp.direct_logit_attribution` (None: the next token; at the last position the
    model's top guess). Rows per (batch, pos): one per active feature (component ``F{i}``, component_type
    ``feature``), then ``sae.b_dec`` (``sae_bias``), a skip transcoder's ``sae.W_skip`` (``sae_skip``: its affine
    path) and ``sae.error`` (``sae_error``: what the SAE misses); their sum
    is the direct contribution of the activation at the SAE's write point. Columns: batch, pos, pos_str, target,
    target_str, component, component_type, feature (Int64, <NA> on the bias and error rows), activation (NaN
    there), contribution.
    """
    checked = check_model(model)
    final = ("ln_final.hook_scale",) if checked.ln_final is not None else ()
    extra = (*final, f"blocks.{checked.cfg.n_layers - 1}.hook_resid_post")
    model, tokens, cache, acts = _prepare_features(model, tokens, cache, sae, extra=extra, what="feature_dla")
    if _write_point(sae).rsplit(".", 1)[-1] not in RESIDUAL_WRITES:
        raise ValueError(f"the SAE writes {_write_point(sae)!r}, not the residual stream: no direct path to the logits")
    if model.cfg.norm == "post":
        raise ValueError(
            "norm='post' re-normalises the residual stream after every block: no direct path to the logits"
        )
    logits = cache_logits(model, cache) if target is None else None
    target_ids = resolve_target(model, tokens, target, logits)
    readout, _ = readout_directions(model, cache, target_ids, None)  # batch pos d_model
    readout = readout.to(sae.device)
    per_feature = acts * (readout @ sae.W_dec.T)  # batch pos d_sae
    y = cache[_write_point(sae)].to(sae.device)
    bias = readout @ sae.b_dec
    x = cache[sae.cfg.hook_name].to(sae.device)
    skip = ((sae._reconstruct(x, acts) - sae._decode(acts)) * readout).sum(-1) if sae.cfg.has_skip else None
    error = ((y - sae._reconstruct(x, acts)) * readout).sum(-1)
    require_finite(per_feature, "feature_dla", model, cache=cache)
    b, p, f = (t.cpu().numpy() for t in (acts > 0).nonzero(as_tuple=True))
    n_b, n_p = tokens.shape
    every_b, every_p = np.repeat(np.arange(n_b), n_p), np.tile(np.arange(n_p), n_b)
    parts = [
        pd.DataFrame(
            {
                "batch": b,
                "pos": p,
                "kind": 0,
                "feature": f,
                "activation": acts[b, p, f].double().cpu().numpy(),
                "contribution": per_feature[b, p, f].double().cpu().numpy(),
            }
        ),
        pd.DataFrame(
            {"batch": every_b, "pos": every_p, "kind": 1, "contribution": bias.flatten().double().cpu().numpy()}
        ),
        pd.DataFrame(
            {"batch": every_b, "pos": every_p, "kind": 3, "contribution": error.flatten().double().cpu().numpy()}
        ),
    ]
    if skip is not None:
        parts.append(pd.DataFrame({"batch": every_b, "pos": every_p, "kind": 2,
                                   "contribution": skip.flatten().double().cpu().numpy()}))  # fmt: skip
    frame = pd.concat(parts, ignore_index=True).sort_values(["batch", "pos", "kind"], kind="stable", ignore_index=True)
    flat = (frame.batch * n_p + frame.pos).to_numpy()
    targets = token_columns(model, target_ids)
    feature_ids = nullable_ints([None if np.isnan(x) else int(x) for x in frame.feature])
    component = np.array(["", "sae.b_dec", "sae.W_skip", "sae.error"], dtype=object)[frame.kind]
    component[frame.kind == 0] = ["F" + str(int(x)) for x in frame.feature[frame.kind == 0]]
    return pd.DataFrame(
        {
            "batch": frame.batch.to_numpy(),
            "pos": frame.pos.to_numpy(),
            "pos_str": pos_strings(model, tokens)[frame.batch, frame.pos],
            "target": targets["target"][flat],
            "target_str": targets["target_str"][flat],
            "component": component,
            "component_type": np.array(["feature", "sae_bias", "sae_skip", "sae_error"], dtype=object)[frame.kind],
            "feature": feature_ids,
            "activation": frame.activation.to_numpy(dtype=float),
            "contribution": frame.contribution.to_numpy(),
        }
    )
