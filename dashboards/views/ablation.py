"""Page "Ablation & patching": knock components out, sweep every head, patch a clean run into a corrupted one."""

import streamlit as st

from dashboards import analyses, plots, state

sel = state.require_tokens("Ablation & patching")
model, cfg = sel.model, sel.model.cfg
tokens = analyses.symbols(model, sel.token_ids)
METHODS = {
    "zero": "zero: set the activation to 0",
    "mean": "mean: replace it by its mean over 64 windows of the built-in corpus",
    "resample": "resample: take it from one of those windows",
}

st.subheader("Ablate components")
c1, c2, c3 = st.columns([2, 1, 2])
heads = c1.multiselect(
    "Heads", [(layer, head) for layer in range(cfg.n_layers) for head in range(cfg.n_heads)],
    format_func=lambda lh: f"L{lh[0]}H{lh[1]}", key="abl_heads",
)  # fmt: skip
mlps = c2.multiselect("MLP layers", [] if cfg.attn_only else list(range(cfg.n_layers)), key="abl_mlps")
neurons = c3.text_input("Neurons as LAYER.NEURON, comma-separated", "", placeholder="0.12, 1.200", key="abl_neurons")
m1, m2 = st.columns(2)
method = m1.selectbox("Method", list(METHODS), format_func=METHODS.__getitem__, key="abl_method")
pos = state.pick_position(m2, "Show the prediction after", tokens, key="abl_pos")
effect = state.attempt(
    "Ablation", analyses.ablation_effect, model, sel.model_id, sel.token_ids, tuple(heads), tuple(mlps),
    neurons.strip(), method, pos,
)  # fmt: skip
if effect is not None:
    dist, loss_clean, loss_ablated, done = effect
    st.markdown("\n".join(f"- {line}" for line in done) or "Nothing ablated yet: pick heads, MLPs or neurons.")
    if loss_clean is not None:
        l1, l2 = st.columns(2)
        l1.metric("Loss, clean (nats/char)", f"{loss_clean:.3f}")
        change = f"{loss_ablated - loss_clean:+.3f}" if done else None
        l2.metric("Loss, ablated", f"{loss_ablated:.3f}", delta=change, delta_color="inverse")
    st.plotly_chart(plots.distributions_compare(dist, title=f"Next token after position {pos}"), key="abl_dist_chart")

st.subheader("Head sweep")
st.markdown(f"Every head ablated on its own ({method}), batched: the change in loss on this prompt.")
swept = state.attempt("Head sweep", analyses.sweep, model, sel.model_id, sel.token_ids, method)
if swept is not None:
    st.plotly_chart(plots.head_heatmap(swept, "delta", title="Loss change when the head is ablated"), key="sweep_chart")

st.subheader("Activation patching")
st.markdown(
    "Run the **corrupted** prompt, but put back one activation from the **clean** one (the sidebar prompt). "
    "1 means that patch alone restores the clean behaviour, 0 means it changes nothing."
)
p1, p2 = st.columns([2, 1])
typed = p1.text_input(
    "Corrupted prompt, as long as the clean one (empty: the clean prompt with its longest word's first letter changed)",
    "", key="patch_corrupted",
)  # fmt: skip
corrupted = typed or state.default_corruption(sel.prompt)
grid = p2.selectbox("Patch", ["resid_pre", "attn_out", "mlp_out", "heads", "heads_by_pos"], key="patch_grid")
corrupted_ids = state.attempt("Corrupted prompt", state.check_prompt, model, corrupted)
if corrupted_ids is not None:
    st.caption(f"Clean: `{sel.prompt}` · corrupted: `{corrupted}`".replace("\n", "⏎"))
    result = state.attempt(
        "Activation patching", analyses.patching, model, sel.model_id, sel.token_ids, corrupted_ids, grid
    )
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
