"""Head scores on hand-built attention patterns (known answers), classification, and the pattern frame."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from conftest import make_model

from interp import attention_pattern_frame, classify_heads, head_scores
from interp.observe.attention import THRESHOLDS
from model import ActivationCache

N = 6  # segment length of BOS + r + r


def repeated(batch: int = 3) -> torch.Tensor:
    """BOS + r + r with r of N distinct non-special tokens per row."""
    gen = torch.Generator().manual_seed(0)
    r = torch.stack([torch.randperm(61, generator=gen)[:N] + 3 for _ in range(batch)])
    return torch.cat([torch.zeros(batch, 1, dtype=torch.long), r, r], dim=1)


def cache_with(pattern_for_query, tokens, n_layers=2, n_heads=4) -> ActivationCache:
    """A cache whose every head has the pattern row pattern_for_query(b, q) -> key index."""
    batch, pos = tokens.shape
    pattern = torch.zeros(batch, n_heads, pos, pos)
    for b in range(batch):
        for q in range(pos):
            pattern[b, :, q, pattern_for_query(b, q)] = 1.0
    return ActivationCache({f"blocks.{layer}.attn.hook_pattern": pattern for layer in range(n_layers)})


def test_perfect_previous_token_head_scores_one(tiny_model):
    """A[q, q-1] = 1 gives previous_token 1, current_token 0, entropy 0, head_class previous_token."""
    tokens = repeated()
    df = head_scores(tiny_model, tokens, cache_with(lambda b, q: max(q - 1, 0), tokens))
    assert (df.previous_token == 1).all() and (df.current_token == 0).all(), "previous-token formula off by one?"
    assert (df.entropy.abs() < 1e-6).all(), "a one-hot pattern has zero entropy"
    assert abs(df.first_token[0] - 1 / (tokens.shape[1] - 1)) < 1e-6, "first_token must leave out query 0"
    assert (df.head_class == "previous_token").all()


def test_perfect_induction_head_scores_one_and_excludes_undefined_queries(tiny_model):
    """Attending to the token after the earlier copy scores 1; first-half queries are excluded, not zero."""
    tokens = repeated()

    def induction(b, q):
        return q - N + 1 if q > N else 0  # second copy: key = earlier occurrence + 1; first half: BOS

    df = head_scores(tiny_model, tokens, cache_with(induction, tokens))
    assert (df.induction == 1).all(), f"induction score {df.induction[0]}: undefined queries counted as zero?"
    assert (df.duplicate_token == 0).all(), "the token after a copy is not the copy"
    assert (df.head_class == "induction").all()


def test_duplicate_token_head(tiny_model):
    """Attending to the earlier copy of the current token scores duplicate_token 1 and induction 0."""
    tokens = repeated()
    df = head_scores(tiny_model, tokens, cache_with(lambda b, q: q - N if q > N else 0, tokens))
    assert (df.duplicate_token == 1).all() and (df.induction == 0).all()
    assert (df.head_class == "duplicate_token").all()


def test_current_token_head_scores_no_induction_on_runs(tiny_model):
    """On 'aaa' a current-token head scores induction 0: the key k = q is excluded from the induction set."""
    tokens = torch.tensor([[0, 20, 20, 20, 20]])
    df = head_scores(tiny_model, tokens, cache_with(lambda b, q: q, tokens))
    assert (df.current_token == 1).all() and (df.induction == 0).all(), "k = q must not count as induction"


def test_undefined_scores_are_nan(tiny_model):
    """With no repeated token, duplicate_token and induction are NaN (undefined), not 0."""
    tokens = torch.tensor([[0, 10, 11, 12, 13, 14]])
    df = head_scores(tiny_model, tokens, cache_with(lambda b, q: 0, tokens))
    assert df.induction.isna().all() and df.duplicate_token.isna().all(), "undefined scores must be NaN"
    assert (df.first_token == 1).all() and (df.head_class == "undefined").all(), (
        "a head resting on <bos> where nothing repeats may be an idle induction head: undefined, not first_token"
    )


def test_uniform_pattern_entropy(tiny_model):
    """A uniform causal pattern has entropy mean_{q>=1} ln(q + 1)."""
    tokens = repeated(1)
    pos = tokens.shape[1]
    pattern = torch.tril(torch.ones(pos, pos)) / torch.arange(1, pos + 1)[:, None]
    cache = ActivationCache({f"blocks.{layer}.attn.hook_pattern": pattern.expand(1, 4, pos, pos) for layer in (0, 1)})
    df = head_scores(tiny_model, tokens, cache)
    expected = sum(math.log(q + 1) for q in range(1, pos)) / (pos - 1)
    assert (df.entropy - expected).abs().max() < 1e-5, "entropy must be in nats and leave out query 0"


def test_head_scores_on_a_model_match_its_cache(tiny_model):
    """cache=None runs the model; the result equals scores from a full run_with_cache."""
    tokens = repeated()
    _, cache = tiny_model.run_with_cache(tokens)
    a, b = head_scores(tiny_model, tokens), head_scores(tiny_model, tokens, cache)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == [
        "layer", "head", "component", "previous_token", "current_token", "first_token", "duplicate_token",
        "induction", "entropy", "head_class",
    ]  # fmt: skip
    scores = a[["previous_token", "current_token", "first_token", "duplicate_token", "induction"]]
    assert ((scores >= 0) & (scores <= 1 + 1e-6)).all().all(), "scores are attention mass: in [0, 1]"


def test_classify_heads_order_and_thresholds():
    """The first kind in THRESHOLDS order that reaches its threshold wins; none reached -> 'other'."""
    rows = {
        "induction": [0.45, 0.1, 0.1, float("nan")],
        "previous_token": [0.9, 0.39, 0.1, 0.2],
        "duplicate_token": [0.0, 0.0, 0.0, 0.0],
        "current_token": [0.0, 0.0, 0.0, 0.0],
        "first_token": [0.9, 0.5, 0.49, 0.0],
    }
    kinds = classify_heads(pd.DataFrame(rows))
    assert list(kinds) == ["induction", "first_token", "other", "undefined"], "threshold order or NaN handling off"
    assert kinds.name == "head_class", "classify_heads returns the head_class column of head_scores"
    assert list(classify_heads(pd.DataFrame(rows), {"previous_token": 0.3})) == [
        "induction", "previous_token", "other", "undefined"
    ]  # fmt: skip
    assert next(iter(THRESHOLDS)) == "induction", "induction must be checked first"
    with pytest.raises(KeyError, match="unknown head kinds"):
        classify_heads(pd.DataFrame(rows), {"inductoin": 0.5})
    with pytest.raises(KeyError, match="lack the columns"):
        classify_heads(pd.DataFrame({"induction": [0.5]}))


def test_attention_pattern_frame(tiny_model):
    """One row per causal (q, k) pair, token labels, weights summing to 1 per query."""
    tokens = tiny_model.to_tokens(["abcd", "wxyz"])
    _, cache = tiny_model.run_with_cache(tokens)
    df = attention_pattern_frame(tiny_model, tokens, cache, layer=1, head=3, batch=1)
    assert list(df.columns) == ["q_pos", "k_pos", "q_str", "k_str", "weight"]
    assert len(df) == 5 * 6 // 2 and (df.k_pos <= df.q_pos).all(), "only causal pairs"
    assert (df.groupby("q_pos").weight.sum() - 1).abs().max() < 1e-5, "weights per query must sum to 1"
    row = df[(df.q_pos == 4) & (df.k_pos == 2)]
    assert row["q_str"].item() == "z" and row["k_str"].item() == "x", "labels come from the chosen sequence"
    assert abs(row.weight.item() - cache["pattern", 1][1, 3, 4, 2].item()) < 1e-6
    for kwargs in ({"layer": 2, "head": 0}, {"layer": 0, "head": 4}, {"layer": 0, "head": 0, "batch": 2}):
        with pytest.raises(IndexError, match="out of range"):
            attention_pattern_frame(tiny_model, tokens, cache, **kwargs)


def test_pattern_frame_without_tokenizer():
    """Models without the char tokenizer label tokens by their ids."""
    model = make_model(d_vocab=50)
    tokens = torch.tensor([[3, 7, 9]])
    _, cache = model.run_with_cache(tokens)
    df = attention_pattern_frame(model, tokens, cache, layer=0, head=0)
    assert list(df["k_str"][:1]) == ["3"]
