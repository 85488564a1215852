"""Page "Residual stream": how big each component's write is, and what the stream predicts at each stage."""

import streamlit as st

from dashboards import analyses, plots, state

sel = state.require_tokens("Residual stream")
model = sel.model
tokens = analyses.symbols(model, sel.token_ids)
st.markdown(
    "Every position carries one vector through the network. The embeddings start it; each attention head and each "
    "MLP *adds* its output to it and overwrites nothing. Below: the size (L2 norm) of every write, per component "
    "and position (sizes of vectors do not add up, so they are not stacked)."
)
pos = state.pick_position(st, "Selected position (outlined on both charts)", tokens, key="resid_pos")
norms = state.attempt("Residual writes", analyses.residual_writes, model, sel.model_id, sel.token_ids)
if norms is not None:
    st.plotly_chart(plots.write_norms_heatmap(norms, tokens, selected=pos), key="write_norms_chart")

st.subheader("Logit lens")
st.markdown(
    "Read the stream out early: push it through the final LayerNorm and the unembedding after 0, 1, ... blocks. "
    "Colour: probability of the actual next character (at the last position, of the model's own top guess); "
    "text: the top guess at that stage. Hover for the top-k."
)
k = st.slider("Top-k in the hover", 1, 10, 5, key="lens_k")
lens = state.attempt("Logit lens", analyses.lens, model, sel.model_id, sel.token_ids, k)
if lens is not None:
    st.plotly_chart(plots.logit_lens_heatmap(lens, tokens, selected=pos), key="logit_lens_chart")
