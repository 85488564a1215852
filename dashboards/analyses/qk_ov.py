"""The cached calls behind the QK / OV page (weights only): composition scores, and one head's full QK or OV
matrix."""

from __future__ import annotations

import pandas as pd

from dashboards.analyses.base import cache_data
from dashboards.state import ModelRef
from interp.weights.composition import composition_scores
from interp.weights.qk_ov import full_ov, full_qk
from model.network.labels import component_label
from model.network.token_ids import token_labels

MAX_MATRIX_VOCAB = 512  # a d_vocab x d_vocab heatmap beyond this is neither readable nor cheap


def head_label(layer: int, head: int) -> str:
    """A head's label (``L1H0``)."""
    return component_label("head", layer, head)


@cache_data(max_entries=8, show_spinner="Scoring composition ...")
def composition(ref: ModelRef) -> pd.DataFrame:
    """``interp.composition_scores``: every Q/K/V composition score with its random baseline."""
    return composition_scores(ref.model)


@cache_data(max_entries=32, show_spinner=False)
def full_matrix(ref: ModelRef, kind: str, layer: int, head: int, specials: bool = True) -> pd.DataFrame:
    """The full QK or OV matrix (``kind``) of one head as a token x token frame (``interp.full_qk`` /
    ``interp.full_ov``; 64 x 64 is small); ``specials=False`` leaves out the special tokens' rows and columns."""
    model = ref.model
    n = model.cfg.d_vocab
    if n > MAX_MATRIX_VOCAB:
        raise ValueError(
            f"the full {kind} matrix would be {n} x {n}; the dashboard draws vocabularies of at most "
            f"{MAX_MATRIX_VOCAB} tokens (use interp.full_{kind.lower()}(...).rows(...) in a notebook)"
        )
    full = (full_qk if kind == "QK" else full_ov)(model, layer, head).full()
    names = token_labels(model.tokenizer, range(n))
    frame = pd.DataFrame(full.numpy(), index=names, columns=names)
    if specials or model.tokenizer is None:
        return frame
    keep = [i for i in range(n) if i not in model.tokenizer.special_ids]
    return frame.iloc[keep, keep]
