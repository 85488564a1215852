"""``interp.compat.evals`` on answers known by construction: a model whose logits are its unembedding bias alone
(``W_U`` zeroed) gives IOI and MMLU scores that follow from that bias exactly; the trained induction model has an
induction loss near zero where an untrained one is near ``log(vocab)``. TransformerLens's own numbers on the same
weights are compared in tests/test_transformerlens_reference.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_model

from interp.compat import evals
from model import MiniGPT

TEMPLATES = ["[A] met [B]. [B] gave it to [A]", "then [B] saw [A]. [B] told [A]"]


def bias_only(n_ctx: int = 64, **bias_at: float) -> MiniGPT:
    """A model whose logits everywhere are ``b_U``: zero except ``bias_at`` (a symbol: its logit)."""
    model = make_model(n_ctx=n_ctx, tied_embed=False)
    with torch.no_grad():
        model.unembed.W_U.zero_()
        model.unembed.b_U.zero_()
        for symbol, value in bias_at.items():
            model.unembed.b_U[model.tokenizer.encode(symbol)[0]] = value
    return model


def test_ioi_eval_on_a_bias_only_model_is_the_bias_difference():
    """Logits = ``b_U``: the logit difference of every prompt is ``b_U[IO] - b_U[S]`` at the names' first letters,
    the accuracy the share of prompts where it is positive; symmetric pairs cancel to 0 and 1/2."""
    model = bias_only(a=3.0, b=1.0)
    data = evals.IOIDataset(model.tokenizer, templates=TEMPLATES, names=["al", "bo"], num_samples=4)
    result = evals.ioi_eval(model, dataset=data, batch_size=3)
    first = data.samples[0]
    expected = (3.0 if first["IO"] == " al" else 1.0) - (3.0 if first["S"] == " al" else 1.0)
    print(f"\nIOI on a bias-only model: {result} (expected logit difference {expected})")
    assert all(s == first for s in data.samples), "TransformerLens reseeds with 42: every sample is the same"
    assert result["Logit Difference"] == pytest.approx(expected, abs=1e-6)
    assert result["Accuracy"] == (1.0 if expected > 0 else 0.0)
    symmetric = evals.IOIDataset(
        model.tokenizer, templates=TEMPLATES, names=["al", "bo"], num_samples=4, symmetric=True
    )
    result = evals.ioi_eval(model, dataset=symmetric)
    assert len(symmetric) == 4 and result["Logit Difference"] == pytest.approx(0.0, abs=1e-6)
    assert result["Accuracy"] == 0.5


def test_ioi_dataset_has_transformer_lens_defaults(text_model):
    """The default templates, names and nouns, BOS first, and IO / S with a leading space."""
    data = evals.IOIDataset(text_model.tokenizer, num_samples=3)
    assert data.names == ["John", "Mary"] and data.nouns == {
        "LOCATION": ["store", "market"],
        "OBJECT": ["milk", "eggs", "bread"],
    }
    assert len(data) == 3 and data.samples[0]["IO"] in (" John", " Mary")
    item = data[0]
    assert item["prompt"][0] == text_model.tokenizer.bos_token_id
    assert item["prompt"][1:].tolist() == text_model.tokenizer.encode(data.samples[0]["text"])
    with pytest.raises(ValueError, match="longer than this model's context of 32"):
        evals.ioi_eval(text_model, dataset=data)


def test_induction_loss_is_near_zero_on_the_induction_model(induction_model):
    """``induction-2l`` was trained to copy: its loss on the repeated half is under 1; untrained, near log(64)."""
    torch.manual_seed(0)
    trained = float(evals.induction_loss(induction_model))
    torch.manual_seed(0)
    untrained = float(evals.induction_loss(make_model(), prepend_bos=False))
    print(f"\ninduction loss: induction-2l {trained:.4f}, untrained {untrained:.3f} (log 64 = {math.log(64):.3f})")
    assert trained < 1 and abs(untrained - math.log(64)) < 0.5


def test_induction_loss_draws_from_the_global_generator(induction_model):
    """Same seed, same number; TransformerLens's draw of ``[100, 20000)`` is checked against it in the reference."""
    torch.manual_seed(4)
    a = evals.induction_loss(induction_model, batch_size=2, subseq_len=8)
    torch.manual_seed(4)
    assert torch.equal(a, evals.induction_loss(induction_model, batch_size=2, subseq_len=8))


def test_sanity_check_and_evaluate_on_dataset(text_model):
    """The trained text model reads "Zoom In" far better than an untrained one; ``evaluate_on_dataset`` averages
    its batches' losses and stops after ``truncate + 1`` batches, as TransformerLens does."""
    trained, untrained = float(evals.sanity_check(text_model)), float(evals.sanity_check(make_model()))
    print(f"\nsanity_check: minigpt-text {trained:.3f}, untrained {untrained:.3f}")
    assert trained < 5 < untrained + 1 and trained < untrained - 1
    batches = [{"tokens": text_model.to_tokens(t)} for t in ("the cat sat", "a dog ran far", "the end")]
    losses = [float(text_model(b["tokens"], return_type="loss").detach()) for b in batches]
    assert evals.evaluate_on_dataset(text_model, batches) == pytest.approx(sum(losses) / 3)
    assert evals.evaluate_on_dataset(text_model, batches, truncate=1) == pytest.approx(sum(losses[:2]) / 2)


def test_mmlu_eval_on_a_bias_only_model_answers_the_favoured_letter():
    """Logits = ``b_U`` with the letter ``b`` favoured: every answer is B, so the accuracy is the share of questions
    whose answer is B, per subject too; ``subjects`` and ``num_samples`` select as TransformerLens's loader does."""
    model = bias_only(n_ctx=96, b=2.0, a=1.0)
    data = [
        {"question": f"q {i}?", "choices": ["w", "x", "y", "z"], "answer": i % 4, "subject": subject}
        for subject in ("anatomy", "virology")
        for i in range(6)
    ]
    result = evals.mmlu_eval(model, data=data)
    print(f"\nMMLU on a bias-only model favouring B: {result}")
    assert result["num_total"] == 12 and result["num_correct"] == 4 and result["accuracy"] == pytest.approx(4 / 12)
    assert result["subject_scores"] == {"anatomy": pytest.approx(2 / 6), "virology": pytest.approx(2 / 6)}
    some = evals.mmlu_eval(model, data=data, subjects="virology", num_samples=2)  # answers 0, 1: one B
    assert some["num_total"] == 2 and some["num_correct"] == 1 and list(some["subject_scores"]) == ["virology"]
    assert len(evals.MMLU_SUBJECTS) == 57 and evals.MMLU_ANSWER_LETTERS == ["A", "B", "C", "D"]
