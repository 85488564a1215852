"""Page "Direct logit attribution": which components push the target's logit up or down, at one position."""

import streamlit as st

from dashboards import analyses, plots, state

sel = state.require_tokens("Direct logit attribution")
tokens = analyses.symbols(sel.ref, sel.token_ids)
frozen = "With the final LayerNorm's scale frozen, the" if sel.model.cfg.norm != "none" else "The"
st.markdown(
    f"{frozen} logit is a sum over everything written into the residual stream: each bar is one component's "
    "share, and the bars add up to the logit (or, with a contrast token, to the logit difference)."
)
c1, c2, c3, c4 = st.columns(4)
pos = state.pick_position(c1, "Position", tokens, key="dla_pos")
target = c2.text_input(
    "Target character (empty: the next character; at the last position, the model's top guess)", "", max_chars=5,
    key="dla_target",
)  # fmt: skip
contrast = c3.text_input("Contrast character (optional)", "", max_chars=5, key="dla_contrast")
per = c4.selectbox("Split", ["head", "neuron", "component", "layer"], key="dla_per")
frame = state.attempt(
    "Direct logit attribution", analyses.residual.dla, sel.ref, sel.token_ids, target or None, contrast or None, per
)
if frame is not None:
    here, total = analyses.residual.dla_at(frame, pos, top=40 if per == "neuron" else None)
    what = plots.display_token(here["target_str"].iloc[0])
    vs = f" minus logit of {plots.display_token(contrast)}" if contrast else ""
    where = f"after position {pos} ({plots.display_token(tokens[pos])})"
    n_all = int((frame["pos"] == pos).sum())
    shown = (
        f"the {len(here)} largest of {n_all} contributions, which sum to it"
        if len(here) < n_all
        else "the sum of all contributions"
    )
    title = f"Logit of {what}{vs} {where} = {total:.3f}, {shown}"
    st.plotly_chart(plots.dla_bar(here, title=title), key="dla_bar_chart")
    if per == "head":
        st.plotly_chart(
            plots.head_heatmap(
                here[here["component_type"] == "head"], "contribution", title="Heads: red raises, blue lowers"
            ),
            key="dla_head_chart",
        )
    st.dataframe(here, hide_index=True, key="dla_table")
    csv = analyses.residual.dla_csv(sel.ref, sel.token_ids, target or None, contrast or None, per)
    st.download_button(
        "Download every position as CSV", csv, file_name="contributions.csv", mime="text/csv", key="dla_download"
    )
