"""The computational graph drawn by layer: nodes on rows, edges as lines coloured by the sign of their score.

:func:`edge_graph_figure` takes any frame with ``upstream`` and ``downstream`` columns (and ``score`` when the
edges have one) — the frames of ``interp.circuit_graph``, ``interp.edge_patching``,
``interp.edge_attribution_patching``, a ``Circuit.to_frame()`` — and draws it with the layout of
:mod:`interp.discover.layout` (the one the SVG export uses): ``embed`` and ``pos_embed`` at the bottom, each
layer's heads, then its MLP, ``logits`` on top. An edge into a head ends at its ``q``, ``k`` or ``v`` mark.
Red edges raise the metric when corrupted, blue ones lower it; width grows with ``|score|``. ``known`` edges
(a ground truth) that the frame lacks are drawn dashed, so a missed edge shows.

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"upstream": ["embed", "L0H0"], "downstream": ["L0H0.v", "logits"], "score": [1., -2.]})
    >>> fig = edge_graph_figure(frame, n_heads=1, n_layers=1)
    >>> [trace.name for trace in fig.data]
    ['raises the metric', 'lowers the metric', 'edges', 'nodes']
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboards.plots.base import make_figure
from interp.discover.layout import extent, node_of, position, read_offset

POSITIVE, NEGATIVE, NEUTRAL, KNOWN = "#c0392b", "#2e6fb7", "#888888", "#2a9d55"
WIDTHS = (1.0, 2.0, 3.5, 5.5, 8.0)  # line widths of the |score| bins, smallest first


def _segments(points: list[tuple[tuple[float, float], tuple[float, float]]]) -> tuple[list, list]:
    xs, ys = [], []
    for (x1, y1), (x2, y2) in points:
        xs += [x1, x2, None]
        ys += [y1, y2, None]
    return xs, ys


def _ends(u: str, d: str, n_heads: int, n_layers: int) -> tuple[tuple[float, float], tuple[float, float]]:
    (x1, y1), (x2, y2) = position(u, n_heads, n_layers), position(node_of(d), n_heads, n_layers)
    return (x1, y1 + 0.18), (x2 + read_offset(d), y2 - 0.18)


def weighted_lines(ends: list, weights: np.ndarray, largest: float, *, name: str, colour: str) -> list[dict]:
    """Line traces of the segments ``ends`` (``((x1, y1), (x2, y2))`` each), one per width bin of
    ``weights / largest`` (:data:`WIDTHS`), under one legend entry ``name``. Shared by the circuit graph and the
    flow graph."""
    weights = np.abs(np.nan_to_num(np.asarray(weights, dtype=float)))
    level = np.zeros(len(ends), dtype=int)
    if largest > 0:
        level = np.minimum((weights / largest * len(WIDTHS)).astype(int), len(WIDTHS) - 1)
    traces = []
    for bin_, width in enumerate(WIDTHS):
        chosen = [ends[i] for i in np.flatnonzero(level == bin_)]
        if chosen:
            xs, ys = _segments(chosen)
            traces.append({"type": "scatter", "mode": "lines", "x": xs, "y": ys, "name": name, "legendgroup": name,
                           "showlegend": not traces, "hoverinfo": "skip", "line": {"color": colour, "width": width},
                           "opacity": 0.75})  # fmt: skip
    return traces


def hover_marks(ends: list, text: list[str], customdata: list | None = None, opacity: float = 0.0) -> dict:
    """Markers at the segments' midpoints that carry each edge's hover text (and ``customdata``, for clicks)."""
    mids = [tuple(np.mean(p, axis=0)) for p in ends]
    trace = {"type": "scatter", "mode": "markers", "x": [m[0] for m in mids], "y": [m[1] for m in mids],
             "name": "edges", "showlegend": False, "marker": {"size": 8, "opacity": opacity, "color": "#333"},
             "text": text, "hovertemplate": "%{text}<extra></extra>"}  # fmt: skip
    if customdata is not None:
        trace["customdata"] = customdata
    return trace


def _edge_traces(frame: pd.DataFrame, n_heads: int, n_layers: int) -> list[dict]:
    scores = frame["score"].to_numpy(dtype=float) if "score" in frame else np.full(len(frame), np.nan)
    largest = np.nanmax(np.abs(scores)) if np.isfinite(scores).any() else 0.0
    pairs = list(zip(frame["upstream"], frame["downstream"], strict=True))
    ends = [_ends(u, d, n_heads, n_layers) for u, d in pairs]
    traces = []
    for name, colour, keep in (("raises the metric", POSITIVE, scores > 0), ("lowers the metric", NEGATIVE,
                               scores < 0), ("unscored", NEUTRAL, ~np.isfinite(scores) | (scores == 0))):  # fmt: skip
        chosen = np.flatnonzero(keep)
        traces += weighted_lines([ends[i] for i in chosen], scores[chosen], largest, name=name, colour=colour)
    text = [
        f"{u} → {d}" + ("" if np.isnan(s) else f"<br>score {s:+.4g}") for (u, d), s in zip(pairs, scores, strict=True)
    ]
    return [*traces, hover_marks(ends, text)]


def edge_graph_figure(
    frame: pd.DataFrame,
    *,
    n_heads: int | None = None,
    n_layers: int | None = None,
    known: Iterable[tuple[str, str]] | None = None,
    title: str = "Circuit",
    height: int = 520,
) -> go.Figure:
    """The edges of ``frame`` (``upstream``, ``downstream`` and optionally ``score``) drawn by layer; ``known``
    edges missing from ``frame`` dashed green. ``n_heads``/``n_layers`` fix the grid (default: what the names use)."""
    if not isinstance(frame, pd.DataFrame) or not {"upstream", "downstream"} <= set(frame.columns):
        raise TypeError("edge_graph_figure needs a frame with upstream and downstream columns")
    known = [tuple(e) for e in (known or [])]
    names = [*frame["upstream"], *frame["downstream"], *(n for e in known for n in e), "logits"]
    heads, layers = extent(names)
    n_heads, n_layers = n_heads or heads, n_layers or layers
    traces = _edge_traces(frame, n_heads, n_layers)
    shown = set(zip(frame["upstream"], frame["downstream"], strict=True))
    missed = [e for e in known if e not in shown]
    if missed:
        xs, ys = _segments([_ends(u, d, n_heads, n_layers) for u, d in missed])
        traces.insert(0, {"type": "scatter", "mode": "lines", "x": xs, "y": ys, "name": "known, not shown",
                          "hoverinfo": "skip", "line": {"color": KNOWN, "width": 2, "dash": "dash"}})  # fmt: skip
    nodes = sorted({*frame["upstream"], *(node_of(d) for d in frame["downstream"]), *(n for e in known for n in
                   (e[0], node_of(e[1])))}, key=lambda n: position(n, n_heads, n_layers)[::-1])  # fmt: skip
    xy = [position(n, n_heads, n_layers) for n in nodes]
    traces.append({"type": "scatter", "mode": "markers+text", "x": [p[0] for p in xy], "y": [p[1] for p in xy],
                   "text": nodes, "textposition": "middle center", "name": "nodes", "showlegend": False,
                   "hovertemplate": "%{text}<extra></extra>", "textfont": {"size": 11, "color": "#123"},
                   "marker": {"symbol": "square", "size": 34, "color": "#eef3f8", "line": {"color": "#345",
                                                                                           "width": 1}}})  # fmt: skip
    axis = {"showgrid": False, "zeroline": False, "showticklabels": False}
    layout = {"xaxis": {**axis, "range": [-1.6, n_heads + 0.6]}, "yaxis": {**axis, "range": [-0.6, 2 * n_layers + 1.6]},
              "legend": {"orientation": "h", "y": -0.05}, "plot_bgcolor": "white"}  # fmt: skip
    return make_figure(traces, layout, title, height)
