"""Known answers on the shipped checkpoints, read from the weights: the previous-token head K-composes with the
induction head, and the induction head's OV circuit copies."""

from __future__ import annotations

from interp import composition_scores, copying_scores

NON_SPECIAL = list(range(3, 64))  # the tokens induction-2l was trained to copy (specials never follow BOS)


def test_previous_token_head_k_composes_with_induction_head(induction_model):
    """K-composition L0H0 -> L1H0 is more than 1.5x its random baseline (and the largest ratio of the three)."""
    df = composition_scores(induction_model).set_index("composition")
    k = df.loc["K"]
    assert k.ratio > 1.5, f"K-composition {k.score:.3f} vs baseline {k.baseline:.3f}: transposed QK in the K score?"


def test_induction_head_copies(induction_model):
    """The induction head's full OV circuit copies: attending to t raises logit t most for >= 70% of tokens."""
    df = copying_scores(induction_model, token_ids=NON_SPECIAL).set_index("component")
    score = df.copying_score["L1H0"]
    assert score >= 0.7, f"L1H0 OV copying score {score:.3f} (chance {1 / 64:.3f}); W_U or W_O order wrong?"
