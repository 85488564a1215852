"""Page "Ablation & patching": knock components out, sweep every head, patch a clean run into a corrupted one."""

import streamlit as st

from dashboards import analyses, plots, state

sel = state.require_tokens("Ablation & patching")
cfg = sel.model.cfg
tokens = analyses.symbols(sel.ref, sel.token_ids)
METHODS = {
    "zero": "zero: set the activation to 0",
    "mean": "mean: replace it by its mean over 64 windows of the built-in corpus",
    "resample": "resample: take it from one of those windows",
}

st.subheader("Ablate components")
c1, c2, c3 = st.columns([2, 1, 2])
heads = c1.multiselect("Heads", analyses.ablation.head_labels(sel.ref), key="abl_heads")
mlps = c2.multiselect("MLP layers", [] if cfg.attn_only else list(range(cfg.n_layers)), key="abl_mlps")
neurons = c3.text_input("Neurons, comma-separated", "", placeholder="L0N12, L1N200", key="abl_neurons")
m1, m2 = st.columns(2)
method = m1.selectbox("Method", list(METHODS), format_func=METHODS.__getitem__, key="abl_method")
pos = state.pick_position(m2, "Show the prediction after", tokens, key="abl_pos")
effect = state.attempt(
    "Ablation", analyses.ablation.ablation_effect, sel.ref, sel.token_ids, tuple(heads), tuple(mlps), neurons.strip(),
    method, pos,
)  # fmt: skip
if effect is not None:
    dist, loss_clean, loss_ablated = effect.frame, effect.loss_clean, effect.loss_ablated
    done = [str(spec) for spec in effect.ablations]
    st.markdown("\n".join(f"- {line}" for line in done) or "Nothing ablated yet: pick heads, MLPs or neurons.")
    if loss_clean is not None:
        l1, l2 = st.columns(2)
        l1.metric("Loss, clean (nats/char)", f"{loss_clean:.3f}")
        change = f"{loss_ablated - loss_clean:+.3f}" if done else None
        l2.metric("Loss, ablated", f"{loss_ablated:.3f}", delta=change, delta_color="inverse")
    st.plotly_chart(plots.distributions_compare(dist, title=f"Next token after position {pos}"), key="abl_dist_chart")

st.subheader("Head sweep")
st.markdown(f"Every head ablated on its own ({method}), batched: the change in loss on this prompt.")
swept = state.attempt("Head sweep", analyses.ablation.sweep, sel.ref, sel.token_ids, method)
if swept is not None:
    st.plotly_chart(plots.head_heatmap(swept, "delta", title="Loss change when the head is ablated"), key="sweep_chart")

st.subheader("Activation patching")
st.markdown(
    "Run the **corrupted** prompt, but put back one activation from the **clean** one (the sidebar prompt). "
    "1 means that patch alone restores the clean behaviour, 0 means it changes nothing."
)
p1, p2 = st.columns([2, 1])
grid = p2.selectbox("Patch", ["resid_pre", "attn_out", "mlp_out", "heads", "heads_by_pos"], key="patch_grid")
corrupted_ids = state.corrupted_prompt(p1, key="patch_corrupted")
if corrupted_ids is not None:
    result = state.attempt("Activation patching", analyses.ablation.patching, sel.ref, sel.token_ids, corrupted_ids,
                           grid)  # fmt: skip
    if result is not None:
        patched, metric = result
        st.caption(f"Metric: {metric}.")
        title = f"Patching {grid}: normalised metric (1 = clean restored)"
        chart = (
            plots.head_heatmap(patched, "normalized", title=title)
            if grid == "heads"
            else plots.position_heatmap(patched, "normalized", tokens, title=title, selected=pos)
        )
        st.plotly_chart(chart, key="patch_chart")
