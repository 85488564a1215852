"""One vocabulary: every frame an analysis returns uses documented column names, strings beside token ids,
missing values (never -1) for "not applicable"; and every public call validates its inputs once."""

from __future__ import annotations

import inspect
import sys

import pandas as pd
import pytest
from conftest import make_model

import interp
from interp.common.vocabulary import COLUMNS, undocumented
from interp.reports.induction import probe_tokens
from model import MiniGPT

INDEX_COLUMNS = ("layer", "head", "neuron", "contrast")


@pytest.fixture(scope="module")
def setup():
    model = make_model()
    tokens = model.to_tokens(["abcabcab", "hello wo"])
    clean, corrupted = model.to_tokens("abcabcab"), model.to_tokens("abdabdab")
    return model, tokens, clean, corrupted


def frames(model, tokens, clean, corrupted) -> dict[str, pd.DataFrame]:
    """One frame per public analysis that returns a DataFrame (and per mode where the columns differ)."""
    out = {f"direct_logit_attribution per={p}": interp.direct_logit_attribution(model, tokens, per=p) for p in
           ("layer", "component", "head", "neuron")}  # fmt: skip
    out["direct_logit_attribution contrast"] = interp.direct_logit_attribution(model, tokens, target="a", contrast="b")
    out["logit_lens"] = interp.logit_lens(model, tokens)
    out["write_norms"] = interp.write_norms(model, tokens)
    out["residual_stack labels"] = interp.residual_stack(model, tokens)[1]
    out["head_scores"] = interp.head_scores(model, tokens)
    out["attention_pattern_frame"] = interp.attention_pattern_frame(model, tokens, layer=1, head=0)
    out["copying_scores"] = interp.copying_scores(model)
    out["composition_scores"] = interp.composition_scores(model)
    out["head_sweep"] = interp.head_sweep(model, tokens, progress=False)
    out["neuron_sweep"] = interp.neuron_sweep(model, tokens, layers=[0], neurons=range(4), progress=False)
    for grid in ("resid_pre", "heads", "heads_by_pos"):
        out[f"activation_patching {grid}"] = interp.activation_patching(
            model, clean, corrupted, "loss", grid, progress=False
        )
        out[f"attribution_patching {grid}"] = interp.attribution_patching(model, clean, corrupted, "loss", grid)
    out["classify_heads"] = interp.classify_heads(out["head_scores"]).to_frame()
    out["circuit_graph"] = interp.circuit_graph(model)
    out["edge_patching"] = interp.edge_patching(model, clean, corrupted, "loss", progress=False)
    out["edge_patching_reference"] = interp.edge_patching_reference(model, clean, corrupted, "loss", edges=[
        ("embed", "logits")], progress=False)  # fmt: skip
    for method in ("eap", "eap-ig"):
        out[f"edge_attribution_patching {method}"] = interp.edge_attribution_patching(model, clean, corrupted, "loss",
                                                                                      method=method)  # fmt: skip
    out["path_patching"] = interp.path_patching(model, clean, corrupted, ["L0H0", "L0.mlp"], ["L1H1", "logits"], "loss")
    out["Circuit.to_frame"] = interp.Circuit.from_scores(out["edge_patching"], top=5).to_frame()
    probe = probe_tokens(2)  # [BOS, r, r] for the shipped induction-2l run
    out["training_dynamics"] = interp.training_dynamics("induction-2l", probe, steps=[0, 3000, 20000], progress=False)
    out["find_phase_changes"] = interp.find_phase_changes(out["training_dynamics"], "second_copy_loss")
    out["information_flow"] = interp.information_flow(model, clean)
    out["flow_routes"] = interp.flow_routes(out["information_flow"], position=3, threshold=0.05)
    out["edge_logit_effects"] = interp.edge_logit_effects(model, clean, out["information_flow"].iloc[:1])
    out["state_readout"] = interp.state_readout(model, clean, 1, 3)
    out["flow_into"] = interp.flow_into(out["information_flow"], 1, 3)
    out["strongest_effects"] = interp.strongest_effects(out["edge_logit_effects"], k=2)
    out["next_token_distribution"] = interp.next_token_distribution(model, tokens, top_k=3)
    out["contributions_at"] = interp.contributions_at(out["direct_logit_attribution per=head"], 2, top=5)[0]
    out["edges_above"] = interp.edges_above(out["edge_patching"], 0.5)
    out["compare_ablation"] = interp.compare_ablation(model, clean, heads="1.0", method="mean", reference=tokens).frame
    return out | feature_frames(model, tokens)


