"""The information-flow graph: residual states as nodes on a (position, stage) grid, the routes' edges as lines.

:func:`flow_graph_figure` draws a frame of ``interp.flow_routes`` (or of ``interp.information_flow``): positions
across (the prompt's characters as ticks), the residual stream's stages up (``L0.resid_pre`` ... ``final``). A head edge
goes from its key position one stage up to its query position, coloured by head; an MLP edge and the carried
residual go straight up, side by side. Width grows with importance (absolute: a share of 1 is the widest). The
midpoint of every edge carries its hover text and, as ``customdata``, its row label in the frame, so a click on
it can select the edge (``st.plotly_chart(..., on_select="rerun")``); every state's marker carries
``"state:{stage}:{position}"`` (:func:`state_key` reads it back), so a click on a node selects that state.

Example:
    >>> import pandas as pd
    >>> routes = pd.DataFrame({"layer": [0, 0], "component": ["L0H0", "L0.resid_pre"], "head": [0, None],
    ...                        "component_type": ["head", "residual"], "upstream_stage": [0, 0],
    ...                        "downstream_stage": [1, 1], "upstream_pos": [0, 1], "downstream_pos": [1, 1],
    ...                        "importance": [0.7, 0.3]})
    >>> fig = flow_graph_figure(routes, ["<bos>", "a"], ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post"])
    >>> [trace.name for trace in fig.data]
    ['L0H0', 'residual', 'edges', 'states']
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from dashboards.plots.base import QUALITATIVE, display_token, make_figure
from dashboards.plots.graph import hover_marks, weighted_lines
from model.network.labels import component_label

RESIDUAL, MLP, EXPLAINED = "#9a9a9a", "#2a9d55", "#c0392b"
OFFSET = {"residual": -0.12, "mlp": 0.12}  # side by side, straight up


def stage_label(hook_name: str, last: bool) -> str:
    """A stage's label, as the logit lens names them: ``blocks.1.hook_resid_mid`` -> ``L1.resid_mid``; the last stage
    -> ``final``.

    Example:
        >>> stage_label("blocks.1.hook_resid_pre", False), stage_label("blocks.1.hook_resid_post", True)
        ('L1.resid_pre', 'final')
    """
    if last:
        return "final"
    _, layer, hook = hook_name.split(".")
    return component_label(hook.removeprefix("hook_"), int(layer))


def state_key(customdata: object) -> tuple[int, int] | None:
    """``(stage, position)`` of a clicked state's ``customdata`` (``"state:3:14"``); None for anything else.

    Example:
        >>> state_key("state:3:14"), state_key(7)
        ((3, 14), None)
    """
    if not isinstance(customdata, str) or not customdata.startswith("state:"):
        return None
    stage, pos = customdata.split(":")[1:]
    return int(stage), int(pos)


def route_states(routes: pd.DataFrame, position: int | None, n_stages: int) -> list[tuple[int, int]]:
    """``(stage, position)`` of every state the routes touch, and of the explained final state: the graph's nodes.

    Example:
        >>> routes = pd.DataFrame({"upstream_stage": [0], "downstream_stage": [1], "upstream_pos": [0],
        ...                        "downstream_pos": [1]})
        >>> route_states(routes, position=1, n_stages=2)
        [(0, 0), (1, 1)]
    """
    ends = {(int(r.upstream_stage), int(r.upstream_pos)) for r in routes.itertuples()}
    ends |= {(int(r.downstream_stage), int(r.downstream_pos)) for r in routes.itertuples()}
    return sorted(ends | ({(n_stages - 1, int(position))} if position is not None else set()))


def _group(row) -> tuple[str, str]:
    if row.component_type == "head":
        return row.component, QUALITATIVE[(int(row.layer) * 7 + int(row.head)) % 24]
    return ("MLP", MLP) if row.component_type == "mlp" else ("residual", RESIDUAL)


def flow_graph_figure(
    routes: pd.DataFrame,
    tokens: list[str],
    stages: list[str],
    *,
    position: int | None = None,
    selected_state: tuple[int, int] | None = None,
    title: str = "Information flow",
    height: int = 560,
) -> go.Figure:
    """The edges of ``routes`` on the (position, stage) grid; ``position``: the explained final state, in red (drawn
    even where no edge reaches it); ``selected_state``: ``(stage, position)`` of the state ringed."""
    needed = {"component", "component_type", "layer", "head", "upstream_stage", "downstream_stage", "upstream_pos",
              "downstream_pos", "importance"}  # fmt: skip
    if not isinstance(routes, pd.DataFrame) or not needed <= set(routes.columns):
        raise TypeError(f"flow_graph_figure needs a frame of interp.flow_routes with the columns {sorted(needed)}")
    groups: dict[tuple[str, str], list] = {}
    for label, row in zip(routes.index, routes.itertuples(index=False), strict=True):
        dx = OFFSET.get(row.component_type, 0.0)
        ends = ((row.upstream_pos + dx, row.upstream_stage), (row.downstream_pos + dx, row.downstream_stage))
        groups.setdefault(_group(row), []).append((ends, row.importance, label, row))
    traces, ends_all, text, custom = [], [], [], []
    for (name, colour), items in groups.items():
        traces += weighted_lines([e for e, *_ in items], [w for _, w, *_ in items], 1.0, name=name, colour=colour)
        for ends, weight, label, row in items:
            ends_all.append(ends)
            custom.append(label)
            up, down = display_token(tokens[row.upstream_pos]), display_token(tokens[row.downstream_pos])
            text.append(f"{name}: {row.upstream_pos} {up} → {row.downstream_pos} {down}<br>importance {weight:.3f}")
    if ends_all:
        traces.append(hover_marks(ends_all, text, custom, opacity=0.25))
    last = len(stages) - 1
    states = route_states(routes, position, len(stages))  # (stage, position)
    colours = [EXPLAINED if state == (last, position) else "#eef3f8" for state in states]
    ring = [3 if state == selected_state else 1 for state in states]
    names = [f"{stage_label(stages[s], s == last)} @ {p} {display_token(tokens[p])}<br>click: what it predicts"
             for s, p in states]  # fmt: skip
    traces.append({"type": "scatter", "mode": "markers", "x": [p for _, p in states], "y": [s for s, _ in states],
                   "name": "states", "showlegend": False, "text": names, "hovertemplate": "%{text}<extra></extra>",
                   "customdata": [f"state:{s}:{p}" for s, p in states],
                   "marker": {"size": 13, "color": colours, "line": {"color": "#345", "width": ring}}})  # fmt: skip
    layout = {
        "xaxis": {"tickmode": "array", "tickvals": list(range(len(tokens))), "showgrid": False, "zeroline": False,
                  "ticktext": [display_token(t) for t in tokens], "range": [-0.7, len(tokens) - 0.3]},
        "yaxis": {"tickmode": "array", "tickvals": list(range(len(stages))), "showgrid": False, "zeroline": False,
                  "ticktext": [stage_label(n, i == last) for i, n in enumerate(stages)], "range": [-0.4, last + 0.4]},
        "legend": {"orientation": "h", "y": -0.12}, "plot_bgcolor": "white", "clickmode": "event+select",
    }  # fmt: skip
    return make_figure(traces, layout, title, height)


def state_readout_figure(readout: pd.DataFrame, *, title: str, top: int = 8) -> go.Figure:
    """Horizontal bars of the ``top`` most likely next tokens of ``interp.state_readout`` (``target_str, logit,
    target_prob``), the likeliest on top."""
    d = readout.nlargest(top, "target_prob").iloc[::-1]
    labels = [f"{display_token(t)} " for t in d["target_str"]]
    trace = {"type": "bar", "orientation": "h", "y": labels, "x": d["target_prob"].tolist(),
             "customdata": d["logit"].tolist(), "marker": {"color": "#08519c"},
             "hovertemplate": "%{y}: p = %{x:.3f} (logit %{customdata:.2f})<extra></extra>"}  # fmt: skip
    layout = {"xaxis": {"title": {"text": "probability"}, "range": [0, 1]}, "yaxis": {"type": "category"}}
    return make_figure([trace], layout, title, height=max(260, 24 * len(d) + 110))


def attention_row_figure(row: pd.DataFrame, *, title: str) -> go.Figure:
    """Bars of one head's attention from one query to every key: the rows of ``interp.attention_pattern_frame`` at
    that query (``k_pos, k_str, weight``)."""
    labels = [f"{p} {display_token(t)}" for p, t in zip(row["k_pos"], row["k_str"], strict=True)]
    trace = {"type": "bar", "x": labels, "y": row["weight"].tolist(), "marker": {"color": "#6a51a3"},
             "hovertemplate": "%{x}<br>attention %{y:.3f}<extra></extra>"}  # fmt: skip
    layout = {"xaxis": {"type": "category", "tickmode": "array", "tickvals": labels,
                        "ticktext": [display_token(t) for t in row["k_str"]]},
              "yaxis": {"title": {"text": "attention weight"}, "range": [0, 1]}}  # fmt: skip
    return make_figure([trace], layout, title, height=300)
