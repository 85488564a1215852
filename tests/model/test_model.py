"""MiniGPT forward: residual-stream invariants, attention, norms, rotary, return types and token errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import CONFIG_VARIANTS, make_model

from benchmarks.reference import PlainGPT

ATOL = 1e-5
# every variant whose residual stream is a plain sum of writes (post-norm rescales it)
ADDITIVE = [name for name, overrides in CONFIG_VARIANTS.items() if overrides.get("norm", "pre") != "post"]


def cached(model, tokens, **kwargs):
    with torch.no_grad():
        return model.run_with_cache(tokens, **kwargs)


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("variant", ADDITIVE)
def test_block_output_is_input_plus_writes(variant, tokens):
    """resid_post[l] == resid_pre[l] + attn_out[l] + mlp_out[l], and resid_pre[l+1] == resid_post[l]."""
    model = make_model(**CONFIG_VARIANTS[variant])
    _, cache = cached(model, tokens)
    for layer in range(model.cfg.n_layers):
        writes = cache["attn_out", layer] + (0 if model.cfg.attn_only else cache["mlp_out", layer])
        err = max_err(cache["resid_post", layer], cache["resid_pre", layer] + writes)
        assert err < ATOL, f"layer {layer}: resid_post - (resid_pre + writes) = {err:.2e}; a write bypasses its hook"
        if layer + 1 < model.cfg.n_layers:
            assert torch.equal(cache["resid_pre", layer + 1], cache["resid_post", layer]), "blocks are not chained"


@pytest.mark.parametrize("variant", ADDITIVE)
def test_final_residual_is_the_sum_of_every_write(variant, tokens):
    """The last resid_post equals embed + pos_embed + every attn_out + every mlp_out (to 1e-5)."""
    model = make_model(**CONFIG_VARIANTS[variant])
    _, cache = cached(model, tokens)
    total = cache["embed"] + (cache["pos_embed"] if "hook_pos_embed" in cache else 0)
    for layer in range(model.cfg.n_layers):
        total = total + cache["attn_out", layer]
        if not model.cfg.attn_only:
            total = total + cache["mlp_out", layer]
    err = max_err(cache["resid_post", model.cfg.n_layers - 1], total)
    assert err < ATOL, f"final residual differs from the sum of writes by {err:.2e}"


@pytest.mark.parametrize("variant", list(CONFIG_VARIANTS))
def test_logits_are_the_unembedded_final_residual(variant, tokens):
    """logits == (ln_final(final residual) or the residual itself) @ W_U (+ b_U)."""
    model = make_model(**CONFIG_VARIANTS[variant])
    logits, cache = cached(model, tokens)
    final = cache["normalized"] if model.ln_final is not None else cache["resid_post", model.cfg.n_layers - 1]
    expected = final @ model.W_U + (0 if model.unembed.b_U is None else model.unembed.b_U)
    assert max_err(logits, expected) < 1e-4, "logits are not W_U applied to the final residual"


@pytest.mark.parametrize("bias", [True, False])
def test_head_results_sum_to_attn_out(bias, tokens):
    """sum over heads of hook_result plus b_O equals hook_attn_out."""
    model = make_model(bias=bias)
    names = [f"blocks.{layer}.attn.hook_result" for layer in range(2)] + ["blocks.0.hook_attn_out"]
    names.append("blocks.1.hook_attn_out")
    _, cache = cached(model, tokens, names_filter=names)
    for layer, block in enumerate(model.blocks):
        result = cache["result", layer]
        assert result.shape == (*tokens.shape, model.cfg.n_heads, model.cfg.d_model), f"result shape {result.shape}"
        total = result.sum(dim=2) + (0 if block.attn.b_O is None else block.attn.b_O)
        err = max_err(total, cache["attn_out", layer])
        assert err < ATOL, f"layer {layer}: sum of head results + b_O differs from attn_out by {err:.2e}"


@pytest.mark.parametrize("variant", list(CONFIG_VARIANTS))
def test_attention_is_causal_and_rows_sum_to_one(variant, tokens):
    """Each pattern row sums to 1; every future key gets exactly 0 (scores -inf)."""
    model = make_model(**CONFIG_VARIANTS[variant])
    _, cache = cached(model, tokens)
    pos = tokens.shape[1]
    future = torch.ones(pos, pos, dtype=torch.bool).triu(1)
    for layer in range(model.cfg.n_layers):
        pattern, scores = cache["pattern", layer], cache["attn_scores", layer]
        assert pattern.shape == (tokens.shape[0], model.cfg.n_heads, pos, pos), f"pattern shape {pattern.shape}"
        assert max_err(pattern.sum(-1), torch.ones(())) < ATOL, f"layer {layer}: rows do not sum to 1"
        assert torch.all(pattern[..., future] == 0), f"layer {layer}: attends to the future (causal mask missing)"
        assert torch.all(scores[..., future] == float("-inf")), "masked scores should be -inf"
        assert torch.all(pattern[..., ~future] > 0), "a past key got zero attention (mask too wide?)"


def test_pre_norm_normalises_each_sublayer_input(tokens):
    """Pre-norm: attention reads ln1(resid_pre), the MLP reads ln2(resid_mid), logits read ln_final."""
    model = make_model()
    _, cache = cached(model, tokens)
    block = model.blocks[0]
    ln1 = F.layer_norm(cache["resid_pre", 0], (model.cfg.d_model,), block.ln1.w, block.ln1.b, model.cfg.ln_eps)
    assert max_err(cache["normalized", 0, "ln1"], ln1) < ATOL, "ln1 output is not LayerNorm(resid_pre)"
    centred = cache["resid_mid", 0] - cache["resid_mid", 0].mean(-1, keepdim=True)
    scale = (centred.pow(2).mean(-1, keepdim=True) + model.cfg.ln_eps).sqrt()
    assert max_err(cache["scale", 0, "ln2"], scale) < ATOL, "ln2.hook_scale is not the std of resid_mid"
    assert "ln_final.hook_normalized" in model.hook_names, "pre-norm models have a final LayerNorm"


def test_post_norm_normalises_after_each_addition(tokens):
    """Post-norm: resid_mid = ln1(resid_pre + attn_out), resid_post = ln2(resid_mid + mlp_out), no ln_final."""
    model = make_model(norm="post")
    logits, cache = cached(model, tokens)
    assert torch.isfinite(logits).all() and logits.shape == (*tokens.shape, 64), "post-norm forward broken"
    d, eps = (model.cfg.d_model,), model.cfg.ln_eps
    for layer, b in enumerate(model.blocks):
        mid = F.layer_norm(cache["resid_pre", layer] + cache["attn_out", layer], d, b.ln1.w, b.ln1.b, eps)
        assert max_err(cache["resid_mid", layer], mid) < ATOL, f"layer {layer}: resid_mid is not ln1(x + attn)"
        post = F.layer_norm(cache["resid_mid", layer] + cache["mlp_out", layer], d, b.ln2.w, b.ln2.b, eps)
        assert max_err(cache["resid_post", layer], post) < ATOL, f"layer {layer}: resid_post is not ln2(x + mlp)"
    assert model.ln_final is None and not any(n.startswith("ln_final") for n in model.hook_names)


def test_norm_none_has_no_layernorm(tokens):
    """norm='none' has no LayerNorm module or hook anywhere, and its forward runs."""
    model = make_model(norm="none")
    assert not any(".ln" in n or n.startswith("ln_final") for n in model.hook_names), "LayerNorm hooks present"
    assert not any(name.endswith((".w", ".b")) and "ln" in name for name, _ in model.named_parameters())
    assert torch.isfinite(model(tokens)).all(), "norm='none' forward is not finite"


def test_pre_norm_matches_independent_reference(tokens):
    """A pre-norm learned-position MiniGPT equals benchmarks/reference.py's PlainGPT on the same weights."""
    model = make_model()
    plain = PlainGPT.from_minigpt(model).eval()
    with torch.no_grad():
        err = max_err(model(tokens), plain(tokens))
    assert err < 1e-4, f"MiniGPT differs from the plain reference by {err:.2e}"


