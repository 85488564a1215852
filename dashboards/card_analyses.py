"""The cached calls behind the Model card page: the checkpoint's history, its final evaluation, the README.

Reached from the page as ``analyses.card.<name>`` (the one door). Each takes the model as ``_model`` plus its
``model_id``, as :mod:`dashboards.analyses` does.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from interp.reports.card import describe_final_eval
from model.network.minigpt import MiniGPT


@st.cache_data(max_entries=8, show_spinner=False)
def final_eval(_model: MiniGPT, model_id: str) -> pd.DataFrame:
    """``interp.reports.card.describe_final_eval`` of the checkpoint: ``field, value, meaning`` (empty: none)."""
    return describe_final_eval(_model.provenance.get("final_eval"))


@st.cache_data(max_entries=8, show_spinner=False)
def history(_model: MiniGPT, model_id: str) -> pd.DataFrame:
    """The checkpoint's training history: ``step, train_loss, val_loss, lr`` (val_loss NaN between evaluations)."""
    rows = _model.provenance.get("history") or []
    frame = pd.DataFrame(rows, columns=["step", "train_loss", "val_loss", "lr"])
    return frame.astype({"train_loss": float, "val_loss": float, "lr": float})


README = Path(__file__).resolve().parents[1] / "README.md"


@st.cache_data(max_entries=8, show_spinner=False)
def readme_section(title: str) -> str | None:
    """The text of the README's ``## {title}`` section (without its heading), or None when there is none."""
    if not README.is_file():
        return None
    text, head = README.read_text(encoding="utf-8"), f"\n## {title}\n"
    if head not in text:
        return None
    body = text.split(head, 1)[1]
    return body.split("\n## ", 1)[0].strip()
