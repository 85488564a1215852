"""Every discovery method scored against circuits known by construction (two planted models, induction-2l, a trained
modular-addition model): ROC AUC of the edge scores against the known edges, correlation with exact patching, and
the size and faithfulness of the circuits ACDC and thresholded EAP / EAP-IG return. Every score is printed.

Targets (issue 15): AUC >= 0.95 for EAP-IG and exact patching; the known circuit recovered with faithfulness
>= 0.9. EAP's known weakness, saturated heads, shows on the planted induction model: that case is kept as a test.
"""

from __future__ import annotations

import pytest
import torch

from interp import Loss
from interp.discover.acdc import acdc
from interp.discover.attribution import edge_attribution_patching
from interp.discover.circuit import Circuit
from interp.discover.patching import edge_patching
from interp.discover.scoring import edge_auc, score_correlation
from interp.discover.tasks import NAMES, known_circuit
from model import MiniGPT
from model.training.data import builtin_corpus, text_batch

pytestmark = pytest.mark.slow  # the modular-sum model trains (~2 s); all four tasks together take ~15 s
THRESHOLD = 0.02  # ACDC's threshold and thresholded EAP's, as a fraction of |metric_clean - metric_corrupted|


@pytest.fixture(scope="module")
def scored():
    """Each task with its exact, EAP and EAP-IG edge scores (batch 16)."""
    out = {}
    for name in NAMES:
        task = known_circuit(name, batch=16)
        args = (task.model, task.clean, task.corrupted, task.metric)
        exact = edge_patching(*args, progress=False)
        out[name] = (task, {"exact": exact, "eap": edge_attribution_patching(*args),
                            "eap-ig": edge_attribution_patching(*args, method="eap-ig")})  # fmt: skip
    return out


def _gap(frame) -> float:
    return abs(float(frame.metric_clean.iloc[0] - frame.metric_corrupted.iloc[0]))


@pytest.mark.parametrize("name", NAMES)
def test_edge_scores_rank_the_known_edges_first(scored, name):
    """ROC AUC of |score| against the known edges: >= 0.95 for exact patching and EAP-IG (EAP is printed)."""
    task, frames = scored[name]
    auc = {method: edge_auc(frame, task.circuit) for method, frame in frames.items()}
    corr = {m: score_correlation(frames[m], frames["exact"]) for m in ("eap", "eap-ig")}
    print(f"{name}: {len(frames['exact'])} edges, {task.circuit.size} known | AUC exact {auc['exact']:.3f}, "
          f"EAP {auc['eap']:.3f}, EAP-IG {auc['eap-ig']:.3f} | Pearson with exact: EAP {corr['eap']:+.3f}, "
          f"EAP-IG {corr['eap-ig']:+.3f}")  # fmt: skip
    assert auc["exact"] >= 0.95 and auc["eap-ig"] >= 0.95


@pytest.mark.parametrize("name", NAMES)
def test_acdc_recovers_the_known_circuit_faithfully(scored, name):
    """ACDC keeps every known edge, and what it keeps alone restores >= 90% of the clean metric."""
    task, frames = scored[name]
    args = (task.model, task.clean, task.corrupted, task.metric)
    circuit = acdc(*args, threshold=THRESHOLD * _gap(frames["exact"]), progress=False)
    faithful = circuit.faithfulness(*args)
    extra = sorted(set(circuit.edges) - set(task.circuit.edges))
    print(f"{name}: ACDC keeps {circuit.size} edges (known {task.circuit.size}), faithfulness {faithful:.3f}, "
          f"extra {extra}")  # fmt: skip
    assert set(task.circuit.edges) <= set(circuit.edges) and faithful >= 0.9
    assert circuit.size <= task.circuit.size + 2


@pytest.mark.parametrize("name", NAMES)
def test_thresholded_attribution_circuits(scored, name):
    """Thresholded EAP-IG (and exact patching) recover the known circuit with faithfulness >= 0.9; thresholded EAP
    is printed, and recovers it everywhere but on the saturated planted induction model (next test)."""
    task, frames = scored[name]
    args = (task.model, task.clean, task.corrupted, task.metric)
    threshold = THRESHOLD * _gap(frames["exact"])
    for method, frame in frames.items():
        circuit = Circuit.from_scores(frame, threshold=threshold)
        faithful = circuit.faithfulness(*args)
        found = set(task.circuit.edges) <= set(circuit.edges)
        print(f"{name}: thresholded {method}: {circuit.size} edges, faithfulness {faithful:.3f}, known circuit "
              f"{'recovered' if found else 'missed'}")  # fmt: skip
        if method != "eap" or name != "planted-induction":
            assert found and faithful >= 0.9, (method, circuit)