def rotary_scores(model, q_content, k_content, offset: int, pos: int) -> torch.Tensor:
    """Layer-0 attention scores with q/k (before rotation) overwritten at positions offset..offset+n."""
    n = q_content.shape[0]

    def put(content):
        def hook(act, hook):
            act = act.clone()
            act[:, offset : offset + n] = content
            return act

        return hook

    tokens = torch.zeros(1, pos, dtype=torch.long)
    hooks = [("blocks.0.attn.hook_q", put(q_content)), ("blocks.0.attn.hook_k", put(k_content))]
    _, cache = cached(model, tokens, names_filter="blocks.0.attn.hook_attn_scores", fwd_hooks=hooks)
    return cache["attn_scores", 0][0, :, offset : offset + n, offset : offset + n]


def test_rotary_scores_depend_only_on_relative_position():
    """The same q/k content shifted by any offset gives the same scores; distance itself still matters."""
    model = make_model(positional="rotary")
    n, heads, d_head, pos = 8, model.cfg.n_heads, model.cfg.d_head, model.cfg.n_ctx
    gen = torch.Generator().manual_seed(0)
    q_content, k_content = torch.randn(2, n, heads, d_head, generator=gen)
    base = rotary_scores(model, q_content, k_content, 0, pos)
    past = torch.ones(n, n, dtype=torch.bool).tril()
    for offset in range(1, pos - n + 1):
        shifted = rotary_scores(model, q_content, k_content, offset, pos)
        err = max_err(shifted[:, past], base[:, past])
        assert err < 1e-4, f"offset {offset}: scores changed by {err:.2e}; rotary must be relative (check sin/cos)"
    same = torch.randn(1, heads, d_head, generator=gen).expand(n, heads, d_head)
    const = rotary_scores(model, same, same, 0, pos)
    diagonal, three_back = const[:, 3, 3], const[:, 3, 0]
    assert (diagonal - three_back).abs().min() > 1e-3, "identical q and k give equal scores at distance 0 and 3"