def feature_frames(model, tokens) -> dict[str, pd.DataFrame]:
    """The frames of interp.features, with a seeded untrained SAE on the first residual stream."""
    cfg = interp.SAEConfig("topk", d_in=model.cfg.d_model, d_sae=16, hook_name="blocks.0.hook_resid_post", k=3)
    sae, out = interp.SAE(cfg, seed=0), {}
    for name in ("sae_activations", "feature_dla", "feature_summary", "sae_metrics"):
        out[name] = getattr(interp, name)(model, tokens, sae=sae)
    for name in ("top_activations", "activation_histogram", "feature_intervention"):
        out[name] = getattr(interp, name)(model, tokens, sae=sae, feature=1)
    out["feature_labels"] = interp.feature_labels(model, tokens, sae=sae, features=[0, 1])
    out["feature_logit_effects"] = interp.feature_logit_effects(model, sae, 1)
    out["planted_feature_recovery"] = interp.planted_feature_recovery(sae, interp.toy_features(
        n_features=8, d=model.cfg.d_model, n=10).directions)  # fmt: skip
    return out


def test_every_frame_returning_analysis_is_covered(setup):
    """The walk below sees every public function whose return annotation is a DataFrame."""
    returning = {
        name for name in interp.__all__
        if callable(fn := getattr(interp, name)) and "DataFrame" in str(inspect.signature(fn).return_annotation)
    }  # fmt: skip
    covered = {key.split()[0] for key in frames(*setup)}
    assert returning <= covered | {"read_contributions_csv"}, f"analyses missing from the walk: {returning - covered}"


def test_every_column_is_in_the_vocabulary(setup):
    """No frame has a column that interp.common.vocabulary does not define."""
    bad = {name: undocumented(list(frame.columns)) for name, frame in frames(*setup).items()}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"undocumented columns (add them to COLUMNS or use the documented name): {bad}"


def test_token_ids_have_their_strings_and_missing_is_not_minus_one(setup):
    """target has target_str, contrast has contrast_str; layer/head/neuron/contrast are never -1."""
    for name, frame in frames(*setup).items():
        for column in ("target", "contrast"):
            if column in frame:
                assert f"{column}_str" in frame, f"{name}: {column} without {column}_str"
        for column in INDEX_COLUMNS:
            if column in frame:
                values = frame[column].dropna()
                assert not (values < 0).any(), f"{name}: {column} holds a negative sentinel, not <NA>"


def test_not_applicable_is_a_nullable_missing_value(setup):
    """On a DLA frame, the embedding row has layer <NA> and an MLP row has head <NA>; both columns are Int64."""
    model, tokens, _, _ = setup
    frame = interp.direct_logit_attribution(model, tokens, per="head")
    assert str(frame["layer"].dtype) == "Int64" and str(frame["head"].dtype) == "Int64"
    assert frame.loc[frame.component == "embed", "layer"].isna().all()
    assert frame.loc[frame.component == "L0.mlp", "head"].isna().all()
    assert frame.loc[frame.component == "L1H2", "head"].eq(2).all()
    assert frame.contrast.isna().all() and frame.contrast_str.isna().all(), "no contrast must read as missing"
    assert (frame.target_str == [model.tokenizer.symbols[t] for t in frame.target]).all()


def test_vocabulary_dtypes_are_known_pandas_dtypes():
    """Every documented column names a dtype pandas understands."""
    for name, column in COLUMNS.items():
        assert pd.Series([], dtype=column.dtype).dtype is not None, name  # an unknown dtype raises TypeError


