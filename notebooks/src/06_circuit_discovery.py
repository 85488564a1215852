# Source of notebooks/06_circuit_discovery.ipynb (cells separated by "# %%"); rebuild with `python notebooks/build.py`.

# %% [markdown]
# # 06 · Circuit discovery on `induction-2l`, scored against the known circuit
#
# Notebook 02 *explained* the induction circuit of `induction-2l`: we suspected a previous-token head and an
# induction head, and checked. Here nothing is suspected. Each method of `interp.discover` looks at the whole
# computational graph and says which **edges** matter, and we score what it finds against the circuit we
# know is there:
#
# - **exact edge patching**: corrupt one edge at a time (batched), the ground truth;
# - **EAP**: one gradient estimates every edge at once (Syed et al. 2023);
# - **EAP-IG**: the gradient averaged along a path from the corrupted to the clean embeddings (Hanna et al. 2024);
# - **ACDC**: greedy pruning from the logits backwards (Conmy et al. 2023);
# - **path patching**: one sender's direct paths into chosen receivers (Wang et al. 2022).

# %%
import pandas as pd
import plotly.io as pio

from dashboards.plots import edge_graph_figure
from interp import Circuit, acdc, circuit_graph, edge_attribution_patching, edge_auc, edge_patching
from interp import known_circuit, path_patching, score_correlation

pio.renderers.default = "plotly_mimetype"

# %% [markdown]
# ## The graph
#
# Nodes write to the residual stream (`embed`, `pos_embed`, each head `L{l}H{h}`, each MLP); inputs read it
# (each head's `q`, `k`, `v`, each MLP, the `logits`). An edge is one node's write as one later input reads
# it. `induction-2l` has one head per layer and no MLPs, so its graph is small: 19 edges.

# %%
task = known_circuit("induction-2l", batch=32)
model, clean, corrupted, metric = task.model, task.clean, task.corrupted, task.metric
graph = circuit_graph(model)
print(len(graph), "edges;", metric)
graph.groupby("downstream", sort=False).upstream.apply(list)

# %% [markdown]
# The task: `clean` is `BOS + r + r` (32 random segments `r` of 15 tokens), `corrupted` is `BOS + s + s` with
# other segments; the metric is the loss on the second copy, read against the clean tokens. The known circuit
# (notebook 02, and the model's recipe): the previous-token head copies each token forward (`embed -> L0H0.v`),
# the induction head's key reads that (`L0H0 -> L1H0.k`, K-composition), its query and value read the current
# and the attended token (`embed -> L1H0.q`, `embed -> L1H0.v`), and it writes the prediction
# (`L1H0 -> logits`). The positional edges of the previous-token head carry the same value on every prompt, so
# no token corruption can see them.

# %%
print(task.circuit)

# %% [markdown]
# ## Edge scores: exact patching, EAP, EAP-IG
#
# A score is the change of the metric when that edge alone carries its corrupted value: exact for edge
# patching, a first-order estimate for EAP and EAP-IG.

# %%
scores = {
    "exact": edge_patching(model, clean, corrupted, metric, progress=False),
    "EAP": edge_attribution_patching(model, clean, corrupted, metric, method="eap"),
    "EAP-IG": edge_attribution_patching(model, clean, corrupted, metric, method="eap-ig", steps=5),
}
table = scores["exact"][["upstream", "downstream", "score"]].rename(columns={"score": "exact"})
for name in ("EAP", "EAP-IG"):
    table[name] = scores[name].score.to_numpy()
table["known"] = [edge in task.circuit for edge in zip(table.upstream, table.downstream)]
table.sort_values("exact", key=abs, ascending=False).round(3)

# %%
edge_graph_figure(scores["exact"], n_heads=1, n_layers=2, known=task.circuit.edges, title="Exact edge patching").show()

# %% [markdown]
# ## How well each method ranks the known edges
#
# The ROC AUC asks how often a known edge scores higher (in `|score|`) than another edge: 1 is a perfect ranking.
# The correlation says how close the estimates are to the exact effects.

# %%
pd.DataFrame(
    {
        name: {
            "AUC against the known circuit": edge_auc(frame, task.circuit),
            "Pearson with exact": score_correlation(frame, scores["exact"]),
        }
        for name, frame in scores.items()
    }
).round(3)

