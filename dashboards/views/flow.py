"""Page "Information flow": the graph of what built one prediction, edge by edge, and a causal check of any edge."""

import streamlit as st

from dashboards import analyses, plots, state

sel = state.require_tokens("Information flow")
ids = sel.token_ids
tokens = analyses.symbols(sel.ref, ids)
st.markdown(
    "Every residual state (a position at one stage of the model) is the state below plus the parts its sublayer "
    "adds: each head's read of each earlier position, the MLP's output, and the residual carried through. An edge's "
    "**importance** is its part's share of the new state (Ferrando & Voita 2024's proximity). Pick the prediction "
    "to explain: the graph keeps the edges above the threshold that lead to it. **Click a node** to see what that "
    "state predicts and what flows into it; importance measures size, not effect: **click an edge** (or pick it "
    "below) and patch it from a corrupted prompt to see what it really does."
)
c1, c2 = st.columns(2)
pos = state.pick_position(c1, "Explain the prediction after", tokens, key="flow_pos")
threshold = c2.slider("Keep edges whose importance is at least", 0.0, 1.0, 0.1, 0.01, key="flow_threshold")
routes = state.attempt("Information flow", analyses.flow.routes, sel.ref, ids, pos, threshold)
if routes is None:
    st.stop()
stages = analyses.flow.stages(sel.ref)
last = len(stages) - 1
nodes = plots.route_states(routes, pos, len(stages))


def node_name(node: tuple[int, int]) -> str:
    stage, at = node
    return f"{plots.stage_label(stages[stage], stage == last)} at {at} {plots.display_token(tokens[at])}"


# A click on the graph picks a node or an edge once (the chart keeps reporting its selection on later reruns)
chart_event = st.session_state.get("flow_graph")
points = chart_event.selection.points if chart_event and chart_event.get("selection") else []
clicked = [p.get("customdata") for p in points if p.get("customdata") is not None]
if clicked and st.session_state.get("flow_clicked") != (clicked[-1], pos):
    st.session_state["flow_clicked"] = (clicked[-1], pos)
    if plots.state_key(clicked[-1]) in nodes:
        st.session_state["flow_state"] = plots.state_key(clicked[-1])
    elif clicked[-1] in routes.index:
        st.session_state["flow_edge"] = analyses.flow.edge_key(routes.loc[clicked[-1]])
if st.session_state.get("flow_state") not in nodes:
    st.session_state["flow_state"] = (last, pos)
node = st.session_state["flow_state"]

title = f"What built the prediction after {pos} ({plots.display_token(tokens[pos])}): {len(routes)} edges"
figure = plots.flow_graph_figure(routes, tokens, stages, position=pos, selected_state=node, title=title)
st.plotly_chart(figure, key="flow_graph", on_select="rerun", selection_mode="points")

st.subheader("The selected state")
node = st.selectbox("State (click a node of the graph)", nodes, format_func=node_name, key="flow_state")
left, right = st.columns(2)
with left:
    readout = analyses.flow.readout(sel.ref, ids, *node)
    st.plotly_chart(plots.state_readout_figure(readout, title=f"What {node_name(node)} predicts next"),
                    key="flow_readout")  # fmt: skip
    top = " At the top stage this is the model's own prediction." if node[0] == last else ""
    st.caption(f"The state read out as the logit lens does: through the final LayerNorm (with its own scale) and "
               f"the unembedding.{top}")  # fmt: skip
with right:
    into = analyses.flow.incoming(sel.ref, ids, *node)
    if into.empty:
        st.caption("The embeddings (token plus position): nothing flows into this state.")
    else:
        strongest = into.head(10)
        names = {"component": "part", "upstream_pos": "from position", "upstream_str": "from token"}
        st.dataframe(strongest[[*names, "importance", "norm"]], hide_index=True, key="flow_incoming",
                     column_config=names)  # fmt: skip
        st.caption(f"The {len(strongest)} most important of the {len(into)} parts that built this state (its "
                   "update's parts share 1, with the attention's output bias).")  # fmt: skip

if routes.empty:
    st.info("No edge reaches this importance: lower the threshold.")
    st.stop()

st.subheader("The selected edge")
ranked = routes.sort_values("importance", ascending=False)
keys = [analyses.flow.edge_key(row) for _, row in ranked.iterrows()]


def describe(key) -> str:
    component, upstream, downstream = key
    imp = float(ranked.importance.iloc[keys.index(key)])
    return f"{component}: {upstream} {plots.display_token(tokens[upstream])} → {downstream} " \
           f"{plots.display_token(tokens[downstream])} (importance {imp:.3f})"  # fmt: skip


if st.session_state.get("flow_edge") not in keys:
    st.session_state.pop("flow_edge", None)
edge = st.selectbox("Edge (click one on the graph)", keys, format_func=describe, key="flow_edge")
component, source, target = edge

left, right = st.columns(2)
with left:
    if analyses.flow.is_head(component):
        row = analyses.flow.attention_row(sel.ref, ids, component, target)
        title = f"{component}'s attention from position {target}"
        st.plotly_chart(plots.attention_row_figure(row, title=title), key="flow_pattern")
    else:
        st.caption("This edge carries one position's own state upward: no attention pattern to show.")
with right:
    effects, dla, guess = analyses.flow.effects(sel.ref, ids, edge, pos)
    st.plotly_chart(plots.logit_effects_figure(effects, title="What this part writes towards each next character",
                    axis="direct logit effect at the edge's target position"), key="flow_effects")  # fmt: skip
    here = "" if target == pos else f" (it is written at position {target}; later layers carry it on)"
    st.caption(f"Direct logit attribution of this part to the top guess {plots.display_token(guess)}: "
               f"{dla:+.3f}{here}.")  # fmt: skip

st.subheader("Causal check")
read = source - 1  # position 0 is <bos>, which no prompt can change: then the longest word's first letter
default = state.corrupt_at(sel.prompt, read) if read >= 0 else None
corrupted_ids = state.corrupted_prompt(st, "flow_corrupted", default, "the character this edge reads changed")
if corrupted_ids is not None and st.button("Patch this edge from the corrupted prompt", key="flow_patch"):
    st.session_state["flow_checked"] = (sel.model_id, ids, corrupted_ids, edge, pos)
checked = st.session_state.get("flow_checked")
if checked is not None and checked == (sel.model_id, ids, corrupted_ids, edge, pos):
    result = state.attempt("Causal check", analyses.flow.causal_check, sel.ref, ids, corrupted_ids, edge, pos)
    if result is not None:
        m1, m2, m3 = st.columns(3)
        m1.metric("log p(top guess), clean", f"{result['metric_clean']:.3f}")
        m2.metric("Exact change when patched", f"{result['change']:+.3f}")
        m3.metric("Attribution's prediction", f"{result['predicted_change']:+.3f}")
        st.caption(
            "The metric is the log-probability of the clean model's top guess after the explained position. The "
            "exact change patches this edge's part alone (its value on the corrupted run) and reruns everything "
            "above it; the prediction is the gradient at that state times the part's change (first order)."
        )
