"""Phase changes: the window of steps where a metric of a run changes fastest, and what else changes in it.

On a :func:`~interp.dynamics.metrics.training_dynamics` frame, one series is one ``(metric, component)``. For the
series asked about, the rate of change between consecutive saved steps is ``|v[i+1] - v[i]| / (s[i+1] - s[i])``;
the window is the interval of the fastest rate, grown over its neighbours while their rate stays at least
``width`` (default half) of the fastest: a full width at half maximum, in steps. Rates are taken over intervals
of at least ``min_span`` steps (default 1% of the run: the saved steps are thinned to that spacing first), so
that the dense log-spaced snapshots at the start, a few steps apart, do not pass for a phase change.
Each other series is then scored by ``share``: how much of its whole range over the run (max - min) it moves
inside that window.

:func:`crossing` is the interval of saved steps in which a series first passes a level (e.g. an induction score
rising through 0.5).

Example:
    >>> import pandas as pd
    >>> steps = [0, 100, 200, 300, 400, 500]
    >>> frame = pd.DataFrame({"step": steps * 2, "metric": ["loss"] * 6 + ["score"] * 6,
    ...     "component": "model", "value": [4, 4, 3.9, 1, 0.9, 0.9] + [0, 0, 0.1, 0.9, 1, 1]})
    >>> changes = find_phase_changes(frame, "loss")
    >>> changes[["metric", "start_step", "end_step", "share"]].values.tolist()
    [['loss', 200, 300, 0.935...], ['score', 200, 300, 0.8]]
    >>> crossing(frame, "score", level=0.5)
    (200, 300)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from interp.common.checks import check_int
from interp.dynamics.metrics import FRAME_COLUMNS

CHANGE_COLUMNS = ["metric", "component", "start_step", "end_step", "start_value", "end_value", "change", "share"]


def _checked_frame(frame: object) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be the DataFrame of training_dynamics, got {type(frame).__name__}")
    missing = [c for c in FRAME_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks the columns {missing}: pass the frame of training_dynamics(run, ...)")
    return frame


def _series(frame: pd.DataFrame, metric: object, component: object) -> pd.Series:
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a metric name (str), got {type(metric).__name__}")
    rows = frame[frame.metric == metric]
    if rows.empty:
        raise ValueError(f"metric {metric!r} is not in the frame; it has {sorted(frame.metric.unique())}")
    parts = sorted(rows.component.unique())
    if component is None and len(parts) > 1:
        raise ValueError(f"metric {metric!r} has components {parts}: pass component= one of them")
    component = parts[0] if component is None else component
    if component not in parts:
        raise ValueError(f"metric {metric!r} has no component {component!r}; it has {parts}")
    series = rows[rows.component == component].groupby("step").value.mean().sort_index()
    if len(series) < 2:
        raise ValueError(f"{metric} {component} has {len(series)} saved step(s): a change needs at least two")
    return series


def _thinned(series: pd.Series, min_span: int | None) -> pd.Series:
    steps = series.index.to_numpy()
    span = max(1, round(0.01 * (steps[-1] - steps[0]))) if min_span is None else min_span
    keep, last = [0], steps[0]
    for i, step in enumerate(steps[1:-1], start=1):
        if step - last >= span and steps[-1] - step >= span:
            keep.append(i)
            last = step
    return series.iloc[[*keep, len(steps) - 1]]


def _fastest_window(series: pd.Series, width: float = 0.5, min_span: int | None = None) -> tuple[int, int]:
    """The ``(start_step, end_step)`` around the fastest change of ``series`` (index: steps), see the module doc."""
    series = _thinned(series, min_span)
    steps, values = series.index.to_numpy(), series.to_numpy(dtype=float)
    rate = np.abs(np.diff(values)) / np.diff(steps)
    peak = int(np.nanargmax(rate))
    lo = hi = peak
    while lo > 0 and rate[lo - 1] >= width * rate[peak]:
        lo -= 1
    while hi + 1 < len(rate) and rate[hi + 1] >= width * rate[peak]:
        hi += 1
    return int(steps[lo]), int(steps[hi + 1])


def find_phase_changes(
    frame: pd.DataFrame,
    metric: str,
    component: str | None = None,
    width: float = 0.5,
    min_share: float = 0.25,
    min_span: int | None = None,
) -> pd.DataFrame:
    """The window where ``metric`` (of ``component``; needed when it has several) changes fastest, and every series
    that moves at least ``min_share`` of its range inside it.

    Columns: metric, component (str); start_step, end_step (int, the window, the same on every row); start_value,
    end_value, change (float, the series at the window's edges and their difference); share (float in [0, 1],
    |change| over the series' range). The first row is the series asked about; the rest by share, largest first.
    """
    frame = _checked_frame(frame)
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 1:
        raise ValueError(f"width must be a fraction in (0, 1], got {width!r}")
    if isinstance(min_share, bool) or not isinstance(min_share, (int, float)) or not 0 <= min_share <= 1:
        raise ValueError(f"min_share must be a fraction in [0, 1], got {min_share!r}")
    if min_span is not None:
        check_int(min_span, "min_span", minimum=1)
    target = _series(frame, metric, component)
    component = component if component is not None else frame[frame.metric == metric].component.iloc[0]
    start, end = _fastest_window(target, width, min_span)
    table = frame.pivot_table(index="step", columns=["metric", "component"], values="value", aggfunc="mean")
    table = table.sort_index().ffill()
    span = (table.max() - table.min()).replace(0, np.nan)
    edges = table.loc[[start, end]]
    change = edges.iloc[1] - edges.iloc[0]
    out = pd.DataFrame({"start_value": edges.iloc[0], "end_value": edges.iloc[1], "change": change})
    out["share"] = (change.abs() / span).fillna(0.0).clip(0, 1)
    out = out.reset_index()
    first = (out.metric == metric) & (out.component == component)
    rest = out[~first & (out.share >= min_share)].sort_values("share", ascending=False, kind="stable")
    out = pd.concat([out[first], rest], ignore_index=True)
    out["start_step"], out["end_step"] = start, end
    return out[CHANGE_COLUMNS].astype({"start_step": "int64", "end_step": "int64"})


def crossing(frame: pd.DataFrame, metric: str, level: float, component: str | None = None) -> tuple[int, int] | None:
    """``(last step before, first step at or past level)`` where the series first crosses ``level`` (None: never).

    The direction is the one from the series' first value: a rise through ``level`` if it starts below, a fall
    otherwise.
    """
    frame = _checked_frame(frame)
    if isinstance(level, bool) or not isinstance(level, (int, float)):
        raise TypeError(f"level must be a number, got {level!r}")
    series = _series(frame, metric, component)
    values, steps = series.to_numpy(dtype=float), series.index.to_numpy()
    past = values >= level if values[0] < level else values <= level
    hits = np.flatnonzero(past)
    return None if not len(hits) or hits[0] == 0 else (int(steps[hits[0] - 1]), int(steps[hits[0]]))
