"""The cached calls behind the Residual stream and Direct logit attribution pages: the size of every write, the
logit lens, and the direct logit attribution at every position (with its CSV)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from dashboards.analyses.base import Ids, cache_data, forward, tokens_of
from dashboards.state import ModelRef
from interp.common.export import contributions_to_csv
from interp.observe.dla import contributions_at, direct_logit_attribution
from interp.observe.lens import logit_lens
from interp.observe.residual import write_norms


@cache_data(max_entries=64, show_spinner=False)
def residual_writes(ref: ModelRef, ids: Ids) -> pd.DataFrame:
    """``interp.write_norms``: the norm of every component's write at every position."""
    return write_norms(ref.model, tokens_of(ids), forward(ref, ids)[1])


@cache_data(max_entries=64, show_spinner=False)
def lens(ref: ModelRef, ids: Ids, k: int) -> pd.DataFrame:
    """``interp.logit_lens`` with the next token as target and the top ``k`` guesses."""
    return logit_lens(ref.model, tokens_of(ids), forward(ref, ids)[1], k=k)


@cache_data(max_entries=64, show_spinner=False)
def dla(ref: ModelRef, ids: Ids, target: str | None, contrast: str | None, per: str) -> pd.DataFrame:
    """``interp.direct_logit_attribution`` at every position (``target=None``: the next token)."""
    cache = forward(ref, ids)[1]
    return direct_logit_attribution(ref.model, tokens_of(ids), cache, target=target, contrast=contrast, per=per)


def dla_at(frame: pd.DataFrame, pos: int, top: int | None = None) -> tuple[pd.DataFrame, float]:
    """``interp.contributions_at``: the rows of one position (the ``top`` largest, when given) and their sum; the
    one-prompt ``batch`` column is left out of the page's table (the CSV download keeps the library's layout)."""
    here, total = contributions_at(frame, pos, top)
    return here.drop(columns="batch"), total


@cache_data(max_entries=16, show_spinner=False)
def dla_csv(ref: ModelRef, ids: Ids, target: str | None, contrast: str | None, per: str) -> bytes:
    """The CSV that ``interp.contributions_to_csv`` writes for :func:`dla`'s frame, as bytes to download."""
    frame = dla(ref, ids, target, contrast, per)
    with tempfile.TemporaryDirectory(prefix="minigpt-dla-") as tmp:
        return contributions_to_csv(frame, Path(tmp) / "contributions.csv").read_bytes()