def test_eap_misses_the_saturated_induction_circuit(scored):
    """EAP's known weakness, kept as a test: on the planted induction model the heads' patterns are saturated (a
    margin of 24 in the scores) and so is the loss, so the gradient at the clean run all but vanishes. EAP then
    scores the K-composition edge a million times too low (on these 16 prompts; tokens repeated inside a segment
    split the attention of a few rows and give it some gradient on other batches), gets the sign of the value edge
    wrong, and its thresholded circuit misses the known edges. EAP-IG is wrong about the K edge's sign too, but not
    about its being there; exact patching and ACDC find the circuit (previous tests)."""
    task, frames = scored["planted-induction"]
    exact, eap, ig = (frames[m].set_index(["upstream", "downstream"]).score for m in ("exact", "eap", "eap-ig"))
    k_edge, v_edge = ("L0H0", "L1H0.k"), ("embed", "L1H0.v")
    print(f"L0H0 -> L1H0.k: exact {exact[k_edge]:+.4f}, EAP {eap[k_edge]:+.2e}, EAP-IG {ig[k_edge]:+.4f}")
    print(f"embed -> L1H0.v: exact {exact[v_edge]:+.4f}, EAP {eap[v_edge]:+.4f}, EAP-IG {ig[v_edge]:+.4f}")
    assert abs(eap[k_edge]) < 1e-5 * abs(exact[k_edge]) and abs(ig[k_edge]) > 1e-2
    assert eap[v_edge] * exact[v_edge] < 0 < ig[v_edge] * exact[v_edge]
    args = (task.model, task.clean, task.corrupted, task.metric)
    thresholded = Circuit.from_scores(frames["eap"], threshold=THRESHOLD * _gap(frames["exact"]))
    faithful = thresholded.faithfulness(*args)
    found = len(set(thresholded.edges) & set(task.circuit.edges))
    print(
        f"thresholded EAP: {thresholded.size} edges, {found} of {task.circuit.size} known, faithfulness {faithful:.3f}"
    )
    assert k_edge not in thresholded and found < task.circuit.size


@pytest.mark.parametrize("name", ["planted-induction", "planted-lookup"])
def test_planted_distractors_cannot_matter(scored, name):
    """The planted models' lemma: every edge outside the mechanism changes the metric by 0 (float rounding)."""
    task, frames = scored[name]
    exact = frames["exact"]
    inside = [edge in task.mechanism for edge in zip(exact.upstream, exact.downstream, strict=True)]
    outside = exact.abs_score[[not i for i in inside]]
    print(
        f"{name}: {len(outside)} edges outside the mechanism, largest |effect| {outside.max():.2e}; "
        f"smallest known effect {exact.set_index(['upstream', 'downstream']).abs_score[list(task.circuit)].min():.3f}"
    )
    assert outside.max() < 1e-5


def test_the_known_circuit_models_do_their_tasks(scored):
    """The planted and trained models solve their tasks, so their circuits are circuits of something."""
    induction, _ = scored["planted-induction"]
    with torch.no_grad():
        second_copy = float(induction.metric(induction.model(induction.clean), induction.clean))
    lookup, _ = scored["planted-lookup"]
    table = lookup.metric.answer
    hits = (lookup.model(lookup.clean)[:, -1].argmax(-1) == torch.tensor(table)).float().mean()
    modular, _ = scored["modular-sum"]
    answers = torch.tensor(modular.metric.answer)
    accuracy = (modular.model(modular.clean)[:, -1].argmax(-1) == answers).float().mean()
    print(f"planted induction: second-copy loss {second_copy:.3f} nats; planted lookup: {float(hits):.0%} right; "
          f"modular sum: {float(accuracy):.0%} of {len(answers)} pairs right")  # fmt: skip
    assert second_copy < 0.5 and float(hits) == 1.0 and float(accuracy) == 1.0


def test_eap_against_exact_patching_on_minigpt_text():
    """minigpt-text has no known circuit; report how EAP and EAP-IG correlate with exact patching there (clean and
    corrupted: 16 windows of the validation text each), and ACDC's circuit."""
    model = MiniGPT.from_pretrained("minigpt-text").eval()
    data = builtin_corpus().val
    clean = text_batch(data, 16, 32, torch.Generator().manual_seed(0))
    corrupted = text_batch(data, 16, 32, torch.Generator().manual_seed(1))
    exact = edge_patching(model, clean, corrupted, Loss(), progress=False)
    rows = {m: edge_attribution_patching(model, clean, corrupted, Loss(), method=m) for m in ("eap", "eap-ig")}
    pearson = {m: score_correlation(f, exact) for m, f in rows.items()}
    spearman = {m: score_correlation(f, exact, "spearman") for m, f in rows.items()}
    circuit = acdc(model, clean, corrupted, Loss(), threshold=0.005 * _gap(exact), progress=False)
    faithful = circuit.faithfulness(model, clean, corrupted, Loss())
    print(f"minigpt-text: Pearson with exact: EAP {pearson['eap']:+.3f}, EAP-IG {pearson['eap-ig']:+.3f}; Spearman: "
          f"EAP {spearman['eap']:+.3f}, EAP-IG {spearman['eap-ig']:+.3f}; ACDC {circuit.size} of {len(exact)} edges, "
          f"faithfulness {faithful:.3f}")  # fmt: skip
    assert pearson["eap-ig"] > 0.8 and faithful >= 0.9
