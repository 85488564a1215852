"""Charts of the weights: composition scores between heads and a head's full token x token QK / OV matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboards.plots.base import (
    DIVERGING,
    cell_text,
    display_token,
    make_figure,
    pivot,
    subplot_grid,
)
from model.network.labels import component_label


def composition_heatmap(comp: pd.DataFrame) -> go.Figure:
    """Q-, K- and V-composition of source heads (rows) into later heads (columns), as score / baseline.

    ``comp`` columns: ``composition, src_layer, src_head, dst_layer, dst_head, score, baseline, ratio``
    (``interp.composition_scores``). White is the random baseline (ratio 1); the cells show the score.
    """
    inputs = ["Q", "K", "V"]
    layout, refs = subplot_grid([[f"{k}-composition" for k in inputs]], hgap=0.07)
    data, baselines = [], []
    for (x, y), kind in zip(refs[0], inputs, strict=True):
        part = comp[comp["composition"] == kind]
        ratio, src, dst = pivot(part, ["src_layer", "src_head"], ["dst_layer", "dst_head"], "ratio")
        score = pivot(part, ["src_layer", "src_head"], ["dst_layer", "dst_head"], "score")[0]
        baselines.append(f"{kind} {part['baseline'].iloc[0]:.3f}" if len(part) else f"{kind} -")
        data.append(
            {"type": "heatmap", "z": ratio, "text": cell_text(score), "texttemplate": "%{text}",
             "x": [component_label("head", a, b) for a, b in dst],
             "y": [component_label("head", a, b) for a, b in src], "customdata": score,
             "coloraxis": "coloraxis", "xaxis": x, "yaxis": y,
             "hovertemplate": "%{y} -> %{x}<br>score %{customdata:.3f}<br>score / baseline %{z:.2f}<extra></extra>"}
        )  # fmt: skip
        layout["xaxis" + x[1:]].update(title={"text": "later head"}, type="category")
        layout["yaxis" + y[1:]].update(type="category", autorange="reversed")
    layout["yaxis"]["title"] = {"text": "earlier head"}
    high = float(np.nanmax(comp["ratio"])) if len(comp) else 2.0
    layout["coloraxis"] = {"colorscale": DIVERGING, "cmid": 1.0, "cmin": 0.0, "cmax": max(2.0, high),
                           "colorbar": {"title": {"text": "score / baseline"}}}  # fmt: skip
    title = f"Composition scores (cells); colour = score / random baseline ({', '.join(baselines)})"
    return make_figure(data, layout, title, height=420)


def robust_bound(z: np.ndarray, percentile: float = 99.0) -> float:
    """A symmetric colour limit from the 1st and 99th percentiles, so a few extreme cells do not wash out the rest.

    Example:
        >>> robust_bound(np.array([[0.0, 1.0], [-1.0, 100.0]]), percentile=50)
        0.5
    """
    finite = z[np.isfinite(z)]
    if not finite.size:
        return 1.0
    low, high = np.percentile(finite, [100 - percentile, percentile])
    return float(max(abs(low), abs(high))) or 1.0


def qk_ov_heatmap(matrix: pd.DataFrame, *, title: str, row_title: str, col_title: str) -> go.Figure:
    """A token x token QK or OV matrix (index: row tokens, columns: column tokens), diverging and centred at 0.

    Square cells; the colour limits are the 1st / 99th percentiles (:func:`robust_bound`; cells beyond them
    saturate, and the hover still shows their value).
    """
    rows = [display_token(t) for t in matrix.index]
    cols = [display_token(t) for t in matrix.columns]
    z = matrix.to_numpy(dtype=float)
    bound = robust_bound(z)
    trace = {
        "type": "heatmap", "z": z, "x": cols, "y": rows, "colorscale": DIVERGING, "zmid": 0.0, "zmin": -bound,
        "zmax": bound, "hovertemplate": f"{row_title} %{{y}}<br>{col_title} %{{x}}<br>value %{{z:.3f}}<extra></extra>",
    }  # fmt: skip
    axis = {"type": "category", "tickfont": {"size": 11}, "dtick": 1, "constrain": "domain"}
    layout = {
        "xaxis": {**axis, "title": {"text": col_title}},
        "yaxis": {**axis, "title": {"text": row_title}, "autorange": "reversed", "scaleanchor": "x", "scaleratio": 1},
    }
    return make_figure([trace], layout, title, height=max(420, 13 * len(rows) + 160))
