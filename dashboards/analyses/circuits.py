"""The cached calls behind the Circuits page (weights only): composition scores, and one head's QK or OV circuit."""

from __future__ import annotations

import pandas as pd

from dashboards.analyses.base import cache_data
from dashboards.state import ModelRef
from interp.weights.circuits import ov_circuit, qk_circuit
from interp.weights.composition import composition_scores
from model.network.token_ids import token_labels

MAX_CIRCUIT_VOCAB = 512  # a d_vocab x d_vocab heatmap beyond this is neither readable nor cheap


@cache_data(max_entries=8, show_spinner="Scoring composition ...")
def composition(ref: ModelRef) -> pd.DataFrame:
    """``interp.composition_scores``: every Q/K/V composition score with its random baseline."""
    return composition_scores(ref.model)


@cache_data(max_entries=32, show_spinner=False)
def circuit(ref: ModelRef, kind: str, layer: int, head: int, specials: bool = True) -> pd.DataFrame:
    """The full QK or OV circuit (``kind``) of one head as a token x token frame (``interp.qk_circuit`` /
    ``interp.ov_circuit``; 64 x 64 is small); ``specials=False`` leaves out the special tokens' rows and columns."""
    model = ref.model
    n = model.cfg.d_vocab
    if n > MAX_CIRCUIT_VOCAB:
        raise ValueError(
            f"the full {kind} circuit would be {n} x {n}; the dashboard draws vocabularies of at most "
            f"{MAX_CIRCUIT_VOCAB} tokens (use interp.{kind.lower()}_circuit(...).rows(...) in a notebook)"
        )
    full = (qk_circuit if kind == "QK" else ov_circuit)(model, layer, head).full()
    names = token_labels(model.tokenizer, range(n))
    frame = pd.DataFrame(full.numpy(), index=names, columns=names)
    if specials or model.tokenizer is None:
        return frame
    keep = [i for i in range(n) if i not in model.tokenizer.special_ids]
    return frame.iloc[keep, keep]
