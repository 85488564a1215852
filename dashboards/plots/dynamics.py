"""Charts of a training run (page "Training dynamics"): the loss curve with a step slider and a play button,
any metric across steps with the phase-change window shaded, and head or composition scores at one step.

Every function takes the tidy frame of ``interp.training_dynamics`` (``step, metric, component, value``).

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"step": [0, 0, 10, 10], "metric": ["first_copy_loss", "second_copy_loss"] * 2,
    ...                       "component": "model", "value": [4.2, 4.2, 4.1, 3.0]})
    >>> figure = loss_curve_figure(frame, step=10)
    >>> len(figure.frames), figure.data[-1].x
    (2, (10,))
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboards.plots.base import QUALITATIVE, SEQUENTIAL, cell_text, make_figure

LOSSES = ("first_copy_loss", "second_copy_loss")


def _curve(frame: pd.DataFrame, metric: str, component: str | None = None) -> pd.Series:
    rows = frame[(frame.metric == metric) & ((frame.component == component) if component else True)]
    return rows.groupby("step").value.mean().sort_index()


def loss_curve_figure(frame: pd.DataFrame, step: int) -> go.Figure:
    """First- and second-copy loss across steps, a marker at ``step``; plotly frames move it (play / slider)."""
    curves = [(name, _curve(frame, name)) for name in LOSSES]
    data = [
        {"type": "scatter", "mode": "lines+markers", "x": c.index.tolist(), "y": c.tolist(), "name": name,
         "line": {"color": QUALITATIVE[i]}, "marker": {"size": 4}}
        for i, (name, c) in enumerate(curves)
    ]  # fmt: skip
    second = curves[1][1]
    marker = {"type": "scatter", "mode": "markers", "marker": {"size": 14, "color": "black", "symbol": "diamond"}}
    data.append({**marker, "x": (step,), "y": (float(second.get(step, np.nan)),), "name": "shown step"})
    frames = [
        go.Frame(data=[{"type": "scatter", "x": (s,), "y": (float(v),)}], traces=[len(data) - 1], name=str(s))
        for s, v in second.items()
    ]
    steps = [{"method": "animate", "label": str(s), "args": [[str(s)], {"mode": "immediate"}]} for s in second.index]
    play = {"label": "play", "method": "animate", "args": [None, {"frame": {"duration": 120}, "fromcurrent": True}]}
    layout = {
        "xaxis": {"title": {"text": "training step"}},
        "yaxis": {"title": {"text": "loss on the probe (nats)"}},
        "updatemenus": [{"type": "buttons", "buttons": [play], "x": 0, "y": -0.25, "showactive": False}],
        "sliders": [{"steps": steps, "active": list(second.index).index(step) if step in second.index else 0,
                     "x": 0.08, "len": 0.92, "y": -0.12, "currentvalue": {"prefix": "step "}}],
        "margin": {"l": 60, "r": 30, "t": 70, "b": 130},
    }  # fmt: skip
    figure = make_figure(data, layout, "Loss on the probe's two copies", height=440)
    figure.frames = frames
    return figure


def metric_line_figure(frame: pd.DataFrame, metric: str, window: tuple[int, int] | None, step: int) -> go.Figure:
    """``metric`` of every component across steps, the window ``(start, end)`` shaded, ``step`` marked."""
    rows = frame[frame.metric == metric]
    data = [
        {"type": "scatter", "mode": "lines+markers", "x": part.step.tolist(), "y": part.value.tolist(),
         "name": comp, "marker": {"size": 4}, "line": {"color": QUALITATIVE[i % len(QUALITATIVE)]}}
        for i, (comp, part) in enumerate(rows.groupby("component", sort=True))
    ]  # fmt: skip
    shapes = [{"type": "line", "x0": step, "x1": step, "y0": 0, "y1": 1, "yref": "paper", "line": {"dash": "dot"}}]
    if window is not None:
        shapes.append(
            {"type": "rect", "x0": window[0], "x1": window[1], "y0": 0, "y1": 1, "yref": "paper",
             "fillcolor": "orange", "opacity": 0.25, "line": {"width": 0}, "layer": "below"}
        )  # fmt: skip
    layout = {"shapes": shapes, "xaxis": {"title": {"text": "training step"}}, "yaxis": {"title": {"text": metric}}}
    shaded = f" (shaded: fastest change, steps {window[0]}..{window[1]})" if window else ""
    return make_figure(data, layout, f"{metric} across training{shaded}", height=380)


def step_heatmap(frame: pd.DataFrame, step: int, metrics: list[str], *, title: str) -> go.Figure:
    """A component x metric heatmap of the values at ``step`` (head scores, or Q/K/V composition per pair)."""
    rows = frame[(frame.step == step) & frame.metric.isin(metrics)]
    comps = sorted(rows.component.unique())
    table = rows.pivot_table(index="component", columns="metric", values="value", aggfunc="mean")
    z = table.reindex(index=comps, columns=metrics).to_numpy(dtype=float)
    trace = {
        "type": "heatmap", "z": z, "x": metrics, "y": comps, "colorscale": SEQUENTIAL, "zmin": 0, "zmax": 1,
        "text": cell_text(z), "texttemplate": "%{text}", "hovertemplate": "%{y}, %{x}: %{z:.4f}<extra></extra>",
    }  # fmt: skip
    return make_figure([trace], {"yaxis": {"autorange": "reversed"}}, title, height=160 + 28 * len(comps))
