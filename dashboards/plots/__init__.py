"""DataFrame -> plotly Figure, one function per chart of the dashboard (no Streamlit here).

Every function takes a tidy frame with the columns it names and returns a ``go.Figure``, so each
chart can be built and checked on its own (``tests/dashboards/test_plots.py``) and reused in notebooks.
Tokens are drawn with visible stand-ins for blanks: space as ``␣``, newline as ``⏎``.

One module per page family (``base`` holds what they share); every function is importable from here.
Figures skip plotly's validation for speed (see :mod:`dashboards.plots.base`); the tests validate them.

Example:
    >>> import pandas as pd
    >>> from dashboards.plots import head_heatmap
    >>> df = pd.DataFrame({"layer": [0, 0, 1, 1], "head": [0, 1, 0, 1], "value": [0.5, -1.0, 2.0, 0.0]})
    >>> head_heatmap(df, "value", title="toy").data[0].z.tolist()
    [[0.5, -1.0], [2.0, 0.0]]
"""

from dashboards.plots.attention import attention_heatmaps, head_heatmap, head_scores_heatmap, position_heatmap
from dashboards.plots.base import (
    DIVERGING,
    GREYS,
    QUALITATIVE,
    SEQUENTIAL,
    display_token,
    mark_position,
    stack_over_positions,
    token_chip_labels,
)
from dashboards.plots.dynamics import loss_curve_figure, metric_line_figure, step_heatmap
from dashboards.plots.features import (
    activation_histogram_figure,
    contexts_html,
    logit_effects_figure,
    prompt_activation_bar,
)
from dashboards.plots.flow import (
    attention_row_figure,
    flow_graph_figure,
    route_states,
    stage_label,
    state_key,
    state_readout_figure,
)
from dashboards.plots.graph import edge_graph_figure
from dashboards.plots.model import distributions_compare, next_token_figure, parameter_bar, training_history_figure
from dashboards.plots.qk_ov import composition_heatmap, qk_ov_heatmap
from dashboards.plots.residual import dla_bar, logit_lens_heatmap, write_norms_heatmap

__all__ = [
    "DIVERGING",
    "GREYS",
    "QUALITATIVE",
    "SEQUENTIAL",
    "activation_histogram_figure",
    "attention_heatmaps",
    "attention_row_figure",
    "composition_heatmap",
    "contexts_html",
    "display_token",
    "distributions_compare",
    "dla_bar",
    "edge_graph_figure",
    "flow_graph_figure",
    "head_heatmap",
    "head_scores_heatmap",
    "logit_effects_figure",
    "logit_lens_heatmap",
    "loss_curve_figure",
    "mark_position",
    "metric_line_figure",
    "next_token_figure",
    "parameter_bar",
    "position_heatmap",
    "prompt_activation_bar",
    "qk_ov_heatmap",
    "route_states",
    "stack_over_positions",
    "stage_label",
    "state_key",
    "state_readout_figure",
    "step_heatmap",
    "token_chip_labels",
    "training_history_figure",
    "write_norms_heatmap",
]
