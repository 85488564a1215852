"""Page "Training dynamics": scrub through a shipped training run and watch the induction head form.

The run's metrics (every snapshot: losses, head scores, composition, DLA, weight norms) are computed once per
session (``analyses.dynamics.run_frame``); moving the step slider only reads that frame and one snapshot's patterns.
"""

import streamlit as st

from dashboards import analyses, plots, state

SCORES = ["previous_token", "induction", "duplicate_token", "first_token", "current_token"]
COMPOSITION = ["Q_composition", "K_composition", "V_composition"]

st.title("Training dynamics")
st.markdown(
    "Olsson et al. (2022) found that induction heads form in a **phase change**: in a narrow window of training "
    "the loss on the repeated half of `[BOS, r, r]` drops while the induction score jumps. Scrub through the run: "
    "the loss curve, every head's attention pattern, the head scores and the composition at the chosen step."
)
runs = analyses.dynamics.list_runs()
if not runs:
    st.info("No training run is shipped with its snapshots.")
    st.stop()
first = runs.index("induction-2l") if "induction-2l" in runs else 0  # the run with the phase change
name = st.selectbox("Run", runs, index=first, key="dyn_run")
frame = state.attempt("Training dynamics", analyses.dynamics.run_frame, name)
if frame is None:
    st.stop()
steps = sorted(frame.step.unique().tolist())
step = st.select_slider("Step", steps, value=steps[len(steps) // 2], key="dyn_step")
st.plotly_chart(plots.loss_curve_figure(frame, step), key="dyn_loss")

metrics = sorted(frame.metric.unique())
c1, c2 = st.columns(2)
metric = c1.selectbox("Metric across steps", metrics, index=metrics.index("induction"), key="dyn_metric")
parts = sorted(frame[frame.metric == metric].component.unique())
component = c2.selectbox("Phase change of", parts, index=len(parts) - 1, key="dyn_component")
changes = state.attempt("Phase change", analyses.dynamics.run_phase, name, metric, component)
window = None if changes is None else (int(changes.start_step[0]), int(changes.end_step[0]))
st.plotly_chart(plots.metric_line_figure(frame, metric, window, step), key="dyn_line")
if changes is not None:
    st.caption(f"Fastest change of {metric} of {component}: steps {window[0]}..{window[1]}. What moves with it:")
    st.dataframe(changes.head(10), hide_index=True, key="dyn_changes")

st.subheader(f"At step {step}")
patterns = state.attempt("Attention patterns", analyses.dynamics.run_patterns, name, step)
if patterns is not None:
    title = f"Attention of every head at step {step} on the probe's first sequence (row: query, column: key)"
    st.plotly_chart(plots.attention_heatmaps(patterns[0], patterns[1], title=title), key="dyn_patterns")
h1, h2 = st.columns(2)
h1.plotly_chart(plots.step_heatmap(frame, step, SCORES, title=f"Head scores at step {step}"), key="dyn_scores")
title = f"Composition scores at step {step}"
h2.plotly_chart(plots.step_heatmap(frame, step, COMPOSITION, title=title), key="dyn_composition")
