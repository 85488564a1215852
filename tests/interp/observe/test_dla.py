"""Direct logit attribution sums exactly to the logits; logit lens reads the residual at every stage."""

from __future__ import annotations

import pytest
import torch
from conftest import CONFIG_VARIANTS, make_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interp import contributions_at, direct_logit_attribution, logit_difference, logit_lens, next_token_distribution
from model.network.logits import sampling_probs

ADDITIVE = [name for name in CONFIG_VARIANTS if CONFIG_VARIANTS[name].get("norm") != "post"]
PER = ["layer", "component", "head", "neuron"]


def summed(df) -> torch.Tensor:
    """groupby-sum of the contributions as a [batch, pos] tensor."""
    total = df.groupby(["batch", "pos"]).contribution.sum()
    batch, pos = df.batch.max() + 1, df.pos.max() + 1
    return torch.tensor(total.to_numpy()).reshape(batch, pos)


def gather(logits, ids):
    return logits.gather(-1, ids[..., None])[..., 0].double()


@pytest.mark.parametrize("per", PER)
@pytest.mark.parametrize("variant", ADDITIVE)
def test_dla_sums_to_the_logit(variant, per, tokens):
    """Contributions + ln_final.b + b_U rows sum to the target logit to 1e-4 on every additive config."""
    model = make_model(**CONFIG_VARIANTS[variant])
    logits, cache = model.run_with_cache(tokens)
    df = direct_logit_attribution(model, tokens, cache, per=per)
    target = torch.tensor(df.groupby(["batch", "pos"]).target.first().to_numpy()).reshape(tokens.shape)
    err = (summed(df) - gather(logits, target)).abs().max().item()
    assert err < 1e-4, f"DLA does not sum to the logit (err {err}); LN scale not frozen, or a bias row missing?"


@pytest.mark.parametrize("variant", ADDITIVE)
def test_dla_with_contrast_sums_to_the_logit_difference(variant, tokens):
    """With a contrast token the rows sum to logit[target] - logit[contrast], and logit_difference agrees."""
    model = make_model(**CONFIG_VARIANTS[variant])
    logits, cache = model.run_with_cache(tokens)
    df = direct_logit_attribution(model, tokens, cache, target=7, contrast=11, per="head")
    expected = (logits[..., 7] - logits[..., 11]).double()
    assert (summed(df) - expected).abs().max() < 1e-4, "contrast direction not subtracted everywhere"
    helper = logit_difference(model, tokens, cache, 7, 11).double()
    assert (helper - expected).abs().max() < 1e-4, "logit_difference disagrees with the model's logits"
    assert (df.contrast == 11).all() and (df.target == 7).all()


def test_granularities_agree_with_component(tiny_model, tokens):
    """per='head' heads sum to per='component' attn rows; neurons to mlp rows; layer rows to attn + mlp."""
    _, cache = tiny_model.run_with_cache(tokens)
    frames = {per: direct_logit_attribution(tiny_model, tokens, cache, per=per) for per in PER}
    comp = frames["component"].set_index(["batch", "pos", "component"]).contribution
    for layer in range(2):
        key = ["batch", "pos"]
        head = frames["head"]
        attn = (
            head[(head.layer == layer) & head.component_type.isin(["head", "attn_bias"])]
            .groupby(key)
            .contribution.sum()
        )
        assert (attn.to_numpy() - comp.xs(f"L{layer}.attn", level=2).to_numpy()).max() < 1e-5, "heads != attn"
        neuron = frames["neuron"]
        mlp = (
            neuron[(neuron.layer == layer) & neuron.component_type.isin(["neuron", "mlp_bias"])]
            .groupby(key)
            .contribution.sum()
        )
        assert abs(mlp.to_numpy() - comp.xs(f"L{layer}.mlp", level=2).to_numpy()).max() < 1e-5, "neurons != mlp"
        whole = frames["layer"].set_index(["batch", "pos", "component"]).contribution.xs(f"L{layer}", level=2)
        both = comp.xs(f"L{layer}.attn", level=2) + comp.xs(f"L{layer}.mlp", level=2)
        assert abs(whole.to_numpy() - both.to_numpy()).max() < 1e-5, "layer row != attn + mlp"


