"""Bad input to circuit discovery (interp/discover): the graph, edge patching, EAP, ACDC, path patching, circuits,
scoring, pictures and the known-circuit models.

Part of the bad-input matrix (tests/interp/test_bad_input_interp.py walks interp/ and counts these rows too); see
tests/bad_input_matrix.py for what every row checks.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from bad_input_matrix import Case, assert_clean_failure, build_env, params

from interp.discover import (
    acdc,
    attribution,
    circuit,
    graph,
    layout,
    patching,
    paths,
    picture,
    planted,
    reference,
    scoring,
    tasks,
    trained,
)
from model import ModelConfig

EDGES = pd.DataFrame({"upstream": ["embed", "L0H0"], "downstream": ["L0H0.v", "logits"], "score": [1.0, -2.0]})


def _in_inference_mode(fn):
    with torch.inference_mode():
        return fn()


def _graph_cases() -> list[Case]:
    G, L = "interp.discover.graph.", "interp.discover.layout."
    return [
        Case(G + "edge_graph", "post-norm model", lambda e: graph.edge_graph(e.post), ValueError,
             "norm='post' re-normalises it after every block"),
        Case(G + "edge_graph", "model is a str", lambda e: graph.edge_graph("gpt2"), TypeError,
             "model must be a MiniGPT"),
        Case(G + "circuit_graph", "post-norm model", lambda e: graph.circuit_graph(e.post), ValueError,
             "use a pre-norm or LayerNorm-free model"),
        Case(G + "EdgeGraph", "not a config", lambda e: graph.EdgeGraph(3), TypeError,
             "EdgeGraph needs a ModelConfig, got int"),
        Case(G + "EdgeGraph.indices", "edge backwards", lambda e: graph.edge_graph(e.model).indices(
            [("L1H0", "L0H0.q")]), KeyError, "edges: L1H0->L0H0.q is not an edge of this model's graph"),
        Case(G + "EdgeGraph.indices", "a bare string", lambda e: graph.edge_graph(e.model).indices("embed->logits"),
             TypeError, "must be None, a frame, a Circuit or a list of (upstream, downstream) pairs, got str"),
        Case(G + "EdgeGraph.indices", "an edge twice", lambda e: graph.edge_graph(e.model).indices(
            ["embed->logits", ("embed", "logits")]), ValueError, "lists an edge twice"),
        Case(G + "EdgeGraph.indices", "frame without columns", lambda e: graph.edge_graph(e.model).indices(
            pd.DataFrame({"a": [1]})), ValueError, "a frame of edges needs upstream and downstream columns"),
        Case(G + "EdgeGraph.indices", "a triple", lambda e: graph.edge_graph(e.model).indices([("a", "b", "c")]),
             TypeError, "each edge must be an (upstream, downstream) pair of names"),
        Case(L + "graph_name", "not a str", lambda e: layout.graph_name(3), TypeError,
             "a node name must be a str, got int"),
        Case(L + "graph_name", "unknown input", lambda e: layout.graph_name("L0H0.z"), ValueError,
             "'L0H0.z' is not a node or input name"),
        Case(L + "node_of", "unknown name", lambda e: layout.node_of("head0"), ValueError, "is not a node or input"),
        Case(L + "position", "unknown name", lambda e: layout.position("L0.attn"), ValueError, "'L0.attn' is not"),
        Case(L + "read_offset", "None", lambda e: layout.read_offset(None), TypeError, "got NoneType"),
        Case(L + "extent", "unknown name", lambda e: layout.extent(["L1H0", "mlp"]), ValueError, "'mlp' is not"),
    ]  # fmt: skip


def _method_cases() -> list[Case]:
    P, R, A = "interp.discover.patching.", "interp.discover.reference.", "interp.discover.attribution."
    C, PP = "interp.discover.acdc.", "interp.discover.paths."

    def eap(**kw):
        return lambda e: attribution.edge_attribution_patching(e.model, e.tokens, e.other, "loss", **kw)

    def path(senders, receivers, model="model", same=False):
        return lambda e: paths.path_patching(
            getattr(e, model), e.tokens, e.tokens if same else e.other, senders, receivers, "loss"
        )

    return [
        Case(P + "edge_patching", "positions differ", lambda e: patching.edge_patching(
            e.model, e.tokens, e.other[:, :4], "loss"), ValueError,
            "clean tokens (2, 6) and corrupted tokens (2, 4) must have the same shape"),
        Case(P + "edge_patching", "post-norm model", lambda e: patching.edge_patching(e.post, e.tokens, e.other,
             "loss"), ValueError, "norm='post' re-normalises it"),
        Case(P + "edge_patching", "unknown edge", lambda e: patching.edge_patching(e.model, e.tokens, e.other,
             "loss", edges=[("L0H9", "logits")]), KeyError, "L0H9->logits is not an edge"),
        Case(P + "edge_patching", "metric is an int", lambda e: patching.edge_patching(e.model, e.tokens, e.other, 5),
             TypeError, "metric must be a Metric, a name or a callable"),
        Case(P + "edge_patching", "chunk_size 0", lambda e: patching.edge_patching(e.model, e.tokens, e.other,
             "loss", chunk_size=0), ValueError, "chunk_size must be a positive number"),
        Case(P + "edge_patching", "token id 64", lambda e: patching.edge_patching(e.model, e.tokens, e.other + 64,
             "loss"), ValueError, "outside the vocabulary"),
        Case(P + "edge_patching", "NaN weight", lambda e: patching.edge_patching(e.nan_model, e.tokens, e.other,
             "loss"), ValueError, "parameter 'blocks.1.attn.W_Q'"),
        Case(R + "edge_patching_reference", "batch differs", lambda e: reference.edge_patching_reference(
            e.model, e.tokens, e.other[:1], "loss"), ValueError, "must have the same shape"),
        Case(R + "edge_patching_reference", "edges is an int", lambda e: reference.edge_patching_reference(
            e.model, e.tokens, e.other, "loss", edges=3), TypeError, "got int"),
        Case(A + "edge_attribution_patching", "unknown method", eap(method="acdc"), ValueError,
             "method='acdc' is not one of ['eap', 'eap-ig']"),
        Case(A + "edge_attribution_patching", "steps for plain EAP", eap(steps=3), ValueError,
             "steps=3 is for method='eap-ig'"),
        Case(A + "edge_attribution_patching", "steps 0", eap(method="eap-ig", steps=0), ValueError,
             "steps must be >= 1, got 0"),
        Case(A + "edge_attribution_patching", "steps 2.5", eap(method="eap-ig", steps=2.5), TypeError,
             "steps must be an int"),
        Case(A + "edge_attribution_patching", "inference mode", lambda e: _in_inference_mode(lambda: eap()(e)),
             ValueError, "edge attribution patching needs gradients"),
        Case(A + "edge_attribution_patching", "NaN weight", lambda e: attribution.edge_attribution_patching(
            e.nan_model, e.tokens, e.other, "loss"), ValueError, "parameter 'blocks.1.attn.W_Q'"),
        Case(C + "acdc", "negative threshold", lambda e: acdc.acdc(e.model, e.tokens, e.other, "loss", -0.1),
             ValueError, "threshold must be a number >= 0 (in the metric's units), got -0.1"),
        Case(C + "acdc", "threshold as text", lambda e: acdc.acdc(e.model, e.tokens, e.other, "loss", "0.1"),
             ValueError, "threshold must be a number >= 0"),
        Case(C + "acdc", "positions differ", lambda e: acdc.acdc(e.model, e.tokens, e.other[:, :2], "loss", 0.1),
             ValueError, "must have the same shape"),
        Case(PP + "path_patching", "unknown sender", path(["L0H7"], ["logits"]), KeyError,
             "sender 'L0H7' is not a node of this model's graph"),
        Case(PP + "path_patching", "sender after the receivers", path(["L1H0"], ["L0H1.q"]), ValueError,
             "sender L1H0 reaches none of the receivers ['L0H1.q'] directly"),
        Case(PP + "path_patching", "no receivers", path(["L0H0"], []), ValueError, "receivers is empty"),
        Case(PP + "path_patching", "senders is an int", path(3, ["logits"]), TypeError,
             "senders must be a name or a list of names, got 3"),
        Case(PP + "path_patching", "unknown receiver", path(["L0H0"], ["L1H0.x"]), ValueError,
             "'L1H0.x' is not a node or input name"),
        Case(PP + "path_patching", "MLP of an attention-only model", path(["L0H0"], ["L1.mlp"], model="attn_only"),
             KeyError, "receiver 'L1.mlp' is not an input of this model's graph"),
        Case(PP + "path_patching", "a sender twice", path(["L0H0", "L0H0"], ["logits"]), ValueError,
             "senders lists a node twice"),
        Case(PP + "path_patching", "clean = corrupted", path(["L0H0"], ["logits"], same=True), ValueError,
             "so nothing can be normalised"),
    ]  # fmt: skip


def _circuit_cases() -> list[Case]:
    C, PI = "interp.discover.circuit.", "interp.discover.picture."
    good = circuit.Circuit((("embed", "L0H0.v"), ("L0H0", "logits")))
    return [
        Case(C + "Circuit", "an input as upstream", lambda e: circuit.Circuit((("L0H0.q", "logits"),)), ValueError,
             "'L0H0.q' cannot be an edge's upstream end"),
        Case(C + "Circuit", "a node as downstream", lambda e: circuit.Circuit((("embed", "L0H0"),)), ValueError,
             "'L0H0' cannot be an edge's downstream end; use an input such as L0H0.q or logits"),
        Case(C + "Circuit", "an edge twice", lambda e: circuit.Circuit((("embed", "logits"),) * 2), ValueError,
             "a Circuit lists an edge twice"),
        Case(C + "Circuit", "scores of another length", lambda e: circuit.Circuit(good.edges, scores=(1.0,)),
             ValueError, "a Circuit has 2 edges but 1 scores"),
        Case(C + "Circuit", "edges is an int", lambda e: circuit.Circuit(5), TypeError, "got int"),
        Case(C + "Circuit.faithfulness", "edge not in the graph", lambda e: circuit.Circuit((("L1H3", "L1H0.q"),))
             .faithfulness(e.model, e.tokens, e.other, "loss"), KeyError, "the circuit: L1H3->L1H0.q is not an edge"),
        Case(C + "Circuit.faithfulness", "clean = corrupted", lambda e: good.faithfulness(e.model, e.tokens,
             e.tokens, "loss"), ValueError, "so nothing can be normalised"),
        Case(C + "Circuit", "from_scores: threshold and top", lambda e: circuit.Circuit.from_scores(EDGES, 0.1, 2),
             ValueError, "give exactly one of threshold="),
        Case(C + "Circuit", "from_scores: negative threshold", lambda e: circuit.Circuit.from_scores(EDGES, -1.0),
             ValueError, "threshold must be a number >= 0, got -1.0"),
        Case(C + "Circuit", "from_scores: not a frame", lambda e: circuit.Circuit.from_scores([1, 2], top=1),
             TypeError, "from_scores needs a frame with upstream, downstream and score columns"),
        Case(C + "Circuit", "from_csv: missing file", lambda e: circuit.Circuit.from_csv(e.tmp / "none.csv"),
             FileNotFoundError, "no circuit file"),
        Case(C + "Circuit.to_csv", "not a .csv", lambda e: good.to_csv(e.tmp / "edges.txt"), ValueError, ".csv"),
        Case(C + "Circuit.to_svg", "not a .svg", lambda e: good.to_svg(e.tmp / "circuit.png"), ValueError, ".svg"),
        Case(C + "Circuit.to_svg", "graph is a model", lambda e: good.to_svg(e.tmp / "c.svg", graph=e.model),
             TypeError, "graph must be an EdgeGraph"),
        Case(C + "circuit_from_edges", "a string without an arrow", lambda e: circuit.circuit_from_edges(["embed"]),
             TypeError, "each edge must be an (upstream, downstream) pair of names, got 'embed'"),
        Case(C + "edges_above", "share 2", lambda e: circuit.edges_above(EDGES.assign(abs_score=1.0), 2), ValueError,
             "share must be a fraction of the largest |score| in [0, 1], got 2"),
        Case(C + "edges_above", "no abs_score column", lambda e: circuit.edges_above(EDGES, 0.5), TypeError,
             "edges_above needs a frame with upstream, downstream and abs_score columns"),
        Case(PI + "svg_text", "no edges", lambda e: picture.svg_text([], None, 4, 2), ValueError,
             "there is no edge to draw"),
        Case(PI + "svg_text", "scores of another length", lambda e: picture.svg_text(good.edges, [1.0], 4, 2),
             ValueError, "give one score per edge (2), or None"),
        Case(PI + "dot_text", "unknown node", lambda e: picture.dot_text([("embed", "L0X.q")], None), ValueError,
             "'L0X.q' is not a node or input name"),
    ]  # fmt: skip


def _ground_truth_cases() -> list[Case]:
    S, PL, T, K = "interp.discover.scoring.", "interp.discover.planted.", "interp.discover.trained.", "interp.discover."
    other = EDGES.assign(score=[0.5, 0.5])
    return [
        Case(S + "edge_auc", "not a frame", lambda e: scoring.edge_auc({"score": [1]}, []), TypeError,
             "scores must be a frame with upstream, downstream and score columns"),
        Case(S + "edge_auc", "known edge not scored", lambda e: scoring.edge_auc(EDGES, [("pos_embed", "logits")]),
             KeyError, "known edges [('pos_embed', 'logits')] are not rows of the score frame"),
        Case(S + "edge_auc", "every edge known", lambda e: scoring.edge_auc(EDGES, EDGES), ValueError,
             "an AUC needs known and other edges, got 2 known and 0 other rows"),
        Case(S + "edge_auc", "NaN score", lambda e: scoring.edge_auc(EDGES.assign(score=[1.0, float("nan")]),
             [("embed", "L0H0.v")]), ValueError, "holds NaN or inf scores"),
        Case(S + "score_correlation", "unknown method", lambda e: scoring.score_correlation(EDGES, EDGES, "kendall"),
             ValueError, "method='kendall' is not one of ['pearson', 'spearman']"),
        Case(S + "score_correlation", "constant scores", lambda e: scoring.score_correlation(EDGES, other),
             ValueError, "the correlation is undefined"),
        Case(S + "score_correlation", "one shared edge", lambda e: scoring.score_correlation(EDGES, EDGES[:1]),
             ValueError, "the frames share 1 edges; a correlation needs at least 2"),
        Case(PL + "planted_induction", "negative seed", lambda e: planted.planted_induction(seed=-1), ValueError,
             "seed must be >= 0, got -1"),
        Case(PL + "planted_lookup", "seed as text", lambda e: planted.planted_lookup(seed="0"), TypeError,
             "seed must be an int, got '0' (str)"),
        Case(T + "train_modular_sum", "no steps", lambda e: trained.train_modular_sum(steps=0), ValueError,
             "steps must be >= 1, got 0"),
        Case(T + "modular_sum_data", "not a model", lambda e: trained.modular_sum_data(ModelConfig()), TypeError,
             "model must be a MiniGPT"),
        Case(K + "tasks.known_circuit", "unknown task", lambda e: tasks.known_circuit("ioi"), ValueError,
             "unknown known-circuit task 'ioi'; use one of ['planted-induction', 'planted-lookup', 'induction-2l', "
             "'modular-sum']"),
        Case(K + "tasks.known_circuit", "batch 0", lambda e: tasks.known_circuit("planted-lookup", batch=0),
             ValueError, "batch must be >= 1, got 0"),
        Case(K + "tasks.KnownCircuit", "circuit as a list", lambda e: tasks.KnownCircuit(
            "x", e.model, e.tokens, e.other, tasks.LossAt([3]), [("embed", "logits")], circuit.Circuit(()), ""),
            TypeError, "KnownCircuit.circuit and .mechanism must be Circuits"),
    ]  # fmt: skip


CASES = _graph_cases() + _method_cases() + _circuit_cases() + _ground_truth_cases()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return build_env(tmp_path_factory.mktemp("bad_input_discover"))


@pytest.mark.parametrize("case", params(CASES))
def test_bad_input_raises_a_clear_typed_error(case, env):
    """The discovery call refuses the bad input with a typed error naming it, and changes nothing."""
    assert_clean_failure(case, env)
