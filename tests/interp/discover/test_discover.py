"""Circuit discovery, checked against independent references: the edge graph, exact edge patching against one
hooked forward per edge, the masked forward against a plain loop, EAP against autograd, path patching against
activation patching, ACDC against its one-edge-at-a-time greedy loop, and the Circuit value."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CONFIG_VARIANTS, make_model

from interp import LogitDiff, Loss, LossAt
from interp.discover import acdc as acdc_module
from interp.discover.acdc import acdc
from interp.discover.attribution import edge_attribution_patching
from interp.discover.circuit import Circuit, circuit_from_edges, edges_above
from interp.discover.graph import circuit_graph, edge_graph
from interp.discover.masked import _masked_final, _masked_metrics
from interp.discover.patching import edge_patching
from interp.discover.paths import path_patching
from interp.discover.recording import _check_pair, _record
from interp.discover.reference import edge_patching_reference
from interp.intervene.engine import score_final
from model import ModelConfig

VARIANTS = {k: v for k, v in CONFIG_VARIANTS.items() if v.get("norm") != "post"}
METRICS = {"loss": Loss(), "logit diff": LogitDiff(answer=5, wrong=7, pos=-2)}


def _pair(seed: int = 0, shape=(3, 10)):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, 64, shape, generator=gen), torch.randint(3, 64, shape, generator=gen)


def _recording(model, metric, seed=0):
    clean, corrupted = _pair(seed)
    model, graph, clean, corrupted, metric = _check_pair(model, clean, corrupted, metric)
    return graph, _record(model, graph, clean, corrupted, metric), metric


def test_graph_names_counts_and_reads():
    """The issue's names; each input reads exactly the nodes computed before it; a GPT-2-sized graph has ~32k edges."""
    graph = edge_graph(ModelConfig())
    assert graph.upstream[:3] == ("embed", "pos_embed", "L0H0") and "L1.mlp" in graph.upstream
    assert graph.downstream[:4] == ("L0H0.q", "L0H0.k", "L0H0.v", "L0H1.q") and graph.downstream[-1] == "logits"
    reads = {d: [u for u, dd in graph.edges if dd == d] for d in graph.downstream}
    assert reads["L0H2.k"] == ["embed", "pos_embed"]
    assert reads["L0.mlp"] == ["embed", "pos_embed", "L0H0", "L0H1", "L0H2", "L0H3"]
    assert reads["L1H0.v"] == ["embed", "pos_embed", "L0H0", "L0H1", "L0H2", "L0H3", "L0.mlp"]
    assert reads["logits"] == list(graph.upstream)
    assert (len(graph.upstream), len(graph.downstream), graph.n_edges) == (12, 27, 137)
    rotary = edge_graph(ModelConfig(positional="rotary", attn_only=True))
    assert "pos_embed" not in rotary.upstream and not any("mlp" in d for d in rotary.downstream)
    gpt2 = edge_graph(ModelConfig(d_model=768, n_heads=12, n_layers=12, d_ff=3072, d_vocab=50257, n_ctx=128))
    print(f"GPT-2-small-sized graph: {len(gpt2.upstream)} nodes, {len(gpt2.downstream)} inputs, {gpt2.n_edges} edges")
    assert gpt2.n_edges == 32_936
    frame = circuit_graph(make_model())
    assert list(frame.columns) == ["upstream", "downstream"] and len(frame) == 137


def test_post_norm_is_refused():
    with pytest.raises(ValueError, match="norm='post' re-normalises"):
        circuit_graph(make_model(norm="post"))


