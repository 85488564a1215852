"""DataFrame -> plotly Figure, one function per chart of the dashboard (no Streamlit here).

Every function takes a tidy frame with the columns it names and returns a ``go.Figure``, so each
chart can be built and checked on its own (``tests/test_plots.py``) and reused in notebooks.
Tokens are drawn with visible stand-ins for blanks: space as ``␣``, newline as ``⏎``.

Figures are assembled from plain dicts and built without plotly's per-property validation
(``_validate=False``), which costs ~100x more than the data itself on a page of heatmaps and would
break the dashboard's 0.5 s re-render budget; the tests validate every figure instead.

Example:
    >>> import pandas as pd
    >>> from dashboards.plots import head_heatmap
    >>> df = pd.DataFrame({"layer": [0, 0, 1, 1], "head": [0, 1, 0, 1], "value": [0.5, -1.0, 2.0, 0.0]})
    >>> head_heatmap(df, "value", title="toy").data[0].z.tolist()
    [[0.5, -1.0], [2.0, 0.0]]
"""

from __future__ import annotations

import html
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
    """A token as it is drawn: blanks made visible (``" "`` -> ``"␣"``)."""
    return _SHOWN.get(token, token)


def token_strip_html(tokens: Sequence[str]) -> str:
    """HTML chips for the sidebar's token strip: position above, token below (HTML-escaped)."""
    chips = "".join(
        '<span style="display:inline-block;margin:2px;padding:1px 5px;border:1px solid #9ab;border-radius:4px;'
        'font-family:monospace;text-align:center;background:#f3f7fb;color:#123">'
        f'<span style="font-size:0.65em;color:#678">{i}</span><br>{html.escape(display_token(t))}</span>'
        for i, t in enumerate(tokens)
    )
    return f'<div class="token-strip" style="line-height:1.1">{chips}</div>'


def _figure(data: list[dict[str, Any]], layout: dict[str, Any], title: str, height: int) -> go.Figure:
    """A figure from trace and layout dicts, built without validation (see the module docstring)."""
    layout = {"title": {"text": title}, "height": height, "margin": {"l": 60, "r": 30, "t": 70, "b": 50}, **layout}
    return go.Figure(data=data, layout=layout, _validate=False)


