"""Known answers on the shipped checkpoints: the model card reads their final evaluations."""

from __future__ import annotations

import pytest


def test_model_card_reads_the_shipped_final_evaluations(induction_model, text_model):
    """describe_final_eval says the induction model predicts the copy and the text model beats the bigram."""
    from interp.reports.card import describe_final_eval

    card = describe_final_eval(induction_model.provenance["final_eval"]).set_index("field")["meaning"]
    assert card["second_copy_loss"].startswith("second-copy loss 0.28 nats") and card["second_copy_loss"].endswith(
        "the copy is predicted"
    ), card["second_copy_loss"]
    assert "L0H0 is a previous-token head" in card["prev_token_score"], card["prev_token_score"]
    text = describe_final_eval(text_model.provenance["final_eval"]).set_index("field")["meaning"]
    assert "below the bigram model's 2.28" in text["val_nats_per_char"], text["val_nats_per_char"]
    assert describe_final_eval(None).empty and "samples" not in text.index
    with pytest.raises(TypeError, match="final_eval must be the dict"):
        describe_final_eval([1, 2])
