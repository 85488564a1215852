"""Page "QK / OV": how heads compose across layers, and the full QK and OV matrices of one head (weights only)."""

import streamlit as st

from dashboards import analyses, plots, state

sel = state.selection()
cfg = sel.model.cfg
st.title("QK / OV")
st.markdown(
    "These views read the weights, not the prompt. A later head can read what an earlier head wrote through its "
    "queries (Q), keys (K) or values (V); the composition score measures how much of the earlier head's output "
    "lands in that input. Compare with the score of random matrices of the same shapes (the baseline)."
)
if cfg.n_layers < 2:
    st.info("Composition needs at least two layers; this model has one.")
else:
    comp = state.attempt("Composition scores", analyses.qk_ov.composition, sel.ref)
    if comp is not None:
        st.plotly_chart(plots.composition_heatmap(comp), key="composition_chart")

st.subheader("The full QK and OV matrices of one head, between tokens")
st.markdown(
    "**QK**: how much a query token wants to attend to a key token (token embeddings only). "
    "**OV**: what attending to a token does to each output logit; a bright diagonal means the head copies."
)
c1, c2, c3, c4 = st.columns(4)
layer = c1.selectbox("Layer", range(cfg.n_layers), key="qk_ov_layer")
head = c2.selectbox("Head", range(cfg.n_heads), key="qk_ov_head")
which = c3.radio("Matrix", ["QK", "OV"], horizontal=True, key="qk_ov_choice")
axes = {"QK": ("query token", "key token"), "OV": ("attended token", "output logit")}[which]
specials = c4.checkbox("Show <bos>, <pad>, <unk>", False, key="qk_ov_specials")
matrix = state.attempt("Matrix", analyses.qk_ov.full_matrix, sel.ref, which, layer, head, specials)
if matrix is not None:
    title = f"Full {which} matrix of {analyses.qk_ov.head_label(layer, head)} (colour limits: 1st / 99th percentile)"
    st.plotly_chart(plots.qk_ov_heatmap(matrix, title=title, row_title=axes[0], col_title=axes[1]), key="qk_ov_chart")
