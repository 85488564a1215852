"""Known answers on the shipped checkpoints, read from activations: head scores find the induction circuit and DLA
is exact. From the weights: tests/interp/weights/test_known_answers_weights.py; the model card:
tests/interp/reports/test_known_answers_reports.py."""

from __future__ import annotations

import pytest
import torch

from interp import direct_logit_attribution, head_scores

SEG_LEN = 15  # BOS + r + r fills 31 of the 32 positions


@pytest.fixture(scope="module")
def scores(induction_model, repeated_tokens):
    return head_scores(induction_model, repeated_tokens).set_index("component")


def test_layer0_head_is_a_previous_token_head(scores):
    """On BOS + r + r, head_scores names L0H0 a previous-token head with score >= 0.7."""
    l0 = scores.loc["L0H0"]
    assert l0.previous_token >= 0.7, f"L0H0 previous_token {l0.previous_token:.3f}: checkpoint or formula wrong"
    assert l0.head_class == "previous_token", f"L0H0 classified as {l0.head_class}"


def test_layer1_head_is_an_induction_head(scores):
    """On BOS + r + r, head_scores names L1H0 an induction head with score >= 0.7."""
    l1 = scores.loc["L1H0"]
    assert l1.induction >= 0.7, (
        f"L1H0 induction {l1.induction:.3f} (first_token {l1.first_token:.3f}): an off-by-one in the induction "
        "key set, or an under-trained checkpoint whose induction head still rests on BOS"
    )
    assert l1.head_class == "induction", f"L1H0 classified as {l1.head_class}"


def test_induction_head_drives_the_repeated_half(induction_model, repeated_tokens):
    """In the repeated half, L1H0's mean DLA to the correct next token exceeds 1 nat and all other rows combined."""
    _, cache = induction_model.run_with_cache(repeated_tokens)
    df = direct_logit_attribution(induction_model, repeated_tokens, cache, per="head")
    second_half = df[(df.pos > SEG_LEN) & (df.pos < 2 * SEG_LEN)]
    mean = second_half.groupby("component").contribution.mean()
    others = mean.drop("L1H0").abs().sum()
    assert mean["L1H0"] > max(others, 1.0), f"L1H0 should dominate the direct logit on the repeated half:\n{mean}"


@pytest.mark.parametrize("per", ["head", "neuron"])
def test_dla_sums_to_logits_on_minigpt_text(text_model, per):
    """On minigpt-text, every row sums to the next-token logit (and to a logit difference) to 1e-4."""
    tokens = text_model.to_tokens(["the quick brown fox jumps over", "import numpy as np; x = np.one"])
    logits, cache = text_model.run_with_cache(tokens)
    df = direct_logit_attribution(text_model, tokens, cache, per=per)
    total = torch.tensor(df.groupby(["batch", "pos"]).contribution.sum().to_numpy()).reshape(tokens.shape)
    target = torch.tensor(df.groupby(["batch", "pos"]).target.first().to_numpy()).reshape(tokens.shape)
    expected = logits.gather(-1, target[..., None])[..., 0].double()
    assert (total - expected).abs().max() < 1e-4, "DLA on the shipped text model does not sum to the logits"
    diff = direct_logit_attribution(text_model, tokens, cache, target="e", contrast="t", per=per)
    total = torch.tensor(diff.groupby(["batch", "pos"]).contribution.sum().to_numpy()).reshape(tokens.shape)
    e, t = text_model.tokenizer.encode("et")
    assert (total - (logits[..., e] - logits[..., t]).double()).abs().max() < 1e-4, "logit difference not exact"


def test_dla_sums_to_logits_on_induction_2l(induction_model, repeated_tokens):
    """On induction-2l (no LayerNorm, untied, b_U), the rows sum to the logits to 1e-4."""
    logits, cache = induction_model.run_with_cache(repeated_tokens)
    df = direct_logit_attribution(induction_model, repeated_tokens, cache, per="head")
    total = torch.tensor(df.groupby(["batch", "pos"]).contribution.sum().to_numpy()).reshape(repeated_tokens.shape)
    target = torch.tensor(df.groupby(["batch", "pos"]).target.first().to_numpy()).reshape(repeated_tokens.shape)
    expected = logits.gather(-1, target[..., None])[..., 0].double()
    assert (total - expected).abs().max() < 1e-4, "DLA does not sum to the logits without LayerNorm"
    assert "b_U" in set(df.component) and "ln_final.b" not in set(df.component), "bias rows wrong for norm='none'"


def test_showcase_prompt_classifies_the_induction_head(induction_model, text_model):
    """On induction-2l's default prompt L1H0 is an induction head; on a prompt with no repeats induction is
    undefined and no head of either shipped model is mislabelled first_token or other."""
    from dashboards.state import showcase
    from interp.observe.attention import UNDEFINED_NOTE, classification_note

    prompt = showcase("induction-2l", induction_model).prompt
    scores = head_scores(induction_model, induction_model.to_tokens(prompt)).set_index("component")
    assert scores.loc["L1H0", "head_class"] == "induction", f"L1H0 on the showcase prompt: {scores.loc['L1H0']}"
    assert scores.loc["L0H0", "head_class"] == "previous_token", f"L0H0 on the showcase prompt: {scores.loc['L0H0']}"
    assert classification_note(scores) is None, "the showcase repeats every token: induction is defined"
    for model in (induction_model, text_model):
        plain = head_scores(model, model.to_tokens("the jumpy"))  # no character repeats
        assert classification_note(plain) == UNDEFINED_NOTE == "no repeated tokens: induction score undefined"
        assert not plain["head_class"].isin(["first_token", "other", "induction"]).any(), (
            f"a head was named on a prompt that cannot show induction: {plain[['component', 'head_class']]}"
        )
    plain = head_scores(induction_model, induction_model.to_tokens("the jumpy")).set_index("component")
    assert plain.loc["L1H0", "head_class"] == "undefined", "the induction head resting on <bos> must not be first_token"
