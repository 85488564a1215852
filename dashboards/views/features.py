"""Page "Features": pick an SAE and a feature (or click a character of the prompt to list its active features),
read the feature's card, and steer it to resample the continuation."""

import streamlit as st

from dashboards import analyses, plots, state

sel = state.require_tokens("Features")
features = analyses.features
choices = features.sae_choices(sel.label)
if not choices:
    st.info(
        f"No shipped sparse autoencoder reads {sel.label!r}: the shipped ones are trained on minigpt-text "
        "(pick it in the sidebar), or train one with `minigpt sae train --model ... --out ...`."
    )
    st.stop()
st.markdown(
    "A sparse autoencoder (SAE) rewrites an activation as a sparse sum of learned **feature** directions; a "
    "transcoder rewrites an MLP's output from its input the same way. Top contexts and histograms come from "
    f"{features.VALIDATION_WINDOWS} windows of the built-in corpus's validation text; labels are derived from "
    "the top contexts automatically."
)
c1, c2 = st.columns([3, 2])
sae_name = c1.selectbox("SAE", list(choices), format_func=lambda n: f"{n}: {choices[n]}", key="feat_sae")
sae = features.load_sae(sae_name)
figures = sae.provenance.get("metrics") or {}
if figures:
    c2.caption(
        f"On the validation text: variance explained {figures['variance_explained']:.3f}, L0 "
        f"{figures['l0']:.1f}, CE loss recovered {figures['ce_recovered']:.3f}, {figures['dead']} dead and "
        f"{figures['dense']} dense features."
    )
tokens = analyses.symbols(sel.ref, sel.token_ids)
active = features.prompt_features(sel.ref, sel.token_ids, sae_name)


def pick_strongest() -> None:
    """Clicking a character shows its strongest feature."""
    pos = st.session_state.get("feat_pos")
    here = active[active.pos == pos] if pos is not None else active.iloc[:0]
    if len(here):
        st.session_state["feat_id"] = int(here.feature.iloc[0])


pos = state.pick_token(
    st, "Click a character of the prompt to list its active features (and select it on every page)",
    plots.token_chip_labels(tokens), key="feat_pos", on_pick=pick_strongest,  # unique labels: a chip per position
)  # fmt: skip
if "feat_id" not in st.session_state:
    st.session_state["feat_id"] = int(active.feature.iloc[0]) if len(active) else 0
feature = int(st.number_input("Feature", 0, sae.cfg.d_sae - 1, key="feat_id"))
if pos is not None:
    here = active[active.pos == pos].head(12)
    names = features.labels(sel.ref, sae_name, tuple(here.feature.tolist()))
    st.caption(f"{len(active[active.pos == pos])} features are active at position {pos} ({tokens[pos]!r}):")
    st.dataframe(
        here.assign(label=here.feature.map(names))[["feature", "activation", "label"]],
        hide_index=True, key="feat_active_table",
    )  # fmt: skip

label = features.labels(sel.ref, sae_name, (feature,))[feature]
st.subheader(f"Feature {feature}: {label}")
card = state.attempt("Feature card", features.feature_card, sel.ref, sae_name, feature)
if card is not None:
    top, hist, effects = card
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Top-activating contexts** (the highlighted character is where it fires)")
        st.html(plots.contexts_html(top))
    with right:
        rate = float(hist.firing_rate.sum()) if len(hist) else 0.0
        st.plotly_chart(plots.activation_histogram_figure(hist, title=f"Activations (fires on {rate:.2%} of tokens)"),
                        key="feat_hist_chart")  # fmt: skip
    if effects is not None:
        st.plotly_chart(plots.logit_effects_figure(effects, title="Logit effects: characters promoted and suppressed"),
                        key="feat_effects_chart")  # fmt: skip
    st.plotly_chart(plots.prompt_activation_bar(active[active.feature == feature], tokens, feature, pos),
                    key="feat_prompt_chart")  # fmt: skip

st.subheader("Steer the feature")
peak = float(card[0].activation.max()) if card is not None and len(card[0]) else 1.0
s1, s2, s3 = st.columns([3, 1, 1])
value = s1.slider("Add this much of the feature's direction at every position", -3 * round(peak, 1) - 1.0,
                  3 * round(peak, 1) + 1.0, 0.0, 0.5, key="feat_steer")  # fmt: skip
n_new = s2.number_input("New characters", 1, 64, 24, key="feat_new")
seed = s3.number_input("Seed", 0, 2**31 - 1, 0, key="feat_seed")
plain, steered = features.steered_text(sel.ref, sel.prompt, sae_name, feature, value, int(n_new), int(seed))
t1, t2 = st.columns(2)
t1.markdown("**Plain** (temperature 0.8)")
t1.code(sel.prompt + plain, language=None, wrap_lines=True)
t2.markdown(f"**Steered** by {value:+.1f}, the same seed")
t2.code(sel.prompt + steered, language=None, wrap_lines=True)
effect = features.intervention(sel.ref, sel.token_ids, sae_name, feature, "steer", value)
steer_chart = plots.distributions_compare(
    effect, title=f"Next token after the prompt, steered by {value:+.1f}", top_n=12, token="target_str",
    after="prob_intervened", after_name="with the edit", colour="#e6550d", height=380,
)  # fmt: skip
st.plotly_chart(steer_chart, key="feat_steer_chart")
