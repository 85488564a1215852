"""Page "Residual stream": how big each component's write is, and what the stream predicts at each stage."""

import streamlit as st

from dashboards import analyses, plots, state

sel = state.require_tokens("Residual stream")
tokens = analyses.symbols(sel.ref, sel.token_ids)
st.markdown(
    "Every position carries one vector through the network. The embeddings start it; each attention head and each "
    "MLP *adds* its output to it and overwrites nothing. The upper panel: the size (L2 norm) of every write, per "
    "component and position (sizes of vectors do not add up, so they are not stacked). The lower panel, the **logit "
    "lens**: the stream read out early, pushed through the final LayerNorm and the unembedding after 0, 1, ... "
    "blocks; colour: probability of the actual next character (at the last position, of the model's own top "
    "guess); text: the top guess at that stage. The panels share their positions: hover one position to read both."
)
c1, c2 = st.columns(2)
pos = state.pick_position(c1, "Selected position (outlined on both panels)", tokens, key="resid_pos")
k = c2.slider("Top-k guesses in the logit lens's hover", 1, 10, 5, key="lens_k")
norms = state.attempt("Residual writes", analyses.residual.residual_writes, sel.ref, sel.token_ids)
lens = state.attempt("Logit lens", analyses.residual.lens, sel.ref, sel.token_ids, k)
panels = [] if norms is None else [plots.write_norms_heatmap(norms, tokens, selected=pos)]
panels += [] if lens is None else [plots.logit_lens_heatmap(lens, tokens, selected=pos)]
if panels:
    title = "The residual stream: what is written into it, and what it predicts, at each position"
    st.plotly_chart(plots.stack_over_positions(panels, title), key="residual_chart")
