"""Known answers on the shipped checkpoints: the induction head matters; attribution tracks real patching."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from interp import LogitDiff, LossAt, ablate, activation_patching, attribution_patching, head_sweep
from model.training.data import builtin_corpus, repeated_pair_batch, text_batch

SEG_LEN = 15  # BOS + r + r: the first copy at positions 1..15, the second at 16..30
SECOND_COPY = LossAt(range(SEG_LEN + 1, 2 * SEG_LEN + 1))
CORRUPT_AT = 8  # the first-copy position a corrupted prompt changes


def corrupt(tokens: torch.Tensor, pos: int, seed: int) -> torch.Tensor:
    """A copy of ``tokens`` with a different non-special token (ids 3..63) at ``pos`` in every row."""
    shift = torch.randint(1, 61, (tokens.shape[0],), generator=torch.Generator().manual_seed(seed))
    out = tokens.clone()
    out[:, pos] = (tokens[:, pos] - 3 + shift) % 61 + 3
    return out


def test_zero_ablating_the_induction_head_costs_two_nats_on_the_second_copy(induction_model, repeated_tokens):
    """Zero-ablating L1H0 raises the loss on the second copy of BOS + r + r by >= 2 nats."""
    clean = ablate(induction_model, repeated_tokens).metric(SECOND_COPY)
    ablated = ablate(induction_model, repeated_tokens, heads="1.0").metric(SECOND_COPY)
    print(f"induction-2l second-copy loss: clean {clean:.3f}, L1H0 zero-ablated {ablated:.3f} (+{ablated - clean:.3f})")
    assert ablated - clean >= 2.0, f"ablating the induction head raised the loss by only {ablated - clean:.3f} nats"


@pytest.mark.parametrize("method", ["mean", "resample"])
def test_mean_and_resample_ablation_of_the_induction_head_also_hurt(induction_model, repeated_tokens, method):
    """Mean- and resample-ablating L1H0 (reference: other repeated sequences) raise the second-copy loss >= 1 nat."""
    reference = repeated_pair_batch(64, SEG_LEN, torch.Generator().manual_seed(1))
    clean = ablate(induction_model, repeated_tokens).metric(SECOND_COPY)
    ablated = ablate(induction_model, repeated_tokens, heads="1.0", method=method, reference=reference)
    effect = ablated.metric(SECOND_COPY) - clean
    print(f"induction-2l: {method}-ablating L1H0 adds {effect:.3f} nats on the second copy")
    assert effect >= 1.0, f"{method}-ablating the induction head raised the loss by only {effect:.3f} nats"


def test_sweep_ranks_the_induction_head_first_in_layer_1(induction_model, repeated_tokens):
    """head_sweep ranks L1H0 first among layer-1 heads, agrees with ablate(), and finds the previous-token head too."""
    frame = head_sweep(induction_model, repeated_tokens, "zero", SECOND_COPY)
    print(frame.to_string(index=False))
    layer1 = frame[frame.layer == 1].sort_values("delta", ascending=False)
    assert layer1["head"].iloc[0] == 0, f"layer-1 ranking {layer1['head'].tolist()}: the induction head is not first"
    alone = ablate(induction_model, repeated_tokens, heads="1.0").metric(SECOND_COPY)
    assert layer1.metric_ablated.iloc[0] == pytest.approx(alone, abs=1e-5), "the sweep disagrees with ablate()"
    l0h0 = frame[(frame.layer == 0) & (frame["head"] == 0)].delta.iloc[0]
    assert l0h0 >= 1.0, f"ablating the previous-token head L0H0 costs only {l0h0:.3f} nats; the circuit needs it"


def test_ablating_nothing_is_bit_identical_on_the_shipped_model(induction_model, repeated_tokens):
    """ablate() with no components returns the plain forward's logits bit for bit on induction-2l."""
    with torch.no_grad():
        plain = induction_model(repeated_tokens)
    assert torch.equal(ablate(induction_model, repeated_tokens).logits, plain), "an empty ablation changed logits"


def correlations(model, clean, corrupted, metric, grids) -> pd.Series:
    """Pearson correlation of attribution patching with activation patching (normalised scores), per grid."""
    out = {}
    for grid in grids:
        real = activation_patching(model, clean, corrupted, metric, grid)
        estimate = attribution_patching(model, clean, corrupted, metric, grid)
        out[grid] = real.normalized.corr(estimate.normalized)
    return pd.Series(out, name="correlation")


def test_attribution_tracks_real_patching_on_induction_2l(induction_model, repeated_tokens):
    """Corrupting one first-copy token: attribution vs real patching correlate >= 0.9 on every grid of induction-2l."""
    corrupted = corrupt(repeated_tokens, CORRUPT_AT, seed=2)
    answer, wrong = repeated_tokens[:, CORRUPT_AT].tolist(), corrupted[:, CORRUPT_AT].tolist()
    metric = LogitDiff(answer, wrong, pos=SEG_LEN + CORRUPT_AT - 1)  # where the second copy predicts that token
    corr = correlations(induction_model, repeated_tokens, corrupted, metric, ["resid_pre", "attn_out", "heads_by_pos"])
    print(f"induction-2l attribution vs activation patching:\n{corr.round(3).to_string()}")
    assert (corr >= 0.9).all(), f"attribution patching strays from real patching:\n{corr}"


def test_attribution_tracks_real_patching_on_minigpt_text(text_model):
    """Corrupting one character of real text: attribution vs real patching correlate >= 0.5 per grid, >= 0.75 mean."""
    clean = text_batch(builtin_corpus().val, 32, 32, torch.Generator().manual_seed(0))
    corrupted = corrupt(clean, 10, seed=2)
    grids = ["resid_pre", "attn_out", "mlp_out", "heads", "heads_by_pos"]
    corr = correlations(text_model, clean, corrupted, LossAt(range(11, 32)), grids)
    print(f"minigpt-text attribution vs activation patching:\n{corr.round(3).to_string()}")
    assert (corr >= 0.5).all() and corr.mean() >= 0.75, f"attribution patching strays from real patching:\n{corr}"