class Counter:
    """Counts interp's own validations of the model and of the tokens during one public call."""

    def __init__(self, monkeypatch):
        self.model_checks = self.token_checks = 0
        import interp.common.checks as checks

        original = checks.check_model

        def check_model(model):
            self.model_checks += 1
            return original(model)

        for name, module in list(sys.modules.items()):
            if name.startswith("interp") and getattr(module, "check_model", None) is original:
                monkeypatch.setattr(module, "check_model", check_model)
        original_tokens = MiniGPT.check_tokens

        def check_tokens(model, tokens):
            if sys._getframe(1).f_globals.get("__name__", "").startswith("interp"):
                self.token_checks += 1
            return original_tokens(model, tokens)

        monkeypatch.setattr(MiniGPT, "check_tokens", check_tokens)


CALLS = {  # name: (call, how many token inputs it takes)
    "dla": (lambda m, t, c, x: interp.direct_logit_attribution(m, t, per="head"), 1),
    "lens": (lambda m, t, c, x: interp.logit_lens(m, t), 1),
    "head_scores": (lambda m, t, c, x: interp.head_scores(m, t), 1),
    "write_norms": (lambda m, t, c, x: interp.write_norms(m, t), 1),
    "compare_ablation (tokens and a reference)": (
        lambda m, t, c, x: interp.compare_ablation(m, c, heads="1.0", mlps=[0], method="mean", reference=t),
        2,
    ),
    "contrast_metric (clean, corrupted)": (lambda m, t, c, x: interp.contrast_metric(m, c, x), 2),
    "next_token_distribution": (lambda m, t, c, x: interp.next_token_distribution(m, t, 3, top_p=0.5), 1),
    "ablate (tokens and a reference)": (
        lambda m, t, c, x: interp.ablate(m, t, heads="1.0", mlps=[0], method="mean", reference=t),
        2,
    ),
    "head_sweep": (lambda m, t, c, x: interp.head_sweep(m, t, method="resample", progress=False), 1),
    "neuron_sweep": (lambda m, t, c, x: interp.neuron_sweep(m, t, layers=[1], neurons=[0, 1], progress=False), 1),
    "activation_patching (clean, corrupted)": (
        lambda m, t, c, x: interp.activation_patching(m, c, x, "loss", "heads", progress=False),
        2,
    ),
    "attribution_patching (clean, corrupted)": (lambda m, t, c, x: interp.attribution_patching(m, c, x, "loss"), 2),
    "composition_scores": (lambda m, t, c, x: interp.composition_scores(m), 0),
    "full_qk": (lambda m, t, c, x: interp.full_qk(m, 1, 0), 0),
    "edge_patching": (lambda m, t, c, x: interp.edge_patching(m, c, x, "loss", progress=False), 2),
    "edge_attribution_patching": (lambda m, t, c, x: interp.edge_attribution_patching(m, c, x, "loss", "eap-ig"), 2),
    "acdc": (lambda m, t, c, x: interp.acdc(m, c, x, "loss", threshold=0.01, progress=False), 2),
    "path_patching": (lambda m, t, c, x: interp.path_patching(m, c, x, "L0H1", "L1H0", "loss"), 2),
    "Circuit.faithfulness": (
        lambda m, t, c, x: interp.Circuit((("embed", "logits"),)).faithfulness(m, c, x, "loss"),
        2,
    ),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_one_public_call_checks_the_model_and_tokens_once(setup, monkeypatch, name):
    """Validation happens at the public boundary only: interp checks the model once and each token input once."""
    model, tokens, clean, corrupted = setup
    call, token_inputs = CALLS[name]
    counter = Counter(monkeypatch)
    call(model, tokens, clean, corrupted)
    assert counter.model_checks == 1, f"{name} checked the model {counter.model_checks} times in one call"
    assert counter.token_checks == token_inputs, (
        f"{name} checked its {token_inputs} token input(s) {counter.token_checks} times: validate once, at the boundary"
    )
