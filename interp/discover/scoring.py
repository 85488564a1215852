"""Scoring edge scores against a known circuit: ROC AUC, and agreement between two methods.

:func:`edge_auc` asks how well ``abs_score`` separates the edges of a known circuit from all the others:
the probability that a random circuit edge scores higher than a random other edge (ties count half), i.e.
the area under the ROC curve. 1 is a perfect ranking, 0.5 a random one. :func:`score_correlation` is the
Pearson (or Spearman) correlation of two methods' signed scores over the same edges, e.g. EAP against
exact edge patching.

Example:
    >>> import pandas as pd
    >>> scores = pd.DataFrame({"upstream": ["embed", "embed", "L0H0"], "downstream": ["L0H0.v", "logits", "logits"],
    ...                        "score": [3.0, 0.1, -2.0]})
    >>> edge_auc(scores, [("embed", "L0H0.v"), ("L0H0", "logits")])
    1.0
    >>> round(score_correlation(scores, scores.assign(score=[2.5, 0.0, -2.2])), 3)
    0.998
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from interp.discover.graph import _pairs

METHODS = ("pearson", "spearman")


def _scores(frame: object, what: str) -> pd.Series:
    if not isinstance(frame, pd.DataFrame) or not {"upstream", "downstream", "score"} <= set(frame.columns):
        raise TypeError(f"{what} must be a frame with upstream, downstream and score columns")
    index = pd.MultiIndex.from_arrays([frame["upstream"], frame["downstream"]])
    if index.has_duplicates:
        raise ValueError(f"{what} lists an edge twice")
    values = pd.Series(frame["score"].to_numpy(dtype=np.float64), index=index)
    if not np.isfinite(values.to_numpy()).all():
        raise ValueError(f"{what} holds NaN or inf scores")
    return values


def edge_auc(scores: pd.DataFrame, known: object) -> float:
    """ROC AUC of ``|score|`` for telling the ``known`` edges (a Circuit or pairs) from the other rows.

    Every known edge must be a row of ``scores``, and at least one row must be outside ``known``.
    """
    values = _scores(scores, "scores").abs()
    positive = set(_pairs(known, "known"))
    missing = sorted(positive - set(values.index))
    if missing:
        raise KeyError(f"known edges {missing[:3]} are not rows of the score frame; score every edge of the graph")
    labels = np.array([edge in positive for edge in values.index])
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"an AUC needs known and other edges, got {n_pos} known and {n_neg} other rows")
    ranks = pd.Series(values.to_numpy()).rank(method="average").to_numpy()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def score_correlation(a: pd.DataFrame, b: pd.DataFrame, method: str = "pearson") -> float:
    """Correlation of the signed scores of the edges both frames score (``method``: pearson or spearman)."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {list(METHODS)}")
    left, right = _scores(a, "the first frame"), _scores(b, "the second frame")
    both = pd.concat([left, right], axis=1, join="inner")
    if len(both) < 2:
        raise ValueError(f"the frames share {len(both)} edges; a correlation needs at least 2")
    if both.std().eq(0).any():
        raise ValueError("one frame's scores are all equal on the shared edges: the correlation is undefined")
    if method == "spearman":  # the Pearson correlation of the ranks (pandas would need scipy for it)
        both = both.rank(method="average")
    return float(both.iloc[:, 0].corr(both.iloc[:, 1]))