@pytest.mark.parametrize("metric", list(METRICS))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_edge_patching_equals_one_hooked_forward_per_edge(variant, metric):
    """The batched exact edge patching agrees with the one-edge-at-a-time hooked reference to 1e-5, every edge."""
    model, (clean, corrupted) = make_model(**VARIANTS[variant]), _pair()
    fast = edge_patching(model, clean, corrupted, METRICS[metric], progress=False, chunk_size=7)
    slow = edge_patching_reference(model, clean, corrupted, METRICS[metric], progress=False)
    assert (fast[["upstream", "downstream"]].values == slow[["upstream", "downstream"]].values).all()
    gap = float((fast.metric_patched - slow.metric_patched).abs().max())
    print(f"{variant}, {metric}: {len(fast)} edges, max |batched - reference| = {gap:.2e}, "
          f"largest effect {fast.abs_score.max():.3f}")  # fmt: skip
    assert gap < 1e-5 and fast.abs_score.max() > 1e-3


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_masked_forward_agrees_with_edge_patching_and_both_runs(variant):
    """One mask per edge (that edge corrupted) gives edge patching; all ones the clean run; all zeros the corrupted."""
    model = make_model(**VARIANTS[variant])
    graph, recording, metric = _recording(model, Loss())
    masks = torch.ones(graph.n_edges + 2, graph.n_edges)
    masks[torch.arange(graph.n_edges), torch.arange(graph.n_edges)] = 0.0
    masks[-1] = 0.0
    values = _masked_metrics(model, recording, masks, metric).double().numpy()
    exact = edge_patching(model, recording.tokens, _pair()[1], metric, progress=False).metric_patched.to_numpy()
    assert np.abs(values[:-2] - exact).max() < 1e-5
    assert abs(values[-2] - recording.metric_clean) < 1e-5 and abs(values[-1] - recording.metric_corrupted) < 1e-5


def _naive_masked(model, recording, mask: torch.Tensor) -> float:
    """The masked forward written as plain loops over inputs and nodes (no batching), for one mask."""
    graph, cfg = recording.graph, model.cfg
    acts = list(recording.clean_writes[: graph.n_first])
    corr = recording.corr_writes

    def read(d: int, base: torch.Tensor) -> torch.Tensor:
        total = base.clone()
        for u in range(graph.n_reads[d]):
            total = total + mask[graph.offsets[d] + u] * (acts[u] - corr[u])
        return total

    def norm(ln, x):
        return x if ln is None else F.layer_norm(x, ln.w.shape, ln.w, ln.b, ln.eps)

    d = 0
    for layer, block in enumerate(model.blocks):
        attn, pre = block.attn, recording.corr[f"blocks.{layer}.hook_resid_pre"]
        for h in range(cfg.n_heads):
            qkv = []
            for s, (w, b) in enumerate(((attn.W_Q, attn.b_Q), (attn.W_K, attn.b_K), (attn.W_V, attn.b_V))):
                x = norm(block.ln1, read(d + 3 * h + s, pre)) @ w[h]
                qkv.append(x if b is None else x + b[h])
            q, k, v = qkv
            if cfg.positional == "rotary":
                q, k = (attn.rotate(t[:, :, None])[:, :, 0] for t in (q, k))
            n = q.shape[1]
            scores = q @ k.transpose(-1, -2) / math.sqrt(cfg.d_head)
            scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
            acts.append((scores.softmax(-1) @ v) @ attn.W_O[h])
        d += 3 * cfg.n_heads
        if block.mlp is not None:
            x = norm(block.ln2, read(d, recording.corr[f"blocks.{layer}.hook_resid_mid"]))
            acts.append(block.mlp(x))
            d += 1
    final = read(d, recording.corr[recording.final_name])
    logits = model.unembed(final if model.ln_final is None else model.ln_final(final))
    return float(Loss()(logits, recording.tokens))


