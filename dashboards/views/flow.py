"""Page "Information flow": the graph of what built one prediction, edge by edge, and a causal check of any edge."""

import streamlit as st

from dashboards import analyses, plots, state

sel = state.require_tokens("Information flow")
model, ids = sel.model, sel.token_ids
tokens = analyses.symbols(model, ids)
st.markdown(
    "Every residual state (a position at one stage of the model) is the state below plus the parts its sublayer "
    "adds: each head's read of each earlier position, the MLP's output, and the residual carried through. An edge's "
    "**importance** is its part's share of the new state (Ferrando & Voita 2024's proximity). Pick the prediction "
    "to explain: the graph keeps the edges above the threshold that lead to it. Importance measures size, not "
    "effect: **click an edge** (or pick it below) and patch it from a corrupted prompt to see what it really does."
)
c1, c2 = st.columns(2)
pos = state.pick_position(c1, "Explain the prediction after", tokens, key="flow_pos", default=sel.position)
threshold = c2.slider("Keep edges whose importance is at least", 0.0, 1.0, 0.1, 0.01, key="flow_threshold")
routes = state.attempt("Information flow", analyses.flow.routes, model, sel.model_id, ids, pos, threshold)
if routes is None:
    st.stop()
stages = analyses.flow.stages(model, sel.model_id)
figure = plots.flow_graph_figure(routes, tokens, stages, position=pos, title=f"What built the prediction after "
                                 f"{pos} ({plots.display_token(tokens[pos])}): {len(routes)} edges")  # fmt: skip
event = st.plotly_chart(figure, key="flow_graph", on_select="rerun", selection_mode="points")
if routes.empty:
    st.info("No edge reaches this importance: lower the threshold.")
    st.stop()

ranked = routes.sort_values("importance", ascending=False)
keys = [analyses.flow.edge_key(row) for _, row in ranked.iterrows()]


def describe(key) -> str:
    layer, kind, head, source, target = key
    who = f"L{layer}H{head}" if kind == "head" else {"mlp": f"L{layer} MLP"}.get(kind, f"L{layer} residual")
    imp = float(ranked.importance.iloc[keys.index(key)])
    return f"{who}: {source} {plots.display_token(tokens[source])} → {target} {plots.display_token(tokens[target])} " \
           f"(importance {imp:.3f})"  # fmt: skip


clicked = [p.get("customdata") for p in (event.selection.points if event else []) if p.get("customdata") is not None]
if clicked and clicked[-1] in routes.index:  # a click on the graph picks the edge below
    key = analyses.flow.edge_key(routes.loc[clicked[-1]])
    if st.session_state.get("flow_clicked") != key:
        st.session_state["flow_clicked"] = st.session_state["flow_edge"] = key
if st.session_state.get("flow_edge") not in keys:
    st.session_state.pop("flow_edge", None)
edge = st.selectbox("Edge", keys, format_func=describe, key="flow_edge")
layer, kind, head, source, target = edge

left, right = st.columns(2)
with left:
    if kind == "head":
        row = analyses.flow.attention_row(model, sel.model_id, ids, layer, head, target)
        title = f"L{layer}H{head}'s attention from position {target}"
        st.plotly_chart(plots.attention_row_figure(row, title=title), key="flow_pattern")
    else:
        st.caption("This edge carries one position's own state upward: no attention pattern to show.")
with right:
    effects, dla, guess = analyses.flow.effects(model, sel.model_id, ids, edge, pos)
    st.plotly_chart(plots.logit_effects_figure(effects, title="What this part writes towards each next character",
                    axis="direct logit effect at the edge's target position"), key="flow_effects")  # fmt: skip
    here = "" if target == pos else f" (it is written at position {target}; later layers carry it on)"
    st.caption(f"Direct logit attribution of this part to the top guess {plots.display_token(guess)}: "
               f"{dla:+.3f}{here}.")  # fmt: skip

st.subheader("Causal check")
typed = st.text_input("Corrupted prompt, as long as the clean one (empty: the clean prompt with its longest word's "
                      "first letter changed)", "", key="flow_corrupted")  # fmt: skip
corrupted = typed or state.default_corruption(sel.prompt)
corrupted_ids = state.attempt("Corrupted prompt", state.check_prompt, model, corrupted)
st.caption(f"Corrupted: `{corrupted}`".replace("\n", "⏎"))
if corrupted_ids is not None and st.button("Patch this edge from the corrupted prompt", key="flow_patch"):
    st.session_state["flow_checked"] = (sel.model_id, ids, corrupted_ids, edge, pos)
checked = st.session_state.get("flow_checked")
if checked is not None and checked == (sel.model_id, ids, corrupted_ids, edge, pos):
    result = state.attempt("Causal check", analyses.flow.causal_check, model, sel.model_id, ids, corrupted_ids, edge,
                           pos)  # fmt: skip
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
