"""Charts of heads: attention patterns, layer x head heatmaps, head scores, position grids of patching."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboards.plots.base import (
    DIVERGING,
    GREYS,
    LINKED_HOVER,
    SEQUENTIAL,
    cell_text,
    make_figure,
    mark_position,
    pivot,
    square,
    subplot_grid,
    token_axis,
)
from model.network.labels import component_label


def attention_heatmaps(
    patterns: pd.DataFrame, tokens: Sequence[str], *, row: str = "layer", title: str = "", selected: int | None = None
) -> go.Figure:
    """One query x key heatmap per (layer, head) in ``patterns``; hover shows query token, key token, weight.

    ``patterns`` columns: ``layer, head, q_pos, k_pos, weight``. ``row="layer"`` puts layers in rows and
    heads in columns; ``row="head"`` puts each head's blocks side by side (the "head h in every block" view).
    ``selected``: the query row outlined in every cell (the selected token). The cells of a row share their query
    axis and their hover: hovering a (query, key) cell shows the same cell of every head in that row.
    """
    col = "head" if row == "layer" else "layer"
    rows, cols = sorted(patterns[row].unique().tolist()), sorted(patterns[col].unique().tolist())
    name = {"layer": "block", "head": "head"}
    titles = [[f"{name[row]} {r} · {name[col]} {c}" for c in cols] for r in rows]
    layout, refs = subplot_grid(titles, hgap=0.04, vgap=0.14 if len(rows) > 1 else 0.1, share_rows=True)
    labels, ticks = token_axis(tokens)
    data = []
    for (r, c), part in patterns.groupby([row, col]):
        x, y = refs[rows.index(r)][cols.index(c)]
        data.append(
            {"type": "heatmap", "z": square(part, "weight", len(tokens)), "x": labels, "y": labels,
             "coloraxis": "coloraxis", "xaxis": x, "yaxis": y, "xgap": 0.5, "ygap": 0.5,
             "hovertemplate": f"{titles[rows.index(r)][cols.index(c)]}<br>query %{{y}}<br>key %{{x}}<br>"
                              "weight %{z:.3f}<extra></extra>"}
        )  # fmt: skip
        bottom = rows.index(r) == len(rows) - 1  # key labels under the last row only: fewer labels to lay out
        key_axis = {"title": {"text": "key", "standoff": 2}} if bottom else {"showticklabels": False}
        layout["xaxis" + x[1:]].update(ticks, **key_axis)
        layout["yaxis" + y[1:]].update(ticks, autorange="reversed", title={"text": "query", "standoff": 2})
    mark_position(layout, selected, [ref for line in refs for ref in line], along="y")
    layout["coloraxis"] = {"colorscale": SEQUENTIAL, "cmin": 0, "cmax": 1, "colorbar": {"title": {"text": "weight"}}}
    # room for the colour bar on the right: a margin it must widen makes plotly lay the figure out twice
    layout.update(hovermode="y", **LINKED_HOVER, margin={"l": 60, "r": 110, "t": 70, "b": 50})
    title = title or "Attention patterns (row: query, column: key)"
    return make_figure(data, layout, title, height=(320 if len(cols) > 1 else 420) * len(rows) + 90)


def head_heatmap(df: pd.DataFrame, value: str, *, title: str, diverging: bool = True, text: bool = True) -> go.Figure:
    """A layer x head heatmap of ``df[value]`` (columns ``layer, head, <value>``), centred at 0 when diverging."""
    z, layers, heads = pivot(df, ["layer"], ["head"], value)
    bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    scale = {"colorscale": DIVERGING, "zmid": 0.0, "zmin": -bound, "zmax": bound} if diverging else {}
    trace = {
        "type": "heatmap", "z": z, "x": [f"head {h}" for (h,) in heads], "y": [f"layer {i}" for (i,) in layers],
        "colorscale": SEQUENTIAL, "colorbar": {"title": {"text": value}}, **scale,
        "hovertemplate": "%{y}, %{x}<br>" + value + " %{z:.4f}<extra></extra>",
    }  # fmt: skip
    if text:
        trace.update(text=cell_text(z), texttemplate="%{text}")
    return make_figure([trace], {"yaxis": {"autorange": "reversed"}}, title, height=160 + 60 * len(layers))


def head_scores_heatmap(scores: pd.DataFrame) -> go.Figure:
    """Head scores with the numbers in the cells: one row per head (labelled with its ``head_class``), entropy apart.

    ``scores`` columns: ``component, head_class, previous_token, current_token, first_token, duplicate_token,
    induction, entropy`` (as ``interp.head_scores`` returns them). Scores share a 0..1 scale;
    entropy (nats) gets its own panel.
    """
    names = ["previous_token", "induction", "duplicate_token", "first_token", "current_token"]
    rows = [f"{c} · {k}" for c, k in zip(scores["component"], scores["head_class"], strict=True)]
    layout, refs = subplot_grid([["scores (0 to 1)", "entropy (nats)"]], hgap=0.08)
    layout["xaxis"]["domain"], layout["xaxis2"]["domain"] = [0.0, 0.72], [0.76, 0.9]
    layout["annotations"][0]["x"], layout["annotations"][1]["x"] = 0.36, 0.83
    values, entropy = scores[names].to_numpy(dtype=float), scores[["entropy"]].to_numpy(dtype=float)
    common = {"y": rows, "texttemplate": "%{text}", "hovertemplate": "%{y}<br>%{x} %{z:.3f}<extra></extra>"}
    data = [
        {"type": "heatmap", "z": values, "x": [n.replace("_", " ") for n in names], "text": cell_text(values),
         "colorscale": SEQUENTIAL, "zmin": 0, "zmax": 1,
         "colorbar": {"title": {"text": "score"}, "x": 0.93, "xanchor": "left", "len": 1.0, "thickness": 14},
         "xaxis": refs[0][0][0], "yaxis": refs[0][0][1], **common},
        {"type": "heatmap", "z": entropy, "x": ["entropy"], "text": cell_text(entropy), "colorscale": GREYS,
         "showscale": False, "xaxis": refs[0][1][0], "yaxis": refs[0][1][1], **common},
    ]  # fmt: skip
    layout["yaxis"].update(autorange="reversed")
    layout["yaxis2"].update(autorange="reversed", showticklabels=False)
    return make_figure(data, layout, "Head scores and classification", height=max(300, 140 + 34 * len(rows)))


def position_heatmap(
    df: pd.DataFrame, value: str, tokens: Sequence[str], *, title: str, selected: int | None = None
) -> go.Figure:
    """A (layer or layer-and-head) x position heatmap of ``df[value]``, diverging and centred at 0.

    ``df`` columns: ``layer, pos, <value>`` and optionally ``head`` (rows become ``L{l}H{h}``), as in the
    ``resid_pre`` / ``attn_out`` / ``mlp_out`` / ``heads_by_pos`` grids of ``interp.activation_patching``.
    ``selected``: the position outlined.
    """
    labels, ticks = token_axis(tokens)
    keys = ["layer", "head"] if "head" in df.columns else ["layer"]
    z, row_keys, _ = pivot(df, keys, ["pos"], value, col_order=[(p,) for p in range(len(tokens))])
    rows = [component_label("head", *k) if len(keys) == 2 else f"layer {k[0]}" for k in row_keys]
    bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    trace = {
        "type": "heatmap", "z": z, "x": labels, "y": rows, "colorscale": DIVERGING, "zmid": 0.0,
        "zmin": -bound, "zmax": bound, "colorbar": {"title": {"text": value}},
        "hovertemplate": "%{y} at %{x}<br>" + value + " %{z:.3f}<extra></extra>",
    }  # fmt: skip
    layout = {"xaxis": {**ticks, "title": {"text": "position"}}, "yaxis": {"autorange": "reversed", "type": "category"}}
    mark_position(layout, selected, [("x", "y")])
    return make_figure([trace], layout, title, height=170 + max(120, 34 * len(rows)))
