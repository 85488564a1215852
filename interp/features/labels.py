"""A short label for a feature, derived from its top-activating contexts (never written by hand).

For the character the feature fires on, the one before it and the one after it, the label names the most
specific description that covers at least ``share`` (75%) of the top contexts: one character (``'e'``), else a
class (a space, a newline, a vowel, a consonant, a letter, a digit, punctuation, the start of the text).
Descriptions that say nothing (a letter where most characters are letters anyway) are kept only when nothing
else is found. When at least ``share`` of the contexts sit inside the same three-character window, that string
is named too. The parts are joined as ``on ..., after ..., before ...``, for example
``"on 'e', after a consonant, before a space"``. With no description covering enough contexts the label says
so and names the most common character (``"mixed: mostly 'e' (40%)"``).

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"pos_str": list("aeiou"), "context_left": ["x ", "y ", "z ", " ", "q "],
    ...                       "next_str": list("tkmts")})
    >>> label_from_contexts(frame)
    'on a vowel, after a space, before a consonant'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import pandas as pd
from jaxtyping import Int
from torch import Tensor

from interp.common.checks import check_int
from interp.features.analysis import _contexts, top_activations
from interp.features.common import _check_feature, _prepare_features
from interp.features.sae import SAE
from model.network.cache import ActivationCache
from model.network.token_ids import token_labels

VOWELS = set("aeiou")
PUNCTUATION = set(".,;:!?'\"-()[]{}_=+*/<>|")
CLASSES: tuple[tuple[str, Callable[[str], bool]], ...] = (  # most specific first
    ("a space", lambda c: c == " "),
    ("a newline", lambda c: c == "\n"),
    ("the start of the text", lambda c: c == "<bos>"),
    ("a vowel", lambda c: c in VOWELS),
    ("a consonant", lambda c: len(c) == 1 and c.isalpha() and c not in VOWELS),
    ("a digit", lambda c: len(c) == 1 and c.isdigit()),
    ("punctuation", lambda c: c in PUNCTUATION),
    ("a letter", lambda c: len(c) == 1 and c.isalpha()),
    ("a space or newline", lambda c: c in (" ", "\n")),
)
VAGUE = ("a letter",)
REQUIRED = ("pos_str", "context_left", "next_str")


def _shown(symbol: str) -> str:
    return {" ": "a space", "\n": "a newline", "<bos>": "the start of the text"}.get(symbol, repr(symbol))


def _describe(symbols: Sequence[str | None], share: float = 0.75) -> str | None:
    """The most specific description covering ``share`` of ``symbols`` (None entries count against), or None.

    Example:
        >>> _describe(list("eeee ")), _describe(list("aeio ")), _describe(list("a1.- "))
        ("'e'", 'a vowel', None)
    """
    present = [s for s in symbols if s is not None and not pd.isna(s)]
    if not symbols or not present:
        return None
    top, count = Counter(present).most_common(1)[0]
    if count >= share * len(symbols):
        return _shown(top)
    for name, test in CLASSES:
        if sum(test(s) for s in present) >= share * len(symbols):
            return name
    return None


def label_from_contexts(frame: pd.DataFrame, share: float = 0.75) -> str:
    """The label of a feature from its :func:`interp.features.analysis.top_activations` frame (see the module
    docstring)."""
    if not isinstance(frame, pd.DataFrame) or any(c not in frame for c in REQUIRED):
        raise TypeError(f"label_from_contexts takes a top_activations frame (columns {list(REQUIRED)})")
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0.5 <= share <= 1:
        raise ValueError(f"share must be a fraction in [0.5, 1], got {share!r}")
    if frame.empty:
        return "never fires on these tokens"
    here = frame.pos_str.tolist()
    before = [left[-1] if isinstance(left, str) and left else None for left in frame.context_left]
    before = [("<bos>" if b == ">" and left.endswith("<bos>") else b) for b, left in zip(before, frame.context_left,
              strict=True)]  # fmt: skip
    after = frame.next_str.tolist()
    parts = {}
    for word, symbols in (("on", here), ("after", before), ("before", after)):
        found = _describe(symbols, share)
        if found is not None:
            parts[word] = found
    informative = {w: d for w, d in parts.items() if d not in VAGUE}
    words = [f"{w} {d}" for w, d in (informative or parts).items()]
    windows = Counter(b + h + a for b, h, a in zip(before, here, after, strict=True)
                      if isinstance(b, str) and isinstance(a, str) and len(b) == len(h) == len(a) == 1)  # fmt: skip
    if windows:
        window, count = windows.most_common(1)[0]
        if count >= share * len(frame):
            words.append(f"in {window!r}")
    if words:
        return ", ".join(words)
    top, count = Counter(here).most_common(1)[0]
    return f"mixed: mostly {_shown(top)} ({count / len(here):.0%})"


def feature_label(
    model: object,
    tokens: Int[Tensor, "batch pos"],
    cache: ActivationCache | None = None,
    *,
    sae: SAE,
    feature: int,
    k: int = 20,
    share: float = 0.75,
) -> str:
    """The automatic label of ``feature``, from its top ``k`` contexts on ``tokens``.

    Example:
        >>> from model import MiniGPT
        >>> from model.training.data import builtin_corpus, text_eval_batches
        >>> model, sae = MiniGPT.from_pretrained("minigpt-text"), SAE.from_pretrained("minigpt-text-resid-post-0")
        >>> tokens = text_eval_batches(builtin_corpus().val, 32)[0]
        >>> isinstance(feature_label(model, tokens, sae=sae, feature=0), str)
        True
    """
    frame = top_activations(model, tokens, cache, sae=sae, feature=feature, k=k, left=4, right=1)
    return label_from_contexts(frame, share)


def feature_labels(
    model: object,
    tokens: Int[Tensor, "batch pos"],
    cache: ActivationCache | None = None,
    *,
    sae: SAE,
    features: Sequence[int] | None = None,
    k: int = 20,
    share: float = 0.75,
) -> pd.DataFrame:
    """:func:`feature_label` of many features (default all) from one encoding of ``tokens``: columns feature, label.

    Example:
        >>> from model import MiniGPT
        >>> model, sae = MiniGPT.from_pretrained("minigpt-text"), SAE.from_pretrained("minigpt-text-resid-post-0")
        >>> feature_labels(model, "the value of the", sae=sae, features=[0, 1]).columns.tolist()
        ['feature', 'label']
    """
    model, tokens, _, acts = _prepare_features(model, tokens, cache, sae, what="feature_labels")
    chosen = list(range(sae.cfg.d_sae)) if features is None else [_check_feature(sae, f) for f in features]
    k = check_int(k, "k", minimum=1)
    labels = [token_labels(model.tokenizer, row) for row in tokens.tolist()]
    flat, n_pos, out = acts.flatten(0, 1).cpu(), tokens.shape[1], []
    for feature in chosen:
        column = flat[:, feature]
        order = column.argsort(descending=True, stable=True)[: min(k, int((column > 0).sum()))].numpy()
        rows, cols = order // n_pos, order % n_pos
        frame = pd.DataFrame({"pos_str": [labels[b][p] for b, p in zip(rows, cols, strict=True)],
                              "next_str": [labels[b][p + 1] if p + 1 < n_pos else None for b, p in zip(rows, cols,
                                           strict=True)], **_contexts(labels, rows, cols, 4, 1)})  # fmt: skip
        out.append(label_from_contexts(frame, share))
    return pd.DataFrame({"feature": chosen, "label": out})