def _pivot(
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


def _cells(z: np.ndarray) -> np.ndarray:
    """Cell labels with two decimals; blank where the value is NaN."""
    return np.array([["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in np.atleast_2d(z)], dtype=object)


def _unit(lo: float, hi: float) -> list[float]:
    return [min(max(round(lo, 6), 0.0), 1.0), min(max(round(hi, 6), 0.0), 1.0)]


def _grid(titles: list[list[str]], hgap: float = 0.05, vgap: float = 0.12) -> tuple[dict, list[list[tuple[str, str]]]]:
    """Layout axes and title annotations for a rows x cols grid of subplots, and each cell's axis ids."""
    n_rows, n_cols = len(titles), len(titles[0])
    width, height = (1 - hgap * (n_cols - 1)) / n_cols, (1 - vgap * (n_rows - 1)) / n_rows
    layout: dict[str, Any] = {"annotations": []}
    refs = []
    for r in range(n_rows):
        refs.append([])
        for c in range(n_cols):
            i = "" if r == c == 0 else r * n_cols + c + 1  # plotly names the first axes x / xaxis
            x0, y1 = c * (width + hgap), 1 - r * (height + vgap)
            layout[f"xaxis{i}"] = {"domain": _unit(x0, x0 + width), "anchor": f"y{i}"}
            layout[f"yaxis{i}"] = {"domain": _unit(y1 - height, y1), "anchor": f"x{i}"}
            layout["annotations"].append(
                {"text": titles[r][c], "x": x0 + width / 2, "y": y1, "xref": "paper", "yref": "paper",
                 "xanchor": "center", "yanchor": "bottom", "showarrow": False}
            )  # fmt: skip
            refs[-1].append((f"x{i}", f"y{i}"))
    return layout, refs


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
    return _figure([trace], layout, f"Parameter inventory: {total:,} in all", height=max(300, 15 * len(names) + 110))


def next_token_figure(dist: pd.DataFrame, top_n: int = 15) -> go.Figure:
    """Logits, then softmax, then the sampling distribution, for the ``top_n`` highest logits.

    ``dist`` columns: ``token, logit, softmax`` (probability at temperature 1, no filtering) and
    ``prob`` (after temperature, top-k and top-p).
    """
    d = dist.sort_values("logit", ascending=False).head(top_n)
    labels = [display_token(t) for t in d["token"]]
    layout, refs = _grid([["logits: the model's raw scores", "softmax, then temperature / top-k / top-p"]], hgap=0.1)
    (x1, y1), (x2, y2) = refs[0]
    data = [
        {"type": "bar", "x": labels, "y": d["logit"].tolist(), "name": "logit", "xaxis": x1, "yaxis": y1,
         "marker": {"color": "#7f7f7f"}, "hovertemplate": "token %{x}<br>logit %{y:.3f}<extra></extra>"},
        {"type": "bar", "x": labels, "y": d["softmax"].tolist(), "name": "softmax(logits)", "xaxis": x2, "yaxis": y2,
         "marker": {"color": "#9ecae1"}, "hovertemplate": "token %{x}<br>softmax %{y:.3f}<extra></extra>"},
        {"type": "bar", "x": labels, "y": d["prob"].tolist(), "name": "sampling probability", "xaxis": x2,
         "yaxis": y2, "marker": {"color": "#08519c"},
         "hovertemplate": "token %{x}<br>sampled with p = %{y:.3f}<extra></extra>"},
    ]  # fmt: skip
    layout["yaxis"].update(title={"text": "logit"})
    layout["yaxis2"].update(title={"text": "probability"}, range=[0, 1.02])
    layout.update(barmode="group", legend={"orientation": "h", "y": -0.2})
    return _figure(data, layout, f"Next-token distribution (top {len(d)} by logit)", height=430)


def _square(part: pd.DataFrame, value: str, n: int) -> np.ndarray:
    """``part``'s ``value`` as an ``[q_pos, k_pos]`` array, NaN where there is no row (the causal mask)."""
    z = np.full((n, n), np.nan)
    z[part["q_pos"].to_numpy(), part["k_pos"].to_numpy()] = part[value].to_numpy()
    return z


def _token_axis(tokens: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """Unique category labels ``"pos token"`` (what hover shows) and axis ticks showing just the token."""
    labels = [f"{i} {display_token(t)}" for i, t in enumerate(tokens)]
    ticks = {"tickmode": "array", "tickvals": labels, "ticktext": [display_token(t) for t in tokens]}
    return labels, {**ticks, "type": "category", "tickfont": {"size": 9}}


def attention_heatmaps(
    patterns: pd.DataFrame, tokens: Sequence[str], *, row: str = "layer", title: str = ""
) -> go.Figure:
    """One query x key heatmap per (layer, head) in ``patterns``; hover shows query token, key token, weight.

    ``patterns`` columns: ``layer, head, q_pos, k_pos, weight``. ``row="layer"`` puts layers in rows and
    heads in columns; ``row="head"`` puts each head's blocks side by side (the "head h in every block" view).
    """
    col = "head" if row == "layer" else "layer"
    rows, cols = sorted(patterns[row].unique().tolist()), sorted(patterns[col].unique().tolist())
    name = {"layer": "block", "head": "head"}
    titles = [[f"{name[row]} {r} · {name[col]} {c}" for c in cols] for r in rows]
    layout, refs = _grid(titles, hgap=0.04, vgap=0.14 if len(rows) > 1 else 0.1)
    labels, ticks = _token_axis(tokens)
    data = []
    for (r, c), part in patterns.groupby([row, col]):
        x, y = refs[rows.index(r)][cols.index(c)]
        data.append(
            {"type": "heatmap", "z": _square(part, "weight", len(tokens)), "x": labels, "y": labels,
             "coloraxis": "coloraxis", "xaxis": x, "yaxis": y, "xgap": 0.5, "ygap": 0.5,
             "hovertemplate": "query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>"}
        )  # fmt: skip
        layout["xaxis" + x[1:]].update(ticks, title={"text": "key", "standoff": 2})
        layout["yaxis" + y[1:]].update(ticks, autorange="reversed", title={"text": "query", "standoff": 2})
    layout["coloraxis"] = {"colorscale": SEQUENTIAL, "cmin": 0, "cmax": 1, "colorbar": {"title": {"text": "weight"}}}
    title = title or "Attention patterns (row: query, column: key)"
    return _figure(data, layout, title, height=(320 if len(cols) > 1 else 420) * len(rows) + 90)


def head_heatmap(df: pd.DataFrame, value: str, *, title: str, diverging: bool = True, text: bool = True) -> go.Figure:
    """A layer x head heatmap of ``df[value]`` (columns ``layer, head, <value>``), centred at 0 when diverging."""
    z, layers, heads = _pivot(df, ["layer"], ["head"], value)
    bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    scale = {"colorscale": DIVERGING, "zmid": 0.0, "zmin": -bound, "zmax": bound} if diverging else {}
    trace = {
        "type": "heatmap", "z": z, "x": [f"head {h}" for (h,) in heads], "y": [f"layer {i}" for (i,) in layers],
        "colorscale": SEQUENTIAL, "colorbar": {"title": {"text": value}}, **scale,
        "hovertemplate": "%{y}, %{x}<br>" + value + " %{z:.4f}<extra></extra>",
    }  # fmt: skip
    if text:
        trace.update(text=_cells(z), texttemplate="%{text}")
    return _figure([trace], {"yaxis": {"autorange": "reversed"}}, title, height=160 + 60 * len(layers))


def head_scores_heatmap(scores: pd.DataFrame) -> go.Figure:
    """Head scores with the numbers in the cells: one row per head (labelled with its ``kind``), entropy apart.

    ``scores`` columns: ``component, kind, previous_token, current_token, first_token, duplicate_token,
    induction, entropy`` (as ``interp.attention.head_scores`` returns them). Scores share a 0..1 scale;
    entropy (nats) gets its own panel.
    """
    names = ["previous_token", "induction", "duplicate_token", "first_token", "current_token"]
    rows = [f"{c} · {k}" for c, k in zip(scores["component"], scores["kind"], strict=True)]
    layout, refs = _grid([["scores (0 to 1)", "entropy (nats)"]], hgap=0.08)
    layout["xaxis"]["domain"], layout["xaxis2"]["domain"] = [0.0, 0.74], [0.82, 1.0]
    layout["annotations"][0]["x"], layout["annotations"][1]["x"] = 0.37, 0.91
    values, entropy = scores[names].to_numpy(dtype=float), scores[["entropy"]].to_numpy(dtype=float)
    common = {"y": rows, "texttemplate": "%{text}", "hovertemplate": "%{y}<br>%{x} %{z:.3f}<extra></extra>"}
    data = [
        {"type": "heatmap", "z": values, "x": [n.replace("_", " ") for n in names], "text": _cells(values),
         "colorscale": SEQUENTIAL, "zmin": 0, "zmax": 1, "colorbar": {"title": {"text": "score"}, "x": 0.76},
         "xaxis": refs[0][0][0], "yaxis": refs[0][0][1], **common},
        {"type": "heatmap", "z": entropy, "x": ["entropy"], "text": _cells(entropy), "colorscale": GREYS,
         "showscale": False, "xaxis": refs[0][1][0], "yaxis": refs[0][1][1], **common},
    ]  # fmt: skip
    layout["yaxis"].update(autorange="reversed")
    layout["yaxis2"].update(autorange="reversed", showticklabels=False)
    return _figure(data, layout, "Head scores and classification", height=140 + 34 * len(rows))


def write_norms_bar(norms: pd.DataFrame, tokens: Sequence[str]) -> go.Figure:
    """Stacked bars: how much each component writes into the residual stream at each position.

    ``norms`` columns: ``pos, component, kind, norm`` (``interp.residual.write_norms``, one batch row).
    """
    labels, ticks = _token_axis(tokens)
    data = []
    for i, (component, part) in enumerate(norms.groupby("component", sort=False)):
        data.append(
            {"type": "bar", "name": component, "x": [labels[p] for p in part["pos"]], "y": part["norm"].tolist(),
             "marker": {"color": QUALITATIVE[i % len(QUALITATIVE)]},
             "hovertemplate": f"{component}<br>position %{{x}}<br>|write| %{{y:.3f}}<extra></extra>"}
        )  # fmt: skip
    layout = {
        "barmode": "stack",
        "xaxis": {**ticks, "title": {"text": "position"}},
        "yaxis": {"title": {"text": "L2 norm of the write"}},
    }
    return _figure(data, layout, "What each component writes into the residual stream, per position", height=460)


def logit_lens_heatmap(lens: pd.DataFrame, tokens: Sequence[str]) -> go.Figure:
    """Logit lens, stage x position: colour = probability of the next token, text = the top guess, hover = top-k.

    ``lens`` columns: ``pos, layer, stage, target_token, target_prob, target_rank, top_tokens, top_probs``
    (``interp.dla.logit_lens``, one batch row).
    """
    labels, ticks = _token_axis(tokens)
    stages = lens.drop_duplicates("layer").sort_values("layer")["stage"].tolist()
    n_stage, n_pos = len(stages), len(tokens)
    z, top, hover = (
        np.full((n_stage, n_pos), np.nan),
        np.full((n_stage, n_pos), "", dtype=object),
        np.full((n_stage, n_pos), "", dtype=object),
    )
    for row in lens.itertuples(index=False):
        z[row.layer, row.pos] = row.target_prob
        top[row.layer, row.pos] = display_token(row.top_tokens[0])
        guesses = ", ".join(f"{display_token(t)} {p:.2f}" for t, p in zip(row.top_tokens, row.top_probs, strict=True))
        hover[row.layer, row.pos] = (
            f"next {display_token(row.target_token)}: p {row.target_prob:.3f}, rank {row.target_rank}<br>top: {guesses}"
        )
    trace = {
        "type": "heatmap", "z": z, "x": labels, "y": stages, "text": top, "texttemplate": "%{text}",
        "customdata": hover, "colorscale": SEQUENTIAL, "zmin": 0, "zmax": 1,
        "colorbar": {"title": {"text": "p(next)"}},
        "hovertemplate": "%{y} at %{x}<br>%{customdata}<extra></extra>",
    }  # fmt: skip
    layout = {"xaxis": {**ticks, "title": {"text": "position"}}, "yaxis": {"title": {"text": "read out after"}}}
    return _figure(
        [trace], layout, "Logit lens: the residual stream read out early (text: top guess)", height=180 + 60 * n_stage
    )


def dla_bar(dla: pd.DataFrame, *, title: str) -> go.Figure:
    """Direct logit attribution of one position: a bar per component (red raises the logit, blue lowers it).

    ``dla`` columns: ``component, contribution`` (``interp.dla.direct_logit_attribution`` at one position).
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
    return _figure([trace], layout, title, height=420)


def distributions_compare(dist: pd.DataFrame, *, title: str, top_n: int = 15) -> go.Figure:
    """Next-token probabilities before and after an ablation, side by side (top ``top_n`` of either).

    ``dist`` columns: ``token, prob_clean, prob_ablated``.
    """
    keep = dist.nlargest(top_n, "prob_clean").index.union(dist.nlargest(top_n, "prob_ablated").index)
    d = dist.loc[keep].sort_values("prob_clean", ascending=False)
    labels = [display_token(t) for t in d["token"]]
    data = [
        {"type": "bar", "x": labels, "y": d["prob_clean"].tolist(), "name": "clean", "marker": {"color": "#9ecae1"},
         "hovertemplate": "token %{x}<br>clean p %{y:.3f}<extra></extra>"},
        {"type": "bar", "x": labels, "y": d["prob_ablated"].tolist(), "name": "ablated", "marker": {"color": "#cb181d"},
         "hovertemplate": "token %{x}<br>ablated p %{y:.3f}<extra></extra>"},
    ]  # fmt: skip
    layout = {"barmode": "group", "xaxis": {"type": "category"}, "yaxis": {"title": {"text": "probability"}}}
    return _figure(data, layout, title, height=400)


def position_heatmap(df: pd.DataFrame, value: str, tokens: Sequence[str], *, title: str) -> go.Figure:
    """A (layer or layer-and-head) x position heatmap of ``df[value]``, diverging and centred at 0.

    ``df`` columns: ``layer, pos, <value>`` and optionally ``head`` (rows become ``L{l}H{h}``), as in the
    ``resid_pre`` / ``attn_out`` / ``mlp_out`` / ``heads_by_pos`` grids of ``interp.patching``.
    """
    labels, ticks = _token_axis(tokens)
    keys = ["layer", "head"] if "head" in df.columns else ["layer"]
    z, row_keys, _ = _pivot(df, keys, ["pos"], value, col_order=[(p,) for p in range(len(tokens))])
    rows = [f"L{k[0]}H{k[1]}" if len(keys) == 2 else f"layer {k[0]}" for k in row_keys]
    bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    trace = {
        "type": "heatmap", "z": z, "x": labels, "y": rows, "colorscale": DIVERGING, "zmid": 0.0,
        "zmin": -bound, "zmax": bound, "colorbar": {"title": {"text": value}},
        "hovertemplate": "%{y} at %{x}<br>" + value + " %{z:.3f}<extra></extra>",
    }  # fmt: skip
    layout = {"xaxis": {**ticks, "title": {"text": "position"}}, "yaxis": {"autorange": "reversed", "type": "category"}}
    return _figure([trace], layout, title, height=170 + max(120, 34 * len(rows)))


def composition_heatmap(comp: pd.DataFrame) -> go.Figure:
    """Q-, K- and V-composition of source heads (rows) into later heads (columns), as score / baseline.

    ``comp`` columns: ``kind, src_layer, src_head, dst_layer, dst_head, score, baseline, ratio``
    (``interp.circuits.composition_scores``). White is the random baseline (ratio 1); the cells show the score.
    """
    kinds = ["Q", "K", "V"]
    layout, refs = _grid([[f"{k}-composition" for k in kinds]], hgap=0.07)
    data, baselines = [], []
    for (x, y), kind in zip(refs[0], kinds, strict=True):
        part = comp[comp["kind"] == kind]
        ratio, src, dst = _pivot(part, ["src_layer", "src_head"], ["dst_layer", "dst_head"], "ratio")
        score = _pivot(part, ["src_layer", "src_head"], ["dst_layer", "dst_head"], "score")[0]
        baselines.append(f"{kind} {part['baseline'].iloc[0]:.3f}" if len(part) else f"{kind} -")
        data.append(
            {"type": "heatmap", "z": ratio, "text": _cells(score), "texttemplate": "%{text}",
             "x": [f"L{a}H{b}" for a, b in dst], "y": [f"L{a}H{b}" for a, b in src], "customdata": score,
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
    return _figure(data, layout, title, height=420)


def circuit_heatmap(matrix: pd.DataFrame, *, title: str, row_title: str, col_title: str) -> go.Figure:
    """A token x token circuit matrix (index: row tokens, columns: column tokens), diverging and centred at 0."""
    rows = [display_token(t) for t in matrix.index]
    cols = [display_token(t) for t in matrix.columns]
    z = matrix.to_numpy(dtype=float)
    bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    trace = {
        "type": "heatmap", "z": z, "x": cols, "y": rows, "colorscale": DIVERGING, "zmid": 0.0, "zmin": -bound,
        "zmax": bound, "hovertemplate": f"{row_title} %{{y}}<br>{col_title} %{{x}}<br>value %{{z:.3f}}<extra></extra>",
    }  # fmt: skip
    axis = {"type": "category", "tickfont": {"size": 9}, "dtick": 1}
    layout = {
        "xaxis": {**axis, "title": {"text": col_title}},
        "yaxis": {**axis, "title": {"text": row_title}, "autorange": "reversed"},
    }
    return _figure([trace], layout, title, height=640)