def test_dla_columns_and_bias_rows(tiny_model, tokens):
    """Frame has the documented columns and explicit ln_final.b / b_U rows (b_U only when untied)."""
    df = direct_logit_attribution(tiny_model, tokens, per="head")
    assert list(df.columns) == [
        "batch", "pos", "pos_str", "target", "target_str", "contrast", "contrast_str", "component", "layer", "head",
        "neuron", "component_type", "contribution",
    ]  # fmt: skip
    assert "ln_final.b" in set(df.component) and "b_U" not in set(df.component), "tied model has no b_U"
    untied = make_model(tied_embed=False)
    df2 = direct_logit_attribution(untied, tokens, per="component")
    assert "b_U" in set(df2.component), "untied model must attribute its unembedding bias"
    assert len(df) == tokens.numel() * df.component.nunique(), "one row per (batch, pos, component)"


def test_default_target_is_next_token_and_last_is_prediction(tiny_model, tokens):
    """Default target: tokens[:, pos+1], and the model's argmax at the last position."""
    logits, cache = tiny_model.run_with_cache(tokens)
    df = direct_logit_attribution(tiny_model, tokens, cache, per="layer")
    target = torch.tensor(df.groupby(["batch", "pos"]).target.first().to_numpy()).reshape(tokens.shape)
    assert torch.equal(target[:, :-1], tokens[:, 1:]), "target must be the next token"
    assert torch.equal(target[:, -1], logits[:, -1].argmax(-1)), "last position must target the top prediction"


def test_string_and_tensor_targets(tiny_model):
    """A character target (or a special's name) equals its id; a per-position tensor target is used position by
    position."""
    tokens = tiny_model.to_tokens("hello")
    _, cache = tiny_model.run_with_cache(tokens)
    by_char = direct_logit_attribution(tiny_model, tokens, cache, target="l")
    by_id = direct_logit_attribution(tiny_model, tokens, cache, target=tiny_model.tokenizer.encode("l")[0])
    assert by_char.equals(by_id), "a one-character target must resolve to its token id"
    by_name = direct_logit_attribution(tiny_model, tokens, cache, target="<bos>")
    assert (by_name.target == tiny_model.tokenizer.bos_id).all(), "a special's name must resolve to its token id"
    assert (by_name.target_str == "<bos>").all() and (by_char.target_str == "l").all(), "target_str is the symbol"
    per_pos = torch.arange(tokens.shape[1]) + 10
    df = direct_logit_attribution(tiny_model, tokens, cache, target=per_pos)
    assert list(df.groupby("pos").target.first()) == per_pos.tolist(), "per-position targets misaligned"


@pytest.mark.parametrize(
    ("target", "error"),
    [(64, ValueError), (-1, ValueError), (torch.tensor([[1, 2, 3]]), ValueError), ("ab", ValueError),
     (1.5, TypeError), (True, TypeError), (torch.tensor(2.0), TypeError), ("é", ValueError)],
)  # fmt: skip
def test_bad_targets_raise_clear_errors(tiny_model, target, error):
    """Ids outside the vocabulary, wrong shapes, multi-character strings and floats raise typed errors."""
    tokens = tiny_model.to_tokens("hello")
    _, cache = tiny_model.run_with_cache(tokens)
    with pytest.raises(error):
        direct_logit_attribution(tiny_model, tokens, cache, target=target)


def test_bad_per_and_mismatched_cache_raise(tiny_model, tokens):
    """An unknown per= and tokens that do not match the cache raise ValueError."""
    _, cache = tiny_model.run_with_cache(tokens)
    with pytest.raises(ValueError, match="per="):
        direct_logit_attribution(tiny_model, tokens, cache, per="heads")
    with pytest.raises(ValueError, match="but the cache was recorded on other tokens"):
        direct_logit_attribution(tiny_model, tokens[:, :5], cache)


def test_post_norm_dla_refuses_with_reason(tokens):
    """Post-norm models raise a ValueError explaining that the residual is not a sum of writes."""
    model = make_model(norm="post")
    _, cache = model.run_with_cache(tokens)
    with pytest.raises(ValueError, match="re-normalises"):
        direct_logit_attribution(model, tokens, cache)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), use_contrast=st.booleans(), per=st.sampled_from(PER))
def test_dla_sum_property_random_targets(seed, use_contrast, per):
    """For any per-position targets (and contrasts), the rows sum to the logit (difference) to 1e-4."""
    model = make_model(seed=seed % 7, tied_embed=bool(seed % 2))
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 64, (2, 9), generator=gen)
    target = torch.randint(0, 64, (2, 9), generator=gen)
    contrast = torch.randint(0, 64, (9,), generator=gen) if use_contrast else None
    logits, cache = model.run_with_cache(tokens)
    df = direct_logit_attribution(model, tokens, cache, target=target, contrast=contrast, per=per)
    expected = gather(logits, target) - (gather(logits, contrast.expand(2, 9)) if use_contrast else 0)
    assert (summed(df) - expected).abs().max() < 1e-4, "DLA sum property fails for random targets"


