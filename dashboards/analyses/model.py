"""The cached calls behind the Model & prediction and Model card pages: the config and parameters, the next-token
distribution, sampling, and the checkpoint's record (its history, its final evaluation, the README's sections)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from dashboards.analyses.base import Ids, cache_data, forward, tokens_of
from dashboards.state import ModelRef
from interp.observe.lens import next_token_distribution as _next_token_distribution
from interp.reports.card import describe_final_eval

README = Path(__file__).resolve().parents[2] / "README.md"


@cache_data(max_entries=8, show_spinner=False)
def config_frame(ref: ModelRef) -> pd.DataFrame:
    """The model's config as a two-column table: ``field, value`` (values as text), only the fields that apply
    (``ModelConfig.in_use``)."""
    fields = ref.model.cfg.in_use()
    return pd.DataFrame({"field": list(fields), "value": [str(v) for v in fields.values()]})


@cache_data(max_entries=8, show_spinner=False)
def inventory(ref: ModelRef) -> pd.DataFrame:
    """``model.parameter_inventory()``: columns ``tensor, shape, count``."""
    return ref.model.parameter_inventory()


@cache_data(max_entries=64, show_spinner=False)
def next_token_distribution(
    ref: ModelRef, ids: Ids, pos: int, temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0
) -> pd.DataFrame:
    """``interp.next_token_distribution`` after ``pos``, read from the prompt's cached forward."""
    cache = forward(ref, ids)[1]
    return _next_token_distribution(ref.model, tokens_of(ids), pos, temperature=temperature, top_k=top_k,
                                    top_p=top_p, cache=cache)  # fmt: skip


@cache_data(max_entries=32, show_spinner="Generating ...")
def generate(
    ref: ModelRef, prompt: str, max_new_tokens: int, temperature: float, top_k: int | None, top_p: float, seed: int
) -> str:
    """The sampled continuation of ``prompt`` (the text after it), reproducible by ``seed``."""
    model = ref.model
    text = model.generate(prompt, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    return text[len(model.tokenizer.normalize(prompt)) :]


@cache_data(max_entries=8, show_spinner=False)
def final_eval(ref: ModelRef) -> pd.DataFrame:
    """``interp.reports.card.describe_final_eval`` of the checkpoint: ``field, value, meaning`` (empty: none)."""
    return describe_final_eval(ref.model.provenance.get("final_eval"))


@cache_data(max_entries=8, show_spinner=False)
def history(ref: ModelRef) -> pd.DataFrame:
    """The checkpoint's training history: ``step, train_loss, val_loss, lr`` (val_loss NaN between evaluations)."""
    rows = ref.model.provenance.get("history") or []
    frame = pd.DataFrame(rows, columns=["step", "train_loss", "val_loss", "lr"])
    return frame.astype({"train_loss": float, "val_loss": float, "lr": float})


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