def test_rotary_rotation_preserves_norms():
    """hook_rot_q is a rotation of hook_q: same norm per head, position 0 unchanged."""
    model = make_model(positional="rotary")
    _, cache = cached(model, torch.arange(12)[None], names_filter=lambda n: "hook_q" in n or "hook_rot_q" in n)
    q, rot = cache["q", 0], cache["rot_q", 0]
    assert max_err(q.norm(dim=-1), rot.norm(dim=-1)) < 1e-4, "rotary changed vector norms"
    assert max_err(q[:, 0], rot[:, 0]) < ATOL, "position 0 must not be rotated"
    assert max_err(q[:, 1:], rot[:, 1:]) > 1e-3, "positions > 0 were not rotated"


def test_return_types(tokens):
    """'logits', 'loss', 'both' and None return what they say; the loss is next-token cross-entropy."""
    model = make_model()
    with torch.no_grad():
        logits = model(tokens)
        loss = model(tokens, return_type="loss")
        both = model(tokens, return_type="both")
        per_token = model(tokens, return_type="loss", loss_per_token=True)
        assert model(tokens, return_type=None) is None, "return_type=None should return None"
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 64), tokens[:, 1:].reshape(-1))
    assert abs(loss.item() - expected.item()) < 1e-5, "loss is not the mean next-token cross-entropy"
    assert torch.equal(both[0], logits) and torch.equal(both[1], loss), "'both' must be (logits, loss)"
    assert per_token.shape == (tokens.shape[0], tokens.shape[1] - 1), f"per-token loss shape {per_token.shape}"
    assert abs(per_token.mean().item() - loss.item()) < 1e-5, "per-token losses do not average to the loss"


def test_invalid_return_type(tokens):
    """An unknown return_type raises ValueError listing the allowed ones."""
    with pytest.raises(ValueError, match=r"return_type='probs' is not one of \['logits', 'loss', 'both', None\]"):
        make_model()(tokens, return_type="probs")


def test_token_forms_are_equivalent(tokens):
    """A [pos] tensor, a list of ints and a [1, pos] tensor give the same logits."""
    model = make_model()
    row = tokens[0]
    with torch.no_grad():
        want = model(row[None])
        assert torch.equal(model(row), want), "[pos] tokens should be treated as [1, pos]"
        assert torch.equal(model(row.tolist()), want), "a list of ints should work like a tensor"
        assert torch.equal(model(row.int()), want), "int32 tokens should work like int64"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.zeros(1, 17, dtype=torch.long), "17 tokens is longer than the context n_ctx=16"),
        (torch.tensor([[1, 64, 70]]), r"token ids \[64, 70\] are outside the vocabulary \[0, 64\)"),
        (torch.tensor([[-1, 2]]), r"token ids \[-1\] are outside the vocabulary"),
        (torch.tensor([[1.0, 2.0]]), "tokens must be integer ids, got dtype torch.float32"),
        (torch.tensor([[True, False]]), "tokens must be integer ids, got dtype torch.bool"),
        (torch.zeros(1, 2, 3, dtype=torch.long), r"tokens must have shape \[batch, pos\] or \[pos\], got \(1, 2, 3\)"),
        (torch.zeros(1, 0, dtype=torch.long), "tokens are empty"),
        (torch.zeros(0, 4, dtype=torch.long), "tokens are empty"),
        ([], "tokens are empty"),
        ([[1, 2], [3]], "tokens must be a tensor or list of integer ids"),
        (torch.tensor(3), r"tokens must have shape \[batch, pos\] or \[pos\], got \(\)"),
    ],
    ids=[
        "too-long",
        "above-vocab",
        "negative",
        "float",
        "bool",
        "3d",
        "no-pos",
        "no-batch",
        "empty-list",
        "ragged",
        "0d",
    ],
)
def test_bad_tokens_raise_value_error(bad, message):
    """Bad tokens raise ValueError saying what was expected, before any torch error."""
    with pytest.raises(ValueError, match=message):
        make_model()(bad)


def test_weights_cached_under_inference_mode_serve_a_later_graph(tokens):
    """A frozen model first run under inference_mode still backpropagates to its input (stacked QKV cache)."""
    model = make_model().requires_grad_(False)
    with torch.inference_mode():
        model(tokens)  # builds the stacked QKV weights while inference mode is on
    leaves = []

    def leaf(x, hook):
        x = x.detach().requires_grad_(True)
        leaves.append(x)
        return x

    loss = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[("blocks.0.hook_resid_pre", leaf)])
    (grad,) = torch.autograd.grad(loss, leaves)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0, "no gradient reached the residual stream"