@pytest.mark.parametrize("variant", list(CONFIG_VARIANTS))
def test_logit_lens_last_stage_is_the_model_output(variant, tokens):
    """The last lens stage gives the model's own probabilities, ranks and top tokens."""
    model = make_model(**CONFIG_VARIANTS[variant])
    logits, cache = model.run_with_cache(tokens)
    df = logit_lens(model, tokens, cache, k=3)
    n_stages = model.cfg.n_layers + 1
    assert len(df) == tokens.numel() * n_stages and sorted(set(df.stage)) == list(range(n_stages))
    last = df[df.stage == n_stages - 1]
    probs = logits.softmax(-1).reshape(-1, 64)
    target = torch.tensor(last.target.to_numpy())
    expected = probs.gather(-1, target[:, None])[:, 0]
    assert torch.allclose(torch.tensor(last.target_prob.to_numpy()).float(), expected, atol=1e-5), "lens != output"
    ranks = (probs > expected[:, None]).sum(-1)
    assert torch.equal(torch.tensor(last.target_rank.to_numpy()), ranks), "target_rank is not the output rank"
    top = [tokens_list[0] for tokens_list in last.top_strs]
    assert top == [model.tokenizer.symbols[i] for i in probs.argmax(-1).tolist()], "top token != argmax"


def test_logit_lens_columns_and_ordering(tiny_model, tokens):
    """Documented columns; top_probs descend; stage counts the blocks applied, stage_name names the stream read."""
    df = logit_lens(tiny_model, tokens, target=5, k=4)
    assert list(df.columns) == [
        "batch", "pos", "pos_str", "stage", "stage_name", "target", "target_str", "target_prob", "target_rank",
        "top_strs", "top_probs",
    ]  # fmt: skip
    assert list(df.stage[:3]) == [0, 1, 2]
    assert list(df.stage_name[:3]) == ["L0.resid_pre", "L1.resid_pre", "final"]
    assert all(p == sorted(p, reverse=True) and len(p) == 4 for p in df.top_probs), "top_probs must descend"
    assert (df.target_str == tiny_model.tokenizer.symbols[5]).all()
    with pytest.raises(ValueError, match="k must be"):
        logit_lens(tiny_model, tokens, k=0)


def test_contributions_at_sum_to_the_logit_and_keep_the_largest(tiny_model, tokens):
    """contributions_at: the total is the logit at that position; top keeps the largest |contribution| rows."""
    frame = direct_logit_attribution(tiny_model, tokens, per="neuron", target="e")
    with torch.no_grad():
        logit = tiny_model(tokens)[1, 6, tiny_model.to_single_token("e")]
    rows, total = contributions_at(frame, pos=6, batch=1)
    assert abs(total - float(logit)) < 1e-4 and len(rows) == int(((frame.batch == 1) & (frame.pos == 6)).sum())
    top, same = contributions_at(frame, pos=6, top=5, batch=1)
    assert same == total and top.contribution.abs().tolist() == sorted(rows.contribution.abs(), reverse=True)[:5]


def test_next_token_distribution_is_the_forward_and_sampling(tiny_model, tokens):
    """next_token_distribution: logits of the forward, their softmax, and sampling_probs after top-k and top-p."""
    with torch.no_grad():
        logits = tiny_model(tokens)[2, 5].double()
    dist = next_token_distribution(tiny_model, tokens, 5, temperature=0.7, top_k=5, top_p=0.9, batch=2)
    order = torch.tensor(dist.target.to_numpy())
    torch.testing.assert_close(torch.tensor(dist.logit.to_numpy()), logits[order], atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(dist.target_prob.to_numpy()), logits.softmax(-1)[order], atol=1e-6, rtol=0)
    expected = sampling_probs(logits, temperature=0.7, top_k=5, top_p=0.9)[order]
    torch.testing.assert_close(torch.tensor(dist.sample_prob.to_numpy()), expected, atol=1e-6, rtol=0)
    assert dist.logit.is_monotonic_decreasing and (dist.sample_prob > 0).sum() <= 5
