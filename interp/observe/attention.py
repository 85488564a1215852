"""Attention-pattern statistics: what each head attends to, as scores between 0 and 1.

Notation: ``A[b, h, q, k]`` is the attention pattern (``hook_pattern``) of head ``h`` for query
position ``q`` and key position ``k <= q`` on sequence ``b``, and ``t[b, i]`` the token at position ``i``.
Each score is a *mean over (sequence, query) pairs where it is defined*; pairs where it is undefined
are left out (not counted as zero), and a score defined nowhere is NaN. Query position 0 is always
left out: it can attend only to itself, so its pattern says nothing about the head.

- ``previous_token``  = mean over q >= 1 of ``A[q, q-1]``
- ``current_token``   = mean over q >= 1 of ``A[q, q]``
- ``first_token``     = mean over q >= 1 of ``A[q, 0]`` (the BOS position: attention sinks)
- ``duplicate_token`` = mean over q with an earlier copy of its token of ``sum_{k<q, t[k]=t[q]} A[q, k]``
- ``induction``       = mean over q with a defined key set of ``sum_{k in K(q)} A[q, k]``,
  ``K(q) = {j + 1 : j < q - 1, t[j] = t[q]}``: the tokens that *followed* earlier copies of the
  current token (``k = q`` itself is excluded, so a current-token head scores nothing on ``aa``)
- ``entropy``         = mean over q >= 1 of ``-sum_k A[q, k] ln A[q, k]`` (nats; 0 = one key)

On ``BOS + r + r`` (a random sequence ``r`` repeated) a perfect induction head scores 1 and a perfect
previous-token head scores 1 on ``previous_token``.

Example:
    >>> import torch
    >>> from model import MiniGPT, ModelConfig
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> r = torch.randint(3, 64, (4, 10))
    >>> tokens = torch.cat([torch.zeros(4, 1, dtype=torch.long), r, r], dim=1)
    >>> scores = head_scores(model, tokens)
    >>> scores.shape
    (8, 10)
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.common.checks import check_index, prepare, require_finite
from model.network.cache import ActivationCache
from model.network.labels import component_label
from model.network.minigpt import MiniGPT
from model.network.token_ids import token_labels

SCORE_COLUMNS = ["previous_token", "current_token", "first_token", "duplicate_token", "induction", "entropy"]
# classify_heads: a head gets the first kind (in this order) whose score reaches its threshold; else "other".
# Specific patterns come before the first-token sink, which many heads use as a resting place.
THRESHOLDS = {"induction": 0.4, "previous_token": 0.4, "duplicate_token": 0.4, "current_token": 0.4, "first_token": 0.5}
# A head that reaches no defined pattern on tokens where induction is undefined (no token repeats) is not named
# "first_token" or "other": an induction head with nothing to copy rests on <bos>, so these tokens cannot tell.
UNDEFINED = "undefined"
UNDEFINED_NOTE = "no repeated tokens: induction score undefined"


def _masks(tokens: Int[Tensor, "batch pos"]) -> dict[str, Bool[Tensor, "batch q_pos k_pos"]]:
    """Which keys each score sums over, per (sequence, query)."""
    batch, pos = tokens.shape
    idx = torch.arange(pos, device=tokens.device)
    q, k = idx[:, None], idx[None, :]
    real_query = (q >= 1).expand(pos, pos)
    same = tokens[:, :, None] == tokens[:, None, :]  # batch q k: t[q] == t[k]
    earlier_copy = same & (k < q)
    # induction keys k = j + 1 with t[j] == t[q], j < q - 1: shift the copy mask one key to the right
    induction = torch.zeros_like(same)
    induction[:, :, 1:] = earlier_copy[:, :, :-1] & (k[:, 1:] < q)
    return {
        "previous_token": ((k == q - 1) & real_query).expand(batch, pos, pos),
        "current_token": ((k == q) & real_query).expand(batch, pos, pos),
        "first_token": ((k == 0) & real_query).expand(batch, pos, pos),
        "duplicate_token": earlier_copy,
        "induction": induction,
    }


def _masked_mean(pattern: Float[Tensor, "batch head q_pos k_pos"], mask: Tensor) -> Float[Tensor, " head"]:
    """Mean over the (batch, query) pairs whose key set is non-empty of the attention on that set."""
    per_query = (pattern * mask[:, None]).sum(-1)  # batch head q
    defined = mask.any(-1)  # batch q
    n = defined.sum()
    if n == 0:
        return torch.full((pattern.shape[1],), math.nan)
    return (per_query * defined[:, None]).sum((0, 2)) / n


@torch.no_grad()
def head_scores(model: MiniGPT, tokens: Int[Tensor, "batch pos"], cache: ActivationCache | None = None) -> pd.DataFrame:
    """Previous-, current-, first-, duplicate-token, induction scores and entropy of every head.

    Formulas in the module docstring. ``cache=None`` runs the model once recording only the patterns.

    Columns (one row per head, ordered by layer then head):
        layer, head (int); component (str, ``L{l}H{h}`` as in :mod:`interp.observe.residual`);
        previous_token, current_token, first_token, duplicate_token, induction (float in [0, 1], NaN
        where undefined on these tokens); entropy (float, nats); head_class (str, see :func:`classify_heads`).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> df = head_scores(model, model.to_tokens("abcabc"))
        >>> list(df.columns[:3]), len(df)
        (['layer', 'head', 'component'], 8)
    """
    patterns = lambda name: name.endswith("hook_pattern")  # noqa: E731
    model, tokens, cache = prepare(model, tokens, cache, names_filter=patterns, what="head_scores")
    masks = _masks(tokens)
    rows = []
    for layer in range(model.cfg.n_layers):
        pattern = cache["pattern", layer].float()
        if pattern.shape[0] != tokens.shape[0] or pattern.shape[-1] != tokens.shape[1]:
            raise ValueError(f"tokens {tuple(tokens.shape)} do not match the cached patterns {tuple(pattern.shape)}")
        require_finite(pattern, "head_scores", model, cache=cache)  # NaN scores must mean "undefined" only
        scores = {name: _masked_mean(pattern, mask) for name, mask in masks.items()}
        entropy = -torch.special.xlogy(pattern, pattern).sum(-1)[:, :, 1:]  # batch head q>=1
        scores["entropy"] = entropy.mean((0, 2))  # NaN for one-token sequences, like the other scores
        for head in range(pattern.shape[1]):
            rows.append(
                [layer, head, component_label("head", layer, head), *(scores[c][head].item() for c in SCORE_COLUMNS)]
            )
    frame = pd.DataFrame(rows, columns=["layer", "head", "component", *SCORE_COLUMNS])
    frame["head_class"] = classify_heads(frame)
    return frame


def classify_heads(scores: pd.DataFrame, thresholds: dict[str, float] | None = None) -> pd.Series:
    """Name each head's type from its scores: the first of :data:`THRESHOLDS` whose score reaches its threshold.

    Order and default thresholds: ``induction`` >= 0.4, ``previous_token`` >= 0.4, ``duplicate_token``
    >= 0.4, ``current_token`` >= 0.4, ``first_token`` >= 0.5; a head reaching none is ``"other"``.
    NaN scores never reach a threshold. Where ``induction`` is NaN (no token of the prompt repeats), a head
    that reaches neither ``previous_token`` nor ``current_token`` is ``"undefined"`` (:data:`UNDEFINED`), not
    ``first_token`` or ``other``: an induction head with nothing to copy rests on ``<bos>`` like a sink, so
    such tokens cannot tell the two apart (:func:`classification_note` says so in words).
    ``thresholds`` overrides some of them (same keys and order).
    Returns a string Series named ``head_class`` aligned with ``scores``.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"induction": [0.9, 0.1], "previous_token": [0.5, 0.8], "duplicate_token": [0, 0],
        ...                    "current_token": [0, 0], "first_token": [0, 0]})
        >>> list(classify_heads(df))
        ['induction', 'previous_token']
        >>> list(classify_heads(df.assign(induction=float("nan"), first_token=0.9)))
        ['previous_token', 'previous_token']
        >>> list(classify_heads(df.assign(induction=float("nan"), previous_token=0.1, first_token=0.9)))
        ['undefined', 'undefined']
    """
    if not isinstance(scores, pd.DataFrame):
        raise TypeError(f"scores must be the DataFrame of head_scores, got {type(scores).__name__}")
    limits = dict(THRESHOLDS)
    unknown = set(thresholds or {}) - set(limits)
    if unknown:
        raise KeyError(f"unknown head kinds {sorted(unknown)}; thresholds can be set for {list(limits)}")
    limits.update(thresholds or {})
    for name, limit in limits.items():
        if isinstance(limit, bool) or not isinstance(limit, int | float) or limit != limit:
            raise TypeError(f"threshold for {name!r} must be a number, got {limit!r}")
    missing = [name for name in limits if name not in scores.columns]
    if missing:
        raise KeyError(f"scores lack the columns {missing}; pass the frame from head_scores")
    if not all(pd.api.types.is_numeric_dtype(scores[name]) for name in limits):
        bad = [name for name in limits if not pd.api.types.is_numeric_dtype(scores[name])]
        raise TypeError(f"score columns {bad} are not numeric; pass the frame from head_scores")
    head_class = pd.Series("other", index=scores.index, name="head_class", dtype=object)
    for name in reversed(list(limits)):  # earlier classes overwrite later ones
        head_class[scores[name].to_numpy(dtype=float) >= limits[name]] = name
    cannot_tell = np.isnan(scores["induction"].to_numpy(dtype=float)) & head_class.isin(["first_token", "other"])
    head_class[cannot_tell] = UNDEFINED
    return head_class


def classification_note(scores: pd.DataFrame) -> str | None:
    """Why :func:`head_scores`' classes are limited on these tokens (:data:`UNDEFINED_NOTE`), or None.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> classification_note(head_scores(model, model.to_tokens("abcdef")))
        'no repeated tokens: induction score undefined'
        >>> classification_note(head_scores(model, model.to_tokens("abcabc"))) is None
        True
    """
    if not isinstance(scores, pd.DataFrame) or "induction" not in scores.columns:
        raise TypeError("scores must be the DataFrame of head_scores (with an induction column)")
    return UNDEFINED_NOTE if scores["induction"].isna().all() else None


def attention_pattern_frame(
    model: MiniGPT,
    tokens: Int[Tensor, "batch pos"],
    cache: ActivationCache | None = None,
    *,
    layer: int,
    head: int,
    batch: int = 0,
) -> pd.DataFrame:
    """One head's attention pattern on one sequence as a long frame, for hover plots.

    Columns (one row per causal pair ``k_pos <= q_pos``, ordered by q_pos then k_pos):
        q_pos, k_pos (int); q_str, k_str (str: the tokens there, ids as text without a tokenizer);
        weight (float, the attention ``A[q_pos, k_pos]``; each query's weights sum to 1).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> attention_pattern_frame(model, model.to_tokens("abc"), layer=1, head=2).shape
        (10, 5)
    """
    model, tokens, cache = prepare(model, tokens, cache, what="attention_pattern_frame")
    layer, head = check_index(layer, model.cfg.n_layers, "layer"), check_index(head, model.cfg.n_heads, "head")
    if isinstance(batch, bool) or not isinstance(batch, int) or not 0 <= batch < tokens.shape[0]:
        raise IndexError(f"batch={batch!r} is out of range for {tokens.shape[0]} sequences")
    cached = cache["pattern", layer]
    require_finite(cached[batch, head], "attention_pattern_frame", model, cache=cache)
    pattern = cached[batch, head].detach().double().cpu().numpy()
    q_pos, k_pos = np.tril_indices(tokens.shape[1])
    labels = np.asarray(token_labels(model.tokenizer, tokens[batch].tolist()), dtype=object)
    return pd.DataFrame(
        {
            "q_pos": q_pos,
            "k_pos": k_pos,
            "q_str": labels[q_pos],
            "k_str": labels[k_pos],
            "weight": pattern[q_pos, k_pos],
        }
    )
