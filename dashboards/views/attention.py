"""Page "Attention": patterns of every head in every block, one head across blocks, and head scores."""

import streamlit as st

from dashboards import analyses, plots, state

sel = state.require_tokens("Attention")
cfg = sel.model.cfg
st.markdown(
    "Each heatmap is one head's attention pattern: row = the query position reading, column = the key position "
    "it reads from; each row sums to 1, and the causal mask leaves the upper triangle empty. The selected token's "
    "row is outlined in every heatmap."
)
patterns = analyses.attention.attention_patterns(sel.ref, sel.token_ids)
tokens = analyses.symbols(sel.ref, sel.token_ids)

st.subheader("One head in every block")
c1, c2 = st.columns(2)
head = c1.selectbox("Head", range(cfg.n_heads), format_func=lambda h: f"head {h}", key="attn_compare_head")
pos = state.pick_position(c2, "Query position (outlined)", tokens, key="attn_pos")
st.plotly_chart(
    plots.attention_heatmaps(
        patterns[patterns["head"] == head],
        tokens,
        row="head",
        title=f"Head {head} in every block, side by side",
        selected=pos,
    ),
    key="attn_compare_chart",
)

st.subheader("Every head of the chosen blocks")
if cfg.n_heads == 1:
    st.caption("This model has one head per block: the view above already shows every head.")
else:
    layers = st.multiselect(
        "Blocks", list(range(cfg.n_layers)), default=list(range(cfg.n_layers)), format_func=lambda x: f"block {x}",
        key="attn_grid_layers",
    )  # fmt: skip
    if layers:
        st.plotly_chart(
            plots.attention_heatmaps(
                patterns[patterns["layer"].isin(layers)], tokens, title="Blocks x heads", selected=pos
            ),
            key="attn_grid_chart",
        )
    else:
        st.info("Choose at least one block to see its heads.")

st.subheader("Head scores and classification")
st.markdown(
    "Each score is the mean attention a head pays to one kind of key: the **previous** token, an earlier copy of the "
    "current token (**duplicate**), the token that followed such a copy (**induction**), the first token "
    "(**first**, often a resting place), or itself (**current**); **entropy** is how spread out its attention is. "
    "Scores that the prompt cannot define (no repeated token, say) are left blank."
)
scores = state.attempt("Head scores", analyses.attention.attention_scores, sel.ref, sel.token_ids)
if scores is not None:
    note = analyses.attention.head_class_note(scores)
    if note:
        st.warning(
            f"{note[0].upper()}{note[1:]}: this prompt repeats no token, so an induction head has nothing to copy "
            "and rests on <bos> like a sink. Heads that show no other pattern are classed **undefined**; type a "
            "prompt with a repeated segment to see induction."
        )
    st.plotly_chart(plots.head_scores_heatmap(scores), key="head_scores_chart")
    st.dataframe(scores, hide_index=True, key="head_scores_table")
