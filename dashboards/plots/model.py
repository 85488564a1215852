"""Charts of the model page: the parameter inventory, the next-token distribution, before/after an ablation."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from dashboards.plots.base import (
    QUALITATIVE,
    display_token,
    make_figure,
    subplot_grid,
)


def parameter_bar(inventory: pd.DataFrame) -> go.Figure:
    """Parameter count per tensor (``inventory`` columns ``tensor, shape, count``), coloured by module."""
    names = inventory["tensor"].tolist()
    modules = [name.rsplit(".", 1)[0] for name in names]
    colour = {m: QUALITATIVE[i % len(QUALITATIVE)] for i, m in enumerate(dict.fromkeys(modules))}
    trace = {
        "type": "bar", "orientation": "h", "y": names, "x": inventory["count"].tolist(),
        "customdata": [[str(shape), module] for shape, module in zip(inventory["shape"], modules, strict=True)],
        "marker": {"color": [colour[m] for m in modules]},
        "hovertemplate": "%{y} (%{customdata[1]})<br>shape %{customdata[0]}<br>%{x:,} parameters<extra></extra>",
    }  # fmt: skip
    layout = {"xaxis": {"title": {"text": "parameters"}}, "yaxis": {"autorange": "reversed", "tickfont": {"size": 10}}}
    total = int(inventory["count"].sum())
    return make_figure(
        [trace], layout, f"Parameter inventory: {total:,} in all", height=max(300, 15 * len(names) + 110)
    )


def next_token_figure(dist: pd.DataFrame, top_n: int = 15) -> go.Figure:
    """Logits, then softmax, then the sampling distribution, for the ``top_n`` highest logits.

    ``dist`` columns (``interp.next_token_distribution``): ``target_str, logit, target_prob`` (probability at
    temperature 1, no filtering) and ``sample_prob`` (after temperature, top-k and top-p).
    """
    d = dist.sort_values("logit", ascending=False).head(top_n)
    labels = [display_token(t) for t in d["target_str"]]
    layout, refs = subplot_grid(
        [["logits: the model's raw scores", "softmax, then temperature / top-k / top-p"]], hgap=0.1
    )
    (x1, y1), (x2, y2) = refs[0]
    data = [
        {"type": "bar", "x": labels, "y": d["logit"].tolist(), "name": "logit", "xaxis": x1, "yaxis": y1,
         "marker": {"color": "#7f7f7f"}, "hovertemplate": "token %{x}<br>logit %{y:.3f}<extra></extra>"},
        {"type": "bar", "x": labels, "y": d["target_prob"].tolist(), "name": "softmax(logits)", "xaxis": x2,
         "yaxis": y2, "marker": {"color": "#9ecae1"},
         "hovertemplate": "token %{x}<br>softmax %{y:.3f}<extra></extra>"},
        {"type": "bar", "x": labels, "y": d["sample_prob"].tolist(), "name": "sampling probability", "xaxis": x2,
         "yaxis": y2, "marker": {"color": "#08519c"},
         "hovertemplate": "token %{x}<br>sampled with p = %{y:.3f}<extra></extra>"},
    ]  # fmt: skip
    layout["yaxis"].update(title={"text": "logit"})
    layout["yaxis2"].update(title={"text": "probability"}, range=[0, 1.02])
    layout.update(barmode="group", legend={"orientation": "h", "y": -0.2})
    return make_figure(data, layout, f"Next-token distribution (top {len(d)} by logit)", height=430)


def distributions_compare(
    dist: pd.DataFrame,
    *,
    title: str,
    top_n: int = 15,
    token: str = "target_str",
    after: str = "prob_ablated",
    after_name: str = "ablated",
    colour: str = "#cb181d",
    height: int = 400,
) -> go.Figure:
    """Next-token probabilities before and after an edit, side by side (top ``top_n`` of either).

    ``dist`` columns: ``token`` (the token column), ``prob_clean`` and ``after``: by default those of
    ``interp.compare_ablation``'s frame (``target_str``, ``prob_ablated``); the Features page passes
    ``feature_intervention``'s ``prob_intervened``.
    """
    keep = dist.nlargest(top_n, "prob_clean").index.union(dist.nlargest(top_n, after).index)
    d = dist.loc[keep].sort_values("prob_clean", ascending=False)
    labels = [display_token(t) for t in d[token]]
    data = [
        {"type": "bar", "x": labels, "y": d["prob_clean"].tolist(), "name": "clean", "marker": {"color": "#9ecae1"},
         "hovertemplate": "token %{x}<br>clean p %{y:.3f}<extra></extra>"},
        {"type": "bar", "x": labels, "y": d[after].tolist(), "name": after_name, "marker": {"color": colour},
         "hovertemplate": f"token %{{x}}<br>{after_name} p %{{y:.3f}}<extra></extra>"},
    ]  # fmt: skip
    layout = {"barmode": "group", "xaxis": {"type": "category"}, "yaxis": {"title": {"text": "probability"}}}
    return make_figure(data, layout, title, height=height)


def training_history_figure(history: pd.DataFrame, *, unit: str, references: dict[str, float]) -> go.Figure:
    """Training loss (a line), validation loss (markers) and the learning rate (right axis) against the step.

    ``history`` columns: ``step, train_loss, val_loss`` (NaN between evaluations) and optionally ``lr``, as a
    checkpoint's ``provenance["history"]`` records them. ``references`` are dashed horizontal lines with their
    names (the uniform guess, a bigram model), so the curve is read against what it should beat.
    """
    val = history.dropna(subset=["val_loss"])
    data = [
        {"type": "scatter", "mode": "lines", "x": history["step"].tolist(), "y": history["train_loss"].tolist(),
         "name": "training loss", "line": {"color": QUALITATIVE[0]}},
        {"type": "scatter", "mode": "lines+markers", "x": val["step"].tolist(), "y": val["val_loss"].tolist(),
         "name": "validation loss", "line": {"color": QUALITATIVE[1]}, "marker": {"size": 5}},
    ]  # fmt: skip
    if "lr" in history.columns:
        data.append(
            {"type": "scatter", "mode": "lines", "x": history["step"].tolist(), "y": history["lr"].tolist(),
             "name": "learning rate", "yaxis": "y2", "line": {"color": "#bbbbbb", "width": 1}}
        )  # fmt: skip
    shapes, notes = [], []
    for i, (name, value) in enumerate(references.items()):
        shapes.append(
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": value,
                "y1": value,
                "line": {"dash": "dash", "color": QUALITATIVE[(i + 2) % len(QUALITATIVE)], "width": 1},
            }
        )
        notes.append({"xref": "paper", "x": 0.01, "y": value, "text": f"{name} {value:.2f}", "showarrow": False,
                      "yshift": 9, "xanchor": "left", "font": {"size": 11}})  # fmt: skip
    layout = {
        "xaxis": {"title": {"text": "training step"}},
        "yaxis": {"title": {"text": f"loss ({unit})"}},
        "yaxis2": {"title": {"text": "learning rate"}, "overlaying": "y", "side": "right", "showgrid": False},
        "shapes": shapes, "annotations": notes, "legend": {"orientation": "h", "y": -0.2},
    }  # fmt: skip
    return make_figure(data, layout, "Loss during training (from the checkpoint's history)", height=430)
