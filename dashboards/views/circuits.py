"""Page "Circuits": how heads compose across layers, and the QK / OV circuits of one head (weights only)."""

import streamlit as st

from dashboards import analyses, plots, state

sel = state.selection()
cfg = sel.model.cfg
st.title("Circuits")
st.markdown(
    "These views read the weights, not the prompt. A later head can read what an earlier head wrote through its "
    "queries (Q), keys (K) or values (V); the composition score measures how much of the earlier head's output "
    "lands in that input. Compare with the score of random matrices of the same shapes (the baseline)."
)
if cfg.n_layers < 2:
    st.info("Composition needs at least two layers; this model has one.")
else:
    comp = state.attempt("Composition scores", analyses.circuits.composition, sel.ref)
    if comp is not None:
        st.plotly_chart(plots.composition_heatmap(comp), key="composition_chart")

st.subheader("QK and OV circuits of one head")
st.markdown(
    "**QK**: how much a query token wants to attend to a key token (token embeddings only). "
    "**OV**: what attending to a token does to each output logit; a bright diagonal means the head copies."
)
c1, c2, c3, c4 = st.columns(4)
layer = c1.selectbox("Layer", range(cfg.n_layers), key="circuit_layer")
head = c2.selectbox("Head", range(cfg.n_heads), key="circuit_head")
circuit = c3.radio("Circuit", ["QK", "OV"], horizontal=True, key="circuit_choice")
axes = {"QK": ("query token", "key token"), "OV": ("attended token", "output logit")}[circuit]
specials = c4.checkbox("Show <bos>, <pad>, <unk>", False, key="circuit_specials")
matrix = state.attempt("Circuit", analyses.circuits.circuit, sel.ref, circuit, layer, head, specials)
if matrix is not None:
    title = f"{circuit} circuit of L{layer}H{head} (colour limits: 1st / 99th percentile)"
    st.plotly_chart(
        plots.circuit_heatmap(matrix, title=title, row_title=axes[0], col_title=axes[1]), key="circuit_chart"
    )
