"""Page "Model & prediction": the config, the parameter inventory, logits -> softmax -> sampling, generation."""

import streamlit as st

from dashboards import analyses, plots, state

sel = state.selection()
cfg = sel.model.cfg
st.title("Model & prediction")

left, right = st.columns([1, 2])
with left:
    st.subheader("Config")
    st.dataframe(
        analyses.model.config_frame(sel.ref),
        hide_index=True,
        height=36 * (len(analyses.model.config_frame(sel.ref)) + 1) + 4,
        key="config_table",
    )
    st.caption(f"d_head = {cfg.d_head}; {cfg.n_params:,} parameters by the closed-form count.")
    made = sel.model.provenance
    val = made.get("val_loss")
    if made.get("command"):
        loss = f"validation loss {val:.3f} {made.get('loss_unit', '')}" if isinstance(val, int | float) else "no loss"
        st.caption(
            f"Trained by `{made['command']}` ({made.get('steps', '?')} steps, {loss}); the **Model card** page has "
            "its loss curve and what its final evaluation numbers mean."
        )
with right:
    st.plotly_chart(plots.parameter_bar(analyses.model.inventory(sel.ref)), key="inventory_chart")

sel = state.selection()
if sel.token_ids is None:
    st.info(
        "The next-token sections need a prompt they can run: fix the prompt in the sidebar (the reason is under it)."
    )
    st.stop()
st.subheader("Next-token distribution")
st.markdown(
    "The last block's residual stream is unembedded into one **logit** per symbol. Softmax turns logits into "
    "probabilities; sampling divides the logits by the **temperature** first (0 = always the top token), then "
    "may keep only the **top-k** symbols or the smallest set reaching probability **top-p**."
)
tokens = analyses.symbols(sel.ref, sel.token_ids)
c1, c2, c3, c4 = st.columns(4)
pos = state.pick_position(c1, "Predict after position", tokens, key="pred_pos")
temperature = c2.slider("Temperature", 0.0, 3.0, 1.0, 0.05, key="pred_temperature")
top_k = c3.number_input("Top-k (0 = off)", 0, cfg.d_vocab, 0, key="pred_top_k")
top_p = c4.slider("Top-p (1 = off)", 0.05, 1.0, 1.0, 0.05, key="pred_top_p")
settings = {"temperature": temperature, "top_k": int(top_k) or None, "top_p": top_p}
dist = analyses.model.next_token_distribution(sel.ref, sel.token_ids, pos, **settings)
st.plotly_chart(plots.next_token_figure(dist), key="next_token_chart")

st.subheader("Generate a continuation")
g1, g2 = st.columns(2)
max_new = g1.slider("New characters", 1, 64, 24, key="gen_max_new")
seed = g2.number_input("Seed", 0, 2**31 - 1, 0, key="gen_seed")
asked = (sel.model_id, sel.prompt, max_new, int(seed), tuple(settings.values()))
if st.button("Generate", key="gen_button", type="primary"):
    st.session_state["generated"] = (
        asked,
        analyses.model.generate(sel.ref, sel.prompt, max_new, seed=int(seed), **settings),
    )
made_for, text = st.session_state.get("generated", (None, ""))
if made_for is not None:  # kept across reruns: other widgets no longer wipe the text
    st.code(made_for[1] + text, language=None, wrap_lines=True)
    same = "" if made_for == asked else " Generated with other settings or another prompt: press Generate again."
    st.caption(f"The prompt, then {len(text)} sampled characters. Same seed and settings, same text.{same}")
