"""Bad input to the features room (interp/features): SAEs, their training, the toy data, the analyses, steering.

Part of the bad-input matrix (tests/interp/test_bad_input_interp.py walks interp/ and counts these rows too); see
tests/bad_input_matrix.py for what every row checks.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from bad_input_matrix import Case, assert_clean_failure, build_env, params

from interp.features import analysis, config, evaluate, labels, sae, steering, toy, training

TOPK = config.SAEConfig("topk", d_in=32, d_sae=16, hook_name="blocks.0.hook_resid_post", k=3)


def _sae():
    return sae.SAE(TOPK, seed=0)


def _model_cases() -> list[Case]:
    C, S = "interp.features.config.", "interp.features.sae."
    return [
        Case(C + "SAEConfig", "unknown architecture", lambda e: config.SAEConfig("gated", d_in=4, d_sae=8,
             hook_name="x"), ValueError, "architecture 'gated' is not one of ['standard', 'topk'"),
        Case(C + "SAEConfig", "d_sae 0", lambda e: config.SAEConfig("standard", d_in=4, d_sae=0, hook_name="x"),
             ValueError, "d_sae must be a positive int, got 0"),
        Case(S + "SAE", "config as a dict", lambda e: sae.SAE({"d_in": 4}), TypeError,
             "cfg must be an SAEConfig, got dict"),
        Case(S + "SAE.encode", "wrong width", lambda e: _sae().encode(torch.zeros(2, 5)), ValueError,
             "encode takes a tensor [..., 32], got shape (2, 5)"),
        Case(S + "SAE.decode", "wrong width", lambda e: _sae().decode(torch.zeros(2, 5)), ValueError,
             "decode takes a tensor [..., 16], got shape (2, 5)"),
        Case(S + "SAE.forward", "integer tensor", lambda e: _sae()(torch.zeros(2, 32, dtype=torch.long)), TypeError,
             "forward takes a float tensor [..., 32]"),
        Case(S + "SAE", "from_pretrained: empty name", lambda e: sae.SAE.from_pretrained(""), ValueError,
             "the SAE name is empty; give a shipped name"),
        Case(S + "SAE", "from_pretrained: unknown name", lambda e: sae.SAE.from_pretrained("no-such-sae"),
             FileNotFoundError, "no shipped SAE named 'no-such-sae'"),
        Case(S + "SAE.save", "path as a number", lambda e: _sae().save(123), TypeError,
             "path must be a folder path (str or Path), got int"),
        Case(S + "list_saes", "an argument", lambda e: sae.list_saes("x"), TypeError, "takes 0 positional arguments"),
    ]  # fmt: skip


def _training_cases() -> list[Case]:
    T, TR = "interp.features.toy.", "interp.features.training."
    z = torch.zeros
    return [
        Case(T + "toy_features", "no features", lambda e: toy.toy_features(n_features=0), ValueError,
             "n_features must be >= 1, got 0"),
        Case(T + "toy_features", "p above 1", lambda e: toy.toy_features(p=1.5), ValueError,
             "p must be a probability in (0, 1], got 1.5"),
        Case(T + "ToyFeatures", "mismatched shapes", lambda e: toy.ToyFeatures(z(3, 4), z(5, 4), z(3, 4),
             z(3, 5, dtype=torch.bool)), ValueError, "ToyFeatures.magnitudes has shape (3, 4), expected (3, 5)"),
        Case(T + "planted_feature_recovery", "wrong width", lambda e: toy.planted_feature_recovery(_sae(), z(3, 5)),
             ValueError, "directions have 5 dimensions, the SAE's decoder writes 32"),
        Case(TR + "SAETrainConfig", "topk without k", lambda e: training.SAETrainConfig(d_sae=8), ValueError,
             "architecture='topk' needs k"),
        Case(TR + "train_sae", "1-D activations", lambda e: training.train_sae(z(10), 8, k=2), TypeError,
             "activations must be a float tensor [n, d]"),
        Case(TR + "train_sae", "k above d_sae", lambda e: training.train_sae(z(10, 4), 4, k=8), ValueError,
             "k=8 is more than d_sae=4 features"),
        Case(TR + "train_transcoder", "one tensor", lambda e: training.train_transcoder(z(10, 4), 8, k=2), TypeError,
             "a transcoder needs (inputs, targets) tensors or a (model, layer, tokens) source"),
        Case(TR + "SAETrainConfig", "aux_k for relu", lambda e: training.SAETrainConfig(d_sae=8, architecture="relu",
             aux_k=4), ValueError, "aux_k (AuxK) is for architecture='topk'"),
        Case(TR + "SAETrainConfig", "skip as a string", lambda e: training.SAETrainConfig(d_sae=8, k=2, skip="yes"),
             TypeError, "skip must be True or False, got 'yes'"),
        Case(TR + "train_sae", "skip for an SAE", lambda e: training.train_sae(z(10, 4), 8, k=2, skip=True),
             ValueError, "skip=True is for transcoders (train_transcoder)"),
    ]  # fmt: skip


def _analysis_cases() -> list[Case]:
    A, E, L, ST = ("interp.features." + m + "." for m in ("analysis", "evaluate", "labels", "steering"))
    narrow = config.SAEConfig("standard", d_in=7, d_sae=8, hook_name="blocks.0.hook_resid_post")
    return [
        Case(A + "sae_activations", "SAE of another width", lambda e: analysis.sae_activations(e.model, e.tokens,
             sae=sae.SAE(narrow)), ValueError, "the SAE reads 7 numbers at 'blocks.0.hook_resid_post'"),
        Case(A + "top_activations", "feature out of range", lambda e: analysis.top_activations(e.model, e.tokens,
             sae=_sae(), feature=16), IndexError, "feature 16 is out of range"),
        Case(A + "activation_histogram", "no bins", lambda e: analysis.activation_histogram(e.model, e.tokens,
             sae=_sae(), feature=0, bins=0), ValueError, "bins must be >= 1, got 0"),
        Case(A + "feature_logit_effects", "k 0", lambda e: analysis.feature_logit_effects(e.model, _sae(), 0, k=0),
             ValueError, "k must be >= 1, got 0"),
        Case(A + "feature_dla", "tokens as the SAE", lambda e: analysis.feature_dla(e.model, e.tokens, sae=e.tokens),
             TypeError, "sae must be an SAE (e.g. SAE.from_pretrained(name)), got Tensor"),
        Case(E + "feature_summary", "batch_size 0", lambda e: evaluate.feature_summary(e.model, e.tokens, sae=_sae(),
             batch_size=0), ValueError, "batch_size must be >= 1, got 0"),
        Case(E + "sae_metrics", "dense threshold 2", lambda e: evaluate.sae_metrics(e.model, e.tokens, sae=_sae(),
             dense_threshold=2.0), ValueError, "dense_threshold must be a fraction in (0, 1), got 2.0"),
        Case(E + "sae_metrics", "NaN weights", lambda e: evaluate.sae_metrics(e.nan_model, e.tokens, sae=_sae()),
             ValueError, "NaN"),
        Case(L + "feature_label", "feature -1", lambda e: labels.feature_label(e.model, e.tokens, sae=_sae(),
             feature=-1), IndexError, "feature -1 is out of range"),
        Case(L + "feature_labels", "share 0.1", lambda e: labels.feature_labels(e.model, e.tokens, sae=_sae(),
             share=0.1), ValueError, "share must be a fraction in [0.5, 1], got 0.1"),
        Case(L + "label_from_contexts", "not a top_activations frame", lambda e: labels.label_from_contexts(
             pd.DataFrame({"a": [1]})), TypeError, "label_from_contexts takes a top_activations frame"),
        Case(ST + "feature_hooks", "unknown mode", lambda e: steering.feature_hooks(_sae(), 0, mode="double"),
             ValueError, "mode='double' is not one of ['ablate', 'steer', 'clamp']"),
        Case(ST + "feature_intervention", "pos 99", lambda e: steering.feature_intervention(e.model, e.tokens,
             sae=_sae(), feature=0, pos=99), IndexError, "pos 99 is out of range for 6 positions"),
        Case(ST + "generate_steered", "negative length", lambda e: steering.generate_steered(e.model, "abc",
             sae=_sae(), feature=0, value=1.0, max_new_tokens=-1), ValueError, "max_new_tokens"),
    ]  # fmt: skip


CASES = _model_cases() + _training_cases() + _analysis_cases()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return build_env(tmp_path_factory.mktemp("bad_input_features"))


@pytest.mark.parametrize("case", params(CASES))
def test_bad_input_raises_a_clear_typed_error(case, env):
    """The features call refuses the bad input with a typed error naming it, and changes nothing."""
    assert_clean_failure(case, env)
