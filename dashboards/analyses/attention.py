"""The cached calls behind the Attention page: every head's pattern on the prompt, and the head scores."""

from __future__ import annotations

import pandas as pd

from dashboards.analyses.base import Ids, cache_data, forward, tokens_of
from dashboards.state import ModelRef
from interp.observe.attention import attention_pattern_frame, classification_note, head_scores


@cache_data(max_entries=64, show_spinner=False)
def attention_patterns(ref: ModelRef, ids: Ids) -> pd.DataFrame:
    """``interp.attention_pattern_frame`` of every head, with ``layer, head`` columns in front."""
    model, cache, tokens = ref.model, forward(ref, ids)[1], tokens_of(ids)
    frames = [
        attention_pattern_frame(model, tokens, cache, layer=layer, head=head).assign(layer=layer, head=head)
        for layer in range(model.cfg.n_layers)
        for head in range(model.cfg.n_heads)
    ]
    return pd.concat(frames, ignore_index=True)


@cache_data(max_entries=64, show_spinner=False)
def attention_scores(ref: ModelRef, ids: Ids) -> pd.DataFrame:
    """``interp.head_scores`` on the prompt (one row per head, with its ``head_class``)."""
    return head_scores(ref.model, tokens_of(ids), forward(ref, ids)[1])


def head_class_note(scores: pd.DataFrame) -> str | None:
    """``interp.classification_note``: why the head classes are limited on this prompt, or None."""
    return classification_note(scores)
