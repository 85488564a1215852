"""Charts of the residual stream: the writes of every component, the logit lens, direct logit attribution."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboards.plots.base import (
    SEQUENTIAL,
    display_token,
    make_figure,
    mark_position,
    token_axis,
)


def write_norms_heatmap(norms: pd.DataFrame, tokens: Sequence[str], selected: int | None = None) -> go.Figure:
    """Component x position heatmap of the size of each write (norms do not add, so they are not stacked).

    ``norms`` columns: ``pos, component, norm`` (``interp.write_norms``, one batch row); rows in the frame's
    order of components (embeddings, then each block's heads and MLP). ``selected``: the position outlined.
    """
    labels, ticks = token_axis(tokens)
    components = list(dict.fromkeys(norms["component"]))
    z = np.full((len(components), len(tokens)), np.nan)
    for component, pos, norm in zip(norms["component"], norms["pos"], norms["norm"], strict=True):
        z[components.index(component), int(pos)] = float(norm)
    trace = {
        "type": "heatmap", "z": z, "x": labels, "y": components, "colorscale": SEQUENTIAL, "xgap": 1, "ygap": 1,
        "colorbar": {"title": {"text": "L2 norm"}},
        "hovertemplate": "%{y} at %{x}<br>|write| %{z:.3f}<extra></extra>",
    }  # fmt: skip
    layout = {"xaxis": {**ticks, "title": {"text": "position"}},
              "yaxis": {"type": "category", "autorange": "reversed", "title": {"text": "component"}}}  # fmt: skip
    mark_position(layout, selected, [("x", "y")])
    title = "How big each component's write into the residual stream is, per position (L2 norm)"
    return make_figure([trace], layout, title, height=max(320, 150 + 26 * len(components)))


def logit_lens_heatmap(lens: pd.DataFrame, tokens: Sequence[str], selected: int | None = None) -> go.Figure:
    """Logit lens, stage x position: colour = probability of the next token, text = the top guess, hover = top-k.

    ``lens`` columns: ``pos, stage, stage_name, target_str, target_prob, target_rank, top_strs, top_probs``
    (``interp.logit_lens``, one batch row). ``selected``: the position outlined.
    """
    labels, ticks = token_axis(tokens)
    stages = lens.drop_duplicates("stage").sort_values("stage")["stage_name"].tolist()
    n_stage, n_pos = len(stages), len(tokens)
    z, top, hover = (
        np.full((n_stage, n_pos), np.nan),
        np.full((n_stage, n_pos), "", dtype=object),
        np.full((n_stage, n_pos), "", dtype=object),
    )
    for row in lens.itertuples(index=False):
        z[row.stage, row.pos] = row.target_prob
        top[row.stage, row.pos] = display_token(row.top_strs[0])
        guesses = ", ".join(f"{display_token(t)} {p:.2f}" for t, p in zip(row.top_strs, row.top_probs, strict=True))
        hover[row.stage, row.pos] = (
            f"next {display_token(row.target_str)}: p {row.target_prob:.3f}, rank {row.target_rank}<br>top: {guesses}"
        )
    trace = {
        "type": "heatmap", "z": z, "x": labels, "y": stages, "text": top, "texttemplate": "%{text}",
        "customdata": hover, "colorscale": SEQUENTIAL, "zmin": 0, "zmax": 1,
        "colorbar": {"title": {"text": "p(next)"}},
        "hovertemplate": "%{y} at %{x}<br>%{customdata}<extra></extra>",
    }  # fmt: skip
    layout = {"xaxis": {**ticks, "title": {"text": "position"}}, "yaxis": {"title": {"text": "read out after"}}}
    mark_position(layout, selected, [("x", "y")])
    return make_figure(
        [trace], layout, "Logit lens: the residual stream read out early (text: top guess)", height=180 + 60 * n_stage
    )


def dla_bar(dla: pd.DataFrame, *, title: str) -> go.Figure:
    """Direct logit attribution of one position: a bar per component (red raises the logit, blue lowers it).

    ``dla`` columns: ``component, contribution`` (``interp.direct_logit_attribution`` at one position).
    """
    values = dla["contribution"].to_numpy(dtype=float)
    trace = {
        "type": "bar", "x": dla["component"].tolist(), "y": values.tolist(),
        "marker": {"color": np.where(values >= 0, "#d6604d", "#4393c3").tolist()},
        "hovertemplate": "%{x}<br>contribution %{y:.4f}<extra></extra>",
    }  # fmt: skip
    layout = {
        "xaxis": {"title": {"text": "component"}, "type": "category"},
        "yaxis": {"title": {"text": "contribution"}},
    }
    return make_figure([trace], layout, title, height=420)
