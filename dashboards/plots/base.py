"""The building blocks every chart shares: colour scales, how tokens are drawn, and figures without validation.

Figures are assembled from plain dicts and built without plotly's per-property validation
(``_validate=False``), which costs ~100x more than the data itself on a page of heatmaps and would
break the dashboard's 0.5 s re-render budget; the tests validate every figure instead.
Tokens are drawn with visible stand-ins for blanks: space as ``␣``, newline as ``⏎``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go

# Colour scales as explicit lists: figures skip validation, and plotly.js reads scale *names* differently
# from plotly.py (its "Blues" runs dark to light; it has no "_r" reversed names).
DIVERGING = plotly.colors.get_colorscale("RdBu_r")  # blue negative, white 0, red positive
SEQUENTIAL = plotly.colors.get_colorscale("Blues")  # white 0 to dark blue
GREYS = plotly.colors.get_colorscale("Greys")
QUALITATIVE = plotly.colors.qualitative.Dark24
_SHOWN = {" ": "␣", "\n": "⏎", "\t": "⇥"}


def display_token(token: str) -> str:
    """A token as it is drawn: blanks made visible (``" "`` -> ``"␣"``, a BPE token's leading spaces too).

    Example:
        >>> display_token(" of"), display_token(" ")
        ('␣of', '␣')
    """
    if token in _SHOWN:
        return _SHOWN[token]
    text = token.lstrip(" ")
    return "␣" * (len(token) - len(text)) + text


def token_chip_labels(tokens: Sequence[str]) -> list[str]:
    """Labels of the sidebar's clickable token chips: position, then the token as inline code (blanks visible).

    Example:
        >>> token_chip_labels(["<bos>", " ", "a"])
        ['0 `<bos>`', '1 `␣`', '2 `a`']
    """
    return [f"{i} `{display_token(t)}`" for i, t in enumerate(tokens)]


SELECTED_COLOUR = "#e6550d"  # the outline of the selected token on every chart over positions


def mark_position(layout: dict[str, Any], pos: int | None, axes: Sequence[tuple[str, str]], along: str = "x") -> None:
    """Outline the selected position ``pos`` (a column of category axis x; ``along="y"``: a row) in each subplot of
    ``axes`` (``(x, y)`` axis ids). ``None`` draws nothing. Every chart over positions marks the one selected token."""
    if pos is None:
        return
    line = {"color": SELECTED_COLOUR, "width": 2}
    for x, y in axes:
        cell = {"x0": pos - 0.5, "x1": pos + 0.5, "y0": 0, "y1": 1, "xref": x, "yref": f"{y} domain"}
        if along == "y":
            cell = {"y0": pos - 0.5, "y1": pos + 0.5, "x0": 0, "x1": 1, "yref": y, "xref": f"{x} domain"}
        layout.setdefault("shapes", []).append({"type": "rect", "line": line, "layer": "above", **cell})


def make_figure(data: list[dict[str, Any]], layout: dict[str, Any], title: str, height: int) -> go.Figure:
    """A figure from trace and layout dicts, built without validation (see the module docstring)."""
    layout = {"title": {"text": title}, "height": height, "margin": {"l": 60, "r": 30, "t": 70, "b": 50}, **layout}
    return go.Figure(data=data, layout=layout, _validate=False)


def pivot(
    df: pd.DataFrame, rows: list[str], cols: list[str], value: str, col_order: list[tuple] | None = None
) -> tuple[np.ndarray, list[tuple], list[tuple]]:
    """``df[value]`` as a dense ``[row key, column key]`` array (NaN where no row), with the sorted keys.

    ``col_order`` fixes the columns (keys as tuples), e.g. every position even where ``df`` has none.
    A plain-Python pivot: ``DataFrame.pivot_table`` costs ~5 ms a call, too slow for a 0.5 s page.
    """
    row_keys = list(zip(*(df[c].tolist() for c in rows), strict=True))
    col_keys = list(zip(*(df[c].tolist() for c in cols), strict=True))
    row_order, col_order = sorted(set(row_keys)), col_order or sorted(set(col_keys))
    row_at, col_at = {k: i for i, k in enumerate(row_order)}, {k: i for i, k in enumerate(col_order)}
    z = np.full((len(row_order), len(col_order)), np.nan)
    z[[row_at[k] for k in row_keys], [col_at[k] for k in col_keys]] = df[value].to_numpy(dtype=float)
    return z, row_order, col_order


def cell_text(z: np.ndarray) -> np.ndarray:
    """Cell labels with two decimals; blank where the value is NaN."""
    return np.array([["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in np.atleast_2d(z)], dtype=object)


def unit_range(lo: float, hi: float) -> list[float]:
    return [min(max(round(lo, 6), 0.0), 1.0), min(max(round(hi, 6), 0.0), 1.0)]


def subplot_grid(
    titles: list[list[str]], hgap: float = 0.05, vgap: float = 0.12, share_rows: bool = False
) -> tuple[dict, list[list[tuple[str, str]]]]:
    """Layout axes and title annotations for a rows x cols grid of subplots, and each cell's axis ids.

    ``share_rows``: the cells of a row share one y axis (the first cell's), so with :data:`LINKED_HOVER` and
    ``hovermode="y"`` hovering one cell shows the same row and column in every cell of its row.
    """
    n_rows, n_cols = len(titles), len(titles[0])
    width, height = (1 - hgap * (n_cols - 1)) / n_cols, (1 - vgap * (n_rows - 1)) / n_rows
    layout: dict[str, Any] = {"annotations": []}
    refs = []
    for r in range(n_rows):
        refs.append([])
        for c in range(n_cols):
            i = "" if r == c == 0 else r * n_cols + c + 1  # plotly names the first axes x / xaxis
            y = ("" if r == 0 else r * n_cols + 1) if share_rows else i
            x0, y1 = c * (width + hgap), 1 - r * (height + vgap)
            layout[f"xaxis{i}"] = {"domain": unit_range(x0, x0 + width), "anchor": f"y{y}"}
            if y == i:
                layout[f"yaxis{i}"] = {"domain": unit_range(y1 - height, y1), "anchor": f"x{i}"}
            layout["annotations"].append(
                {"text": titles[r][c], "x": x0 + width / 2, "y": y1, "xref": "paper", "yref": "paper",
                 "xanchor": "center", "yanchor": "bottom", "showarrow": False}
            )  # fmt: skip
            refs[-1].append((f"x{i}", f"y{y}"))
    return layout, refs


def _rows_on_unit_axis(trace: dict[str, Any], axis: dict[str, Any]) -> None:
    """Put a heatmap's rows (categories) at evenly spaced heights in [0, 1], labelled as before, and keep its hover.

    Linked hover carries the cursor's *y value* to the other panels, and a heatmap answers only where that value is
    one of its rows: with every panel's rows spread over the same [0, 1], each answers with its row at the height of
    the cursor. The row's label moves into ``customdata[0]`` (any earlier customdata into ``customdata[1]``).
    """
    labels, old = list(trace["y"]), trace.get("customdata")
    n, n_cols = len(labels), len(trace["x"])  # one column per position
    centres = [(i + 0.5) / n for i in range(n)]
    cell = (lambda i, j: [labels[i]]) if old is None else (lambda i, j: [labels[i], old[i][j]])
    trace["customdata"] = [[cell(i, j) for j in range(n_cols)] for i in range(n)]
    trace["y"] = centres
    hover = trace.get("hovertemplate", "%{y}<br>%{z}<extra></extra>")
    trace["hovertemplate"] = hover.replace("%{customdata}", "%{customdata[1]}").replace("%{y}", "%{customdata[0]}")
    reverse = axis.pop("autorange", None) == "reversed"
    axis.update(type="linear", tickmode="array", tickvals=centres, ticktext=labels, range=[1, 0] if reverse else [0, 1])


# Hover linked across the subplots that share an axis: hovering a cell of one shows the same x (hovermode "x") or y
# (hovermode "y") in every subplot on that axis, each with its own label (plotly.js's ``hoversubplots``).
LINKED_HOVER = {"hoversubplots": "axis"}


def stack_over_positions(figures: Sequence[go.Figure], title: str, gap: int = 80) -> go.Figure:
    """``figures`` (single-panel charts whose x axis is the prompt's positions) stacked into one figure on one shared
    x axis, so that hovering a position in one panel shows every panel's value at that position.

    Each panel keeps its traces, y axis, outline of the selected position, colour bar (moved beside it) and title
    (as an annotation above it); the x axis of the last figure is drawn once, under the last panel.

    Example:
        >>> a = make_figure([{"type": "bar", "x": ["0 a", "1 b"], "y": [1, 2]}], {}, "first", 300)
        >>> b = make_figure([{"type": "bar", "x": ["0 a", "1 b"], "y": [3, 4]}], {}, "second", 300)
        >>> fig = stack_over_positions([a, b], "both")
        >>> [(t.xaxis, t.yaxis) for t in fig.data], fig.layout.hovermode
        ([('x', 'y'), ('x', 'y2')], 'x')
    """
    parts = [figure.to_plotly_json() for figure in figures]
    margins = [part["layout"]["margin"]["t"] + part["layout"]["margin"]["b"] for part in parts]
    heights = [part["layout"]["height"] - margin for part, margin in zip(parts, margins, strict=True)]
    total = sum(heights) + gap * (len(parts) - 1)
    x_axis = {**parts[-1]["layout"].get("xaxis", {}), "anchor": f"y{len(parts)}"}
    layout: dict[str, Any] = {"annotations": [], "shapes": [], "hovermode": "x", **LINKED_HOVER, "xaxis": x_axis}
    data, top = [], 1.0
    for k, (part, height) in enumerate(zip(parts, heights, strict=True)):
        y, bottom = "y" if k == 0 else f"y{k + 1}", top - height / total
        domain = unit_range(bottom, top)
        layout["yaxis" + y[1:]] = {**part["layout"].get("yaxis", {}), "domain": domain, "anchor": "x"}
        for trace in part["data"]:
            trace = {**trace, "xaxis": "x", "yaxis": y}
            if trace.get("type") == "heatmap" and trace.get("y") is not None:
                _rows_on_unit_axis(trace, layout["yaxis" + y[1:]])
            if "colorbar" in trace:
                bar = {"y": (domain[0] + domain[1]) / 2, "len": domain[1] - domain[0], "yanchor": "middle"}
                trace["colorbar"] = {**trace["colorbar"], **bar}
            data.append(trace)
        for shape in part["layout"].get("shapes", []):
            layout["shapes"].append({**shape, "yref": shape["yref"].replace("y", y, 1)})
        layout["annotations"].append(
            {"text": part["layout"]["title"]["text"], "x": 0, "y": top, "xref": "paper", "yref": "paper",
             "xanchor": "left", "yanchor": "bottom", "showarrow": False, "font": {"size": 14}}
        )  # fmt: skip
        top = bottom - gap / total
    return make_figure(data, layout, title, height=total + margins[0])


def square(part: pd.DataFrame, value: str, n: int) -> np.ndarray:
    """``part``'s ``value`` as an ``[q_pos, k_pos]`` array, NaN where there is no row (the causal mask)."""
    z = np.full((n, n), np.nan)
    z[part["q_pos"].to_numpy(), part["k_pos"].to_numpy()] = part[value].to_numpy()
    return z


def token_axis(tokens: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """Unique category labels ``"pos token"`` (what hover shows) and axis ticks showing just the token."""
    labels = [f"{i} {display_token(t)}" for i, t in enumerate(tokens)]
    ticks = {"tickmode": "array", "tickvals": labels, "ticktext": [display_token(t) for t in tokens]}
    return labels, {**ticks, "type": "category", "tickfont": {"size": 9}}
