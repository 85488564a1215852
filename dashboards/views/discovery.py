"""Page "Circuit discovery": score every edge of the graph, keep those above a threshold, and see how faithful
that circuit is; on the sidebar's prompt, or on a model whose circuit is known by construction."""

import streamlit as st

from dashboards import analyses, plots, state

SIDEBAR = "the sidebar's model and prompt"
TASKS = {
    "planted-induction": "planted induction model (weights by hand; known circuit)",
    "planted-lookup": "planted lookup model with an MLP (weights by hand; known circuit)",
    "induction-2l": "induction-2l on BOS + r + r (known circuit)",
    "modular-sum": "modular addition, trained in 2 s (known circuit)",
}
METHODS = {
    "exact": "exact edge patching (ground truth)",
    "eap": "EAP (one gradient)",
    "eap-ig": "EAP-IG (5 interpolation steps)",
}

st.title("Circuit discovery")
st.markdown(
    "Every **edge** is one node's write (an embedding, a head, an MLP) as one later input reads it (a head's query, "
    "key or value, an MLP, the logits). An edge's **score** is how much the metric moves when that edge alone "
    "carries its value from the **corrupted** prompt. Keep the edges above the threshold, corrupt every other edge, "
    "and **faithfulness** says how much of the clean metric that circuit alone keeps (1 = all of it)."
)
c1, c2 = st.columns(2)
source = c1.selectbox("Explain", [SIDEBAR, *TASKS], format_func=lambda k: TASKS.get(k, k), key="disc_source")
method = c2.selectbox("Edge scores", list(METHODS), format_func=METHODS.__getitem__, key="disc_method")

frame = known = None
if source == SIDEBAR:
    sel = state.require_tokens()
    corrupted_ids = state.corrupted_prompt(st, key="disc_corrupted")
    if corrupted_ids is not None:
        result = state.attempt("Edge scores", analyses.graph.edge_scores, sel.ref, sel.token_ids, corrupted_ids, method)
        if result is not None:
            frame, words = result
            st.caption(f"Metric: {words}.")
    cfg = sel.model.cfg
else:
    task = analyses.graph.known_task(source)
    cfg = task.model.cfg
    st.caption(task.description + f". Known circuit: {task.circuit.size} edges, drawn dashed green where not shown.")
    frame, known = analyses.graph.task_edge_scores(source, method), task.circuit.edges

if frame is not None:
    largest = float(frame.abs_score.max())
    share = st.slider(
        "Show the edges whose |score| is at least this share of the largest", 0.0, 1.0, 0.05, 0.01, key="disc_share"
    )
    shown = analyses.graph.edges_above(frame, share)
    edges = tuple(zip(shown.upstream, shown.downstream, strict=True))
    if source == SIDEBAR:
        faithful = state.attempt("Faithfulness", analyses.graph.faithfulness, sel.ref, sel.token_ids, corrupted_ids,
                                 edges)  # fmt: skip
    else:
        faithful = state.attempt("Faithfulness", analyses.graph.task_faithfulness, source, edges)
    m1, m2, m3 = st.columns(3)
    m1.metric("Edges shown", f"{len(shown)} of {len(frame)}")
    m2.metric("Faithfulness of what is shown", "-" if faithful is None else f"{faithful:.3f}")
    m3.metric("Largest |score|", f"{largest:.4g}")
    title = f"{METHODS[method]}: edges with |score| >= {share * largest:.3g}"
    figure = plots.edge_graph_figure(shown, n_heads=cfg.n_heads, n_layers=cfg.n_layers, known=known, title=title)
    st.plotly_chart(figure, key="disc_graph")
    st.dataframe(shown.sort_values("abs_score", ascending=False), hide_index=True, key="disc_table")