# %% [markdown]
# All three rank the known edges first. But look at EAP's magnitudes in the table above: about a seventh of the
# exact effects. Both heads of `induction-2l` attend sharply and the model is confident on the second copy, and a
# saturated softmax has little gradient at the clean pass. EAP-IG, which averages gradients along the way from the
# corrupted to the clean embeddings, gets the size of the largest effect (`L1H0 -> logits`) nearly right but not
# the others, so its correlation with the exact scores is lower than EAP's here.

# %% [markdown]
# ## Circuits: ACDC and thresholded scores
#
# ACDC prunes edges from the logits backwards, removing an edge when the metric moves by less than the threshold
# (here 2% of the gap between the clean and the corrupted metric). A score frame becomes a circuit by keeping the
# edges above the same threshold. **Faithfulness** runs the circuit alone, every other edge corrupted: 1 means it
# keeps all of the clean behaviour.

# %%
gap = abs(scores["exact"].metric_clean[0] - scores["exact"].metric_corrupted[0])
threshold = 0.02 * gap
circuits = {"ACDC": acdc(model, clean, corrupted, metric, threshold, progress=False)}
circuits.update({f"thresholded {name}": Circuit.from_scores(frame, threshold=threshold) for name, frame in scores.items()})
pd.DataFrame(
    {
        name: {
            "edges": circuit.size,
            "known edges found": len(set(circuit.edges) & set(task.circuit.edges)),
            "extra edges": len(set(circuit.edges) - set(task.circuit.edges)),
            "faithfulness": round(circuit.faithfulness(model, clean, corrupted, metric), 3),
        }
        for name, circuit in circuits.items()
    }
)

# %%
print(circuits["ACDC"])
edge_graph_figure(circuits["ACDC"].to_frame(), n_heads=1, n_layers=2, title="The circuit ACDC keeps").show()

# %% [markdown]
# ## Path patching
#
# How much of the previous-token head's effect goes through each of the induction head's inputs? Patch its
# direct path into each one, every other reader of L0H0 seeing its clean value.

# %%
pd.concat(
    [path_patching(model, clean, corrupted, "L0H0", receiver, metric) for receiver in ("L1H0.q", "L1H0.k", "L1H0.v")]
)[["upstream", "downstream", "score", "normalized"]].round(3)

# %% [markdown]
# Only the key path matters: K-composition, as notebook 02 found from the weights.
#
# ## Where EAP fails: a planted, saturated induction circuit
#
# `planted-induction` is the same circuit with weights set by hand (`interp.discover.planted`), its attention
# scores 24 apart and its predictions near certain, plus a distractor head in each layer that provably cannot
# reach the logits. Its gradient at the clean pass all but vanishes: EAP scores the K-composition edge about 40
# times too small and with the wrong sign, and its thresholded circuit misses three of the five known edges.

# %%
planted = known_circuit("planted-induction", batch=32)
args = (planted.model, planted.clean, planted.corrupted, planted.metric)
frames = {
    "exact": edge_patching(*args, progress=False),
    "EAP": edge_attribution_patching(*args),
    "EAP-IG": edge_attribution_patching(*args, method="eap-ig"),
}
cut = 0.02 * abs(frames["exact"].metric_clean[0] - frames["exact"].metric_corrupted[0])
pd.DataFrame(
    {
        name: {
            "AUC against the known circuit": edge_auc(frame, planted.circuit),
            "score of L0H0 -> L1H0.k": frame.set_index(["upstream", "downstream"]).score[("L0H0", "L1H0.k")],
            "thresholded circuit: edges": Circuit.from_scores(frame, threshold=cut).size,
            "known edges in it": len(set(Circuit.from_scores(frame, threshold=cut).edges) & set(planted.circuit.edges)),
            "its faithfulness": Circuit.from_scores(frame, threshold=cut).faithfulness(*args),
        }
        for name, frame in frames.items()
    }
).round(4)

# %% [markdown]
# EAP's AUC is still 1 (every edge outside the mechanism scores exactly 0, so even a tiny score ranks first) and
# its two-edge circuit is faithful: corrupting the induction head's query *and* key together moves its attention
# to the same positions (in `BOS + s + s` the token after the earlier copy is 14 back, as in `BOS + r + r`), so
# with its value clean it still predicts the clean tokens. Faithfulness alone would not reveal the missed edges;
# the known circuit does. EAP-IG is not right about the K edge either (its sign is wrong too), but it is large
# enough to pass the threshold, and its circuit holds all five known edges.