@pytest.mark.parametrize("variant", ["locked", "rotary-no-bias", "no-norm-attn-only-untied"])
def test_masked_forward_with_many_edges_corrupted_equals_a_plain_loop(variant):
    """Random masks with half the edges corrupted: the batched masked forward equals the loop written out by hand."""
    model = make_model(**VARIANTS[variant])
    graph, recording, metric = _recording(model, Loss())
    masks = (torch.rand(4, graph.n_edges, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    with torch.no_grad():
        batched = _masked_metrics(model, recording, masks, metric).tolist()
        naive = [_naive_masked(model, recording, m) for m in masks]
    print(variant, "masked:", np.round(batched, 5), "loop:", np.round(naive, 5))
    assert np.allclose(batched, naive, atol=1e-5)
    assert np.ptp(batched) > 1e-3  # the masks do different things


@pytest.mark.parametrize("metric", list(METRICS))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_eap_is_the_derivative_of_the_masked_forward(variant, metric):
    """EAP's score of an edge is d metric / d (1 - mask of that edge) at the clean run: autograd through the masked
    forward, a different implementation, agrees to 1e-6 relative to the largest score."""
    model = make_model(**VARIANTS[variant])
    graph, recording, m = _recording(model, METRICS[metric])
    eap = edge_attribution_patching(model, recording.tokens, _pair()[1], m)
    masks = torch.ones(1, graph.n_edges, requires_grad=True)
    value = score_final(model, _masked_final(model, recording, masks), m, recording.tokens)
    (grad,) = torch.autograd.grad(value.sum(), masks)
    gap = float(np.abs(eap.score.to_numpy() + grad[0].double().numpy()).max())
    assert gap <= 1e-5 * max(1.0, eap.abs_score.max()), gap


def test_eap_ig_with_one_step_is_eap_and_both_are_exact_where_the_metric_is_linear():
    """Without LayerNorm, a logit difference is linear in the logits' input: EAP, EAP-IG and exact patching agree
    on every edge into the logits; one IG step is EAP on every edge."""
    model, (clean, corrupted) = make_model(**VARIANTS["no-norm-attn-only-untied"]), _pair()
    metric = METRICS["logit diff"]
    eap = edge_attribution_patching(model, clean, corrupted, metric)
    one = edge_attribution_patching(model, clean, corrupted, metric, method="eap-ig", steps=1)
    ig = edge_attribution_patching(model, clean, corrupted, metric, method="eap-ig", steps=7)
    exact = edge_patching(model, clean, corrupted, metric, progress=False)
    assert np.allclose(one.score, eap.score, atol=1e-6)
    into_logits = exact.downstream == "logits"
    for frame in (eap, ig):
        assert np.allclose(frame.score[into_logits], exact.score[into_logits], atol=1e-5)


def test_path_patching_of_one_receiver_is_edge_patching():
    model, (clean, corrupted) = make_model(), _pair()
    frame = path_patching(model, clean, corrupted, ["embed", "L0H1", "L0.mlp"], "L1H2.k", Loss())
    exact = edge_patching(model, clean, corrupted, Loss(), edges=[(s, "L1H2.k") for s in frame.upstream])
    assert np.allclose(frame.metric_patched, exact.metric_patched, atol=1e-5)


@pytest.mark.parametrize("variant", ["locked", "untied-gelu-new-3-layers"])
def test_path_patching_into_every_reader_is_activation_patching_of_the_head(variant):
    """A head's paths into all the inputs that read it, patched together, equal replacing its z by the corrupted z
    in the model's own forward (hooks); paths into a subset do less."""
    model, (clean, corrupted) = make_model(**VARIANTS[variant]), _pair()
    graph = edge_graph(model)
    readers = [d for u, d in graph.edges if u == "L0H2"]
    everything = path_patching(model, clean, corrupted, "L0H2", readers, Loss()).metric_patched[0]
    _, cache = model.run_with_cache(corrupted, names_filter="blocks.0.attn.hook_z")

    def swap(z, hook):
        z = z.clone()
        z[:, :, 2] = cache["blocks.0.attn.hook_z"][:, :, 2]
        return z

    with torch.no_grad():
        hooked = float(Loss()(model.run_with_hooks(clean, fwd_hooks=[("blocks.0.attn.hook_z", swap)]), clean))
    print(f"{variant}: path patching into all {len(readers)} readers {everything:.6f}, hooked z patch {hooked:.6f}")
    assert abs(everything - hooked) < 1e-5


def _greedy_acdc(model, recording, metric, threshold: float) -> set[tuple[str, str]]:
    """ACDC written the slow way: one masked forward per candidate edge."""
    graph = recording.graph
    mask = torch.ones(graph.n_edges)
    current = recording.metric_clean
    for d in reversed(range(len(graph.downstream))):
        owner = graph.owner[d]
        edges = [graph.offsets[d] + u for u in reversed(range(graph.n_reads[d]))]
        if owner is not None and not any(mask[e] for e in range(graph.n_edges) if graph.edge_up[e] == owner):
            mask[edges] = 0.0
            continue
        for e in edges:
            trial = mask.clone()
            trial[e] = 0.0
            value = float(_masked_metrics(model, recording, trial[None], metric)[0])
            if abs(value - current) <= threshold:
                mask, current = trial, value
    kept = [graph.edges[e] for e in range(graph.n_edges) if mask[e]]
    return set(Circuit(tuple(kept)).pruned().edges)


@pytest.mark.parametrize("threshold", [0.003, 0.01])
def test_acdc_in_batches_decides_like_the_one_edge_at_a_time_loop(threshold, monkeypatch):
    """Speculative batches reproduce greedy ACDC exactly, with far fewer passes than edges tried."""
    model = make_model()
    graph, recording, metric = _recording(model, Loss())
    calls = []
    original = acdc_module._masked_metrics
    monkeypatch.setattr(
        acdc_module, "_masked_metrics", lambda *a, **k: calls.append(a[2].shape[0]) or original(*a, **k)
    )
    circuit = acdc(model, recording.tokens, _pair()[1], metric, threshold=threshold, progress=False)
    expected = _greedy_acdc(model, recording, metric, threshold)
    print(f"threshold {threshold}: {circuit.size} edges kept; {len(calls)} batched passes of {sum(calls)} variants "
          f"for {graph.n_edges} edges")  # fmt: skip
    assert set(circuit.edges) == expected and 0 < circuit.size < graph.n_edges
    assert len(calls) < graph.n_edges / 2


def test_acdc_shows_a_progress_bar(capsys):
    model, (clean, corrupted) = make_model(), _pair()
    acdc(model, clean, corrupted, Loss(), threshold=0.01, progress=True)
    assert "ACDC" in capsys.readouterr().err


def test_circuit_faithfulness_ends_and_pruning():
    """The whole graph is 1, nothing is 0, and pruning dangling edges never changes faithfulness."""
    model, (clean, corrupted) = make_model(), _pair()
    graph = edge_graph(model)
    assert abs(Circuit(circuit_graph(model)).faithfulness(model, clean, corrupted, Loss()) - 1) < 1e-5
    assert abs(Circuit(()).faithfulness(model, clean, corrupted, Loss())) < 1e-5
    gen = torch.Generator().manual_seed(3)
    for _ in range(4):
        chosen = [graph.edges[i] for i in torch.randperm(graph.n_edges, generator=gen)[:40].tolist()]
        circuit = Circuit(tuple(chosen))
        pruned = circuit.pruned()
        full, small = (c.faithfulness(model, clean, corrupted, Loss()) for c in (circuit, pruned))
        assert pruned.size <= circuit.size and abs(full - small) < 1e-5, (full, small)


def test_circuit_prints_exports_and_draws(tmp_path):
    circuit = circuit_from_edges(["embed->L0H0.v", "L0H0->L1H0.k", "L1H0->logits"])
    text = str(circuit)
    print(text)
    assert "the key of head L1H0 reads head L0H0" in text and text.startswith("Circuit of 3 edges between 4 nodes")
    scored = Circuit(circuit.edges, scores=(0.5, -2.0, 3.0))
    back = Circuit.from_csv(scored.to_csv(tmp_path / "edges.csv"))
    assert back == scored
    svg = scored.to_svg(tmp_path / "circuit.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<line") == 3 and "L1H0" in svg
    assert '"L0H0" -> "L1H0" [label="k -2"];' in scored.to_dot()
    frame = scored.to_frame()
    assert list(frame.columns) == ["upstream", "downstream", "score", "abs_score"] and frame.abs_score.max() == 3.0


def test_from_scores_thresholds_and_prunes():
    model, (clean, corrupted) = make_model(), _pair()
    exact = edge_patching(model, clean, corrupted, LossAt(range(5, 10)), progress=False)
    top = Circuit.from_scores(exact, top=10)
    kept = Circuit.from_scores(exact, threshold=float(exact.abs_score.quantile(0.9)))
    assert top.size <= 10 and kept.size <= len(exact) // 10 + 1
    assert set(top.edges) <= set(zip(exact.upstream, exact.downstream, strict=True))


def test_edges_above_keep_a_share_of_the_largest_score():
    """edges_above(share): every edge at 0, the strongest at 1, exactly those with |score| >= share * the largest."""
    model = make_model()
    frame = edge_patching(model, *_pair(), "loss", progress=False)
    assert edges_above(frame, 0.0).equals(frame) and len(edges_above(frame, 1.0)) == 1
    kept = edges_above(frame, 0.3)
    assert set(kept.index) == set(frame.index[frame.abs_score >= 0.3 * frame.abs_score.max()])
    assert edges_above(frame.assign(abs_score=0.0), 0.1).empty, "no edge matters when every score is 0"


@pytest.mark.parametrize("variant", ["locked", "no-norm-attn-only-untied"])
def test_eap_ig_steps_add_up(variant):
    """EAP-IG's head scores over several interpolation steps are the sum of the one-step scores of each step (the
    multi-step branch against the one-step branch, which the autograd test above checks)."""
    from interp.discover.attribution import _head_scores

    model = make_model(**VARIANTS[variant])
    gen = torch.Generator().manual_seed(4)
    batch, n_pos, cfg = 3, 5, model.cfg
    pre = torch.randn(2 * batch, n_pos, cfg.d_model, generator=gen)
    grads = [torch.randn(2 * batch, n_pos, cfg.n_heads, cfg.d_head, generator=gen) for _ in range(3)]
    delta = torch.randn(4, batch, n_pos, cfg.d_model, generator=gen)
    block = model.blocks[0]
    together = _head_scores(block, pre, grads, delta, 2)
    apart = sum(_head_scores(block, pre[s], [g[s] for g in grads], delta, 1) for s in (slice(0, 3), slice(3, 6)))
    assert torch.allclose(together, apart, atol=1e-4), (together - apart).abs().max()


def test_graph_figure_is_valid_plotly_and_draws_each_edge_once():
    """dashboards.plots.edge_graph_figure: valid plotly; one hover point per edge; missed known edges dashed."""
    from conftest import validated

    from dashboards.plots import edge_graph_figure

    model, (clean, corrupted) = make_model(), _pair()
    exact = edge_patching(model, clean, corrupted, Loss(), progress=False)
    shown = exact.nlargest(12, "abs_score")
    known = [("embed", "L0H0.v"), ("L0H0", "L1H0.k")]
    fig = validated(edge_graph_figure(shown, n_heads=4, n_layers=2, known=known, title="top 12"))
    names = [trace.name for trace in fig.data]
    hover = next(t for t in fig.data if t.name == "edges")
    assert len(hover.x) == 12 and "nodes" in names
    missed = [e for e in known if e not in set(zip(shown.upstream, shown.downstream, strict=True))]
    assert ("known, not shown" in names) == bool(missed)
    validated(edge_graph_figure(circuit_graph(model)))  # no scores: every edge drawn grey
