"""Charts of the Features page: a feature's top contexts (HTML, the activating character highlighted), its
activation histogram, its logit effects, its activation along the prompt, and the steered distribution.

Example:
    >>> import pandas as pd
    >>> top = pd.DataFrame({"activation": [2.0], "context_left": ["th"], "pos_str": ["e"], "context_right": [" "]})
    >>> "<mark" in contexts_html(top)
    True
"""

from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go

from dashboards.plots.base import display_token, make_figure, mark_position


def contexts_html(top: pd.DataFrame) -> str:
    """One line per top context (``top_activations`` columns ``activation, context_left, pos_str, context_right``):
    the activation, then the text with the activating character highlighted (shaded by its activation)."""
    if top.empty:
        return '<div class="feature-contexts"><i>This feature never fires on the validation text.</i></div>'
    peak = float(top["activation"].max()) or 1.0
    lines = []
    for act, left, here, right in zip(top["activation"], top["context_left"], top["pos_str"], top["context_right"],
                                      strict=True):  # fmt: skip
        alpha = 0.25 + 0.75 * max(float(act), 0.0) / peak
        shown = [html.escape(str(part).replace("\n", "⏎")) for part in (left, display_token(here), right)]
        lines.append(
            f'<div style="font-family:monospace;white-space:pre"><span style="color:#678">{act:7.2f}</span>  '
            f'{shown[0]}<mark style="background:rgba(255,140,0,{alpha:.2f});padding:0 1px">{shown[1]}</mark>'
            f"{shown[2]}</div>"
        )
    return f'<div class="feature-contexts">{"".join(lines)}</div>'


def activation_histogram_figure(hist: pd.DataFrame, *, title: str) -> go.Figure:
    """Bars of ``activation_histogram`` (columns ``bin_start, bin_end, count``)."""
    centres = ((hist["bin_start"] + hist["bin_end"]) / 2).tolist()
    widths = (hist["bin_end"] - hist["bin_start"]).tolist()
    trace = {
        "type": "bar",
        "x": centres,
        "y": hist["count"].tolist(),
        "width": widths,
        "marker": {"color": "#fd8d3c"},
        "hovertemplate": "activation %{x:.2f}<br>%{y} tokens<extra></extra>",
    }
    layout = {
        "xaxis": {"title": {"text": "activation (where it fires)"}},
        "yaxis": {"title": {"text": "tokens"}},
        "bargap": 0.05,
    }
    return make_figure([trace], layout, title, height=320)


def logit_effects_figure(
    effects: pd.DataFrame, *, title: str, axis: str = "logit effect of the decoder direction"
) -> go.Figure:
    """Horizontal bars of ``feature_logit_effects`` (or any frame with ``target_str, logit_effect``): promoted
    characters above, suppressed below."""
    d = effects.sort_values("logit_effect")
    labels = [f"{display_token(t)} " for t in d["target_str"]]
    colours = ["#2166ac" if v < 0 else "#b2182b" for v in d["logit_effect"]]
    trace = {"type": "bar", "orientation": "h", "y": labels, "x": d["logit_effect"].tolist(),
             "marker": {"color": colours}, "hovertemplate": "%{y}: %{x:+.3f}<extra></extra>"}  # fmt: skip
    layout = {"xaxis": {"title": {"text": axis}}, "yaxis": {"type": "category"}}
    return make_figure([trace], layout, title, height=max(300, 18 * len(d) + 110))


def prompt_activation_bar(
    acts: pd.DataFrame, tokens: list[str], feature: int, selected: int | None = None
) -> go.Figure:
    """The activation of ``feature`` at each position of the prompt (``sae_activations`` rows of that feature);
    ``selected``: the position outlined."""
    values = [0.0] * len(tokens)
    for pos, act in zip(acts["pos"], acts["activation"], strict=True):
        values[int(pos)] = float(act)
    labels = [f"{i} {display_token(t)}" for i, t in enumerate(tokens)]
    trace = {"type": "bar", "x": labels, "y": values, "marker": {"color": "#fd8d3c"},
             "hovertemplate": "%{x}<br>activation %{y:.3f}<extra></extra>"}  # fmt: skip
    ticks = [display_token(t) for t in tokens]
    layout = {"xaxis": {"type": "category", "tickmode": "array", "tickvals": labels, "ticktext": ticks},
              "yaxis": {"title": {"text": "activation"}}}  # fmt: skip
    mark_position(layout, selected, [("x", "y")])
    return make_figure([trace], layout, f"Feature {feature} along the prompt", height=300)
