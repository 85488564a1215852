"""TransformerLens idioms from its Main Demo and ARENA's chapter 1, written the TransformerLens way (only the model
is loaded our way), each with a check of what it gives. The idioms that still do not run here are listed, with why,
in the README's TransformerLens section; they are not tested as if they ran.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import einops
import numpy as np
import pytest
import torch

from interp.compat import evals, patching, utils
from model import MiniGPT, ModelConfig
from model.network.cache import ActivationCache

TEXT = "the cat sat on the mat"


@pytest.fixture
def model(text_model):
    yield text_model
    text_model.reset_hooks(including_permanent=True)
    text_model.zero_grad()


def test_forward_strings_and_return_types(model):
    logits, loss = model(TEXT, return_type="both")
    assert logits.shape == (1, len(TEXT) + 1, model.cfg.d_vocab) and loss.ndim == 0
    assert model(["the cat", "a dog sat"]).shape[0] == 2
    assert model(TEXT, return_type=None) is None and model(TEXT, stop_at_layer=1).shape[-1] == model.cfg.d_model
    tokens = model.to_tokens(TEXT)
    torch.testing.assert_close(model.loss_fn(logits, tokens, per_token=True).mean(), loss)


def test_tokens_in_and_out(model):
    tokens = model.to_tokens(TEXT)
    assert model.to_string(tokens[0, 1:]) == TEXT and model.to_str_tokens(TEXT)[0] == "<bos>"
    assert model.to_str_tokens(tokens[0]) == model.to_str_tokens(TEXT)
    assert model.to_tokens(TEXT, prepend_bos=False).shape[-1] == len(TEXT)
    assert model.tokenizer.decode(model.tokenizer.encode(TEXT)) == TEXT
    assert model.to_single_token("a") == model.tokenizer.encode("a")[0]


def test_input_to_embed(model):
    residual, tokens, shortformer, mask = model.input_to_embed(["the cat", "a dog sat"], padding_side="left")
    assert shortformer is None and mask.shape == tokens.shape and tokens.shape[0] == 2
    _, cache = model.run_with_cache(["the cat", "a dog sat"], padding_side="left")
    torch.testing.assert_close(residual, cache["resid_pre", 0])


def test_cache_indexing(model):
    _, cache = model.run_with_cache(TEXT, remove_batch_dim=True)
    assert cache["pattern", 0].shape == (model.cfg.n_heads, len(TEXT) + 1, len(TEXT) + 1)
    assert torch.equal(cache["pattern", 0], cache[utils.get_act_name("pattern", 0)])
    assert torch.equal(cache["blocks.0.attn.hook_pattern"], cache["attn", 0])
    assert torch.equal(cache["resid_post", -1], cache["blocks.1.hook_resid_post"])
    assert cache["q", 0].shape[-2:] == (model.cfg.n_heads, model.cfg.d_head) and cache["z", 0, "attn"].ndim == 3
    assert cache["normalized", 0, "ln1"].shape == (*cache["scale", 0, "ln1"].shape[:-1], model.cfg.d_model)
    assert "hook_embed" in cache and len(cache) == len(list(cache.keys())) == len(list(cache.values()))
    assert set(dict(cache.items())) == set(cache.keys()) and cache.to("cpu") is not None
    _, sliced = model.run_with_cache(TEXT, pos_slice=-1)
    assert torch.equal(sliced["resid_post", 1][0, 0], cache["resid_post", 1][-1])


def test_names_filter_forms(model):
    for names_filter in (lambda n: n.endswith("pattern"), ["blocks.0.attn.hook_pattern"], "blocks.0.attn.hook_pattern"):
        _, cache = model.run_with_cache(TEXT, names_filter=names_filter)
        assert "blocks.0.attn.hook_pattern" in cache and "hook_embed" not in cache


def test_head_ablation_with_partial_and_get_act_name(model):
    """Main Demo: zero head 0's value vectors in layer 1 with a ``functools.partial`` hook."""

    def head_ablation_hook(value, hook, head_index_to_ablate):
        value[:, :, head_index_to_ablate, :] = 0.0
        return value

    tokens = model.to_tokens(TEXT)
    clean = model(tokens, return_type="loss")
    hook = functools.partial(head_ablation_hook, head_index_to_ablate=0)
    ablated = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(utils.get_act_name("v", 1), hook)])
    z_hook = [(utils.get_act_name("z", 1), lambda z, hook: z.index_fill(2, torch.tensor([0]), 0.0))]
    torch.testing.assert_close(model.run_with_hooks(tokens, return_type="loss", fwd_hooks=z_hook), ablated)
    assert ablated != clean


def test_hook_layer_ctx_and_hook_point_add_hook(model):
    layers = []
    model.run_with_hooks(
        TEXT, fwd_hooks=[(lambda n: n.endswith("pattern"), lambda p, hook: layers.append(hook.layer()))]
    )
    assert layers == [0, 1]
    seen = []
    model.blocks[0].attn.hook_pattern.add_hook(lambda pattern, hook: seen.append(pattern.shape))
    model(TEXT)
    model.blocks[0].attn.hook_pattern.remove_hooks()
    model(TEXT)
    assert len(seen) == 1 and model.hook_list() == []
    model.add_hook("hook_embed", lambda x, hook: None)
    model.remove_all_hook_fns()
    assert model.hook_list() == []


def test_hooks_context_and_persistent_hooks(model):
    tokens = model.to_tokens(TEXT)
    clean = model(tokens)
    with model.hooks(fwd_hooks=[("blocks.0.hook_attn_out", lambda x, hook: x * 0)]):
        zeroed = model(tokens)
    assert not torch.equal(zeroed, clean) and torch.equal(model(tokens), clean)
    model.add_hook("blocks.0.hook_attn_out", lambda x, hook: x * 0)
    assert torch.equal(model(tokens), zeroed)
    model.reset_hooks()
    assert torch.equal(model(tokens), clean)


def test_weights_and_factored_matrices(model):
    for name in ("W_E", "W_U", "W_pos", "W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O", "W_in", "W_out", "b_U"):
        assert isinstance(getattr(model, name), torch.Tensor), name
    assert torch.equal(model.blocks[0].attn.W_Q, model.W_Q[0]) and torch.equal(model.unembed.W_U, model.W_U)
    assert model.b_U.sort().values.shape == (model.cfg.d_vocab,)
    ov = model.OV[1, 2]
    torch.testing.assert_close(ov.AB, model.W_V[1, 2] @ model.W_O[1, 2])
    assert ov.eigenvalues.shape == (model.cfg.d_head,) and model.QK[0, 1].svd()[1].ndim == 1
    assert model.all_head_labels()[:2] == ["L0H0", "L0H1"] and "blocks.0.attn" in model.mod_dict
    assert model.cfg.d_head * model.cfg.n_heads == model.cfg.d_model and model.cfg.d_mlp == model.cfg.d_ff
    assert model.cfg.normalization_type == "LN" and model.cfg.act_fn == model.cfg.act


def test_residual_decomposition_and_logit_attribution():
    """On weights processed as ``from_pretrained`` processes them, ``decompose_resid`` through ``apply_ln_to_stack``
    onto the logit-difference direction (plus ``b_U``'s difference) is the final logit difference."""
    model = MiniGPT.from_pretrained("minigpt-text")
    model.process_weights_()  # TransformerLens's from_pretrained defaults
    tokens = model.to_tokens(TEXT)
    logits, cache = model.run_with_cache(tokens)
    answer = torch.tensor([[model.to_single_token("a"), model.to_single_token("e")]])
    direction = model.tokens_to_residual_directions(answer)
    stack, labels = cache.decompose_resid(layer=-1, pos_slice=-1, return_labels=True)
    scaled = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=-1)
    attributed = einops.einsum(scaled, direction[:, 0] - direction[:, 1], "comp batch d, batch d -> comp")
    want = logits[0, -1, answer[0, 0]] - logits[0, -1, answer[0, 1]]
    bias = model.b_U[answer[0, 0]] - model.b_U[answer[0, 1]]
    torch.testing.assert_close(attributed.sum() + bias, want, atol=1e-4, rtol=1e-4)
    attrs = cache.logit_attrs(stack, tokens=answer[:, 0], incorrect_tokens=answer[:, 1], pos_slice=-1)
    torch.testing.assert_close(attrs[:, 0], attributed, atol=1e-5, rtol=1e-5)
    assert len(labels) == stack.shape[0]
    heads, head_labels = cache.stack_head_results(layer=-1, pos_slice=-1, return_labels=True)
    assert heads.shape[0] == len(head_labels) == model.cfg.n_layers * model.cfg.n_heads
    accumulated = cache.accumulated_resid(layer=-1, incl_mid=True, pos_slice=-1, return_labels=True)[0]
    assert torch.equal(accumulated[-1], cache["resid_post", 1][:, -1])


def test_activation_patching_helpers(model):
    clean, corrupted = model.to_tokens("the cat sat"), model.to_tokens("the bat sat")  # position 5 differs
    _, clean_cache = model.run_with_cache(clean)
    a, e = model.to_single_token("a"), model.to_single_token("e")

    def metric(logits):
        return logits[0, -1, a] - logits[0, -1, e]

    resid = patching.get_act_patch_resid_pre(model, corrupted, clean_cache, metric)
    assert resid.shape == (model.cfg.n_layers, clean.shape[1])
    torch.testing.assert_close(resid[0, 5], metric(model(clean)), atol=1e-5, rtol=1e-5)  # the clean run
    assert patching.get_act_patch_attn_head_out_by_pos(model, corrupted, clean_cache, metric).ndim == 3


def test_backward_hooks_and_attribution(model):
    grads = {}
    loss = model.run_with_hooks(TEXT, return_type="loss", bwd_hooks=[("hook_embed", lambda g, hook: grads.update(e=g))])
    loss.backward()
    _, cache = model.run_with_cache(TEXT, return_type="loss", incl_bwd=True, names_filter="hook_embed")
    torch.testing.assert_close(cache["hook_embed_grad"], grads["e"])


def test_optional_inputs_and_attn_result(model):
    model.set_use_attn_result(True)
    model.set_use_split_qkv_input(True)
    model.set_use_hook_mlp_in(True)
    try:
        _, cache = model.run_with_cache(TEXT)
    finally:
        model.set_use_attn_result(False)
        model.set_use_split_qkv_input(False)
        model.set_use_hook_mlp_in(False)
    torch.testing.assert_close(cache["result", 0].sum(-2) + model.b_O[0], cache["attn_out", 0], atol=1e-5, rtol=1e-5)
    assert torch.equal(cache["blocks.0.hook_q_input"][:, :, 2], cache["resid_pre", 0])
    assert torch.equal(cache["blocks.1.hook_mlp_in"], cache["resid_mid", 1])


def test_generate_and_test_prompt(model, capsys):
    out = model.generate("the cat", max_new_tokens=5, temperature=0.7, verbose=False)
    assert isinstance(out, str) and out.startswith("the cat") and len(out) == len("the cat") + 5
    assert model.generate(model.to_tokens("the cat"), max_new_tokens=3, verbose=False).shape[-1] == 8 + 3
    utils.test_prompt("the cat sat on the", " mat", model, prepend_space_to_answer=False)
    assert "Performance on answer token" in capsys.readouterr().out


def test_config_with_transformer_lens_keywords():
    cfg = ModelConfig(n_layers=1, d_model=32, n_ctx=16, d_head=8, n_heads=4, d_mlp=64, d_vocab=64, act_fn="relu",
                      normalization_type="LN")  # fmt: skip
    assert (cfg.d_ff, cfg.act, cfg.norm, cfg.d_head) == (64, "relu", "pre", 8)
    model = MiniGPT(ModelConfig(attn_only=True, positional_embedding_type="rotary"))
    assert model.cfg.positional == "rotary" and model.cfg.attn_only
    model.load_state_dict(model.state_dict())
    assert isinstance(ActivationCache({"hook_embed": torch.zeros(1, 2, 64)}, model)["embed"], torch.Tensor)


def test_utils_helpers(model):
    tokens = model.to_tokens(TEXT)
    logits = model(tokens)
    assert isinstance(utils.to_numpy(logits), np.ndarray) and utils.get_corner(model.W_Q, 2).shape == (2, 2, 2, 2)
    torch.testing.assert_close(utils.lm_cross_entropy_loss(logits, tokens), model.loss_fn(logits, tokens))
    assert 0 < float(utils.lm_accuracy(logits, tokens)) <= 1
    assert utils.remove_batch_dim(logits).shape == logits.shape[1:] and utils.get_device().type in (
        "cpu",
        "cuda",
        "mps",
    )
    scores = utils.composition_scores(model.OV[0], model.QK[1].T)
    assert scores.shape == (4, 4) and bool(((scores > 0) & (scores < 1)).all())


def test_evals(model, induction_model):
    torch.manual_seed(0)
    assert float(evals.induction_loss(induction_model)) < 1 and float(evals.sanity_check(model)) < 5


def test_factored_matrix_surface(model):
    """TransformerLens's FactoredMatrix methods, each against what it must equal."""
    ov = model.OV[1, 2]
    assert (ov.ldim, ov.mdim, ov.rdim) == (model.cfg.d_model, model.cfg.d_head, model.cfg.d_model)
    assert ov.pair[0] is ov.A
    torch.testing.assert_close(ov.get_corner(3), ov.AB[:3, :3])
    torch.testing.assert_close((ov * 2).AB, 2 * ov.AB)
    torch.testing.assert_close((2 * ov).AB, 2 * ov.AB)
    torch.testing.assert_close(ov.make_even().AB, ov.AB, atol=1e-6, rtol=1e-4)
    left, right = ov.collapse_l(), ov.collapse_r()  # diag(S) V^T and U diag(S): the product's Gram matrices
    torch.testing.assert_close(left.mT @ left, ov.AB.mT @ ov.AB, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(right @ right.mT, ov.AB @ ov.AB.mT, atol=1e-6, rtol=1e-4)
    assert model.OV[0].unsqueeze(0).shape == (1, model.cfg.n_heads, model.cfg.d_model, model.cfg.d_model)
    scores = model.all_composition_scores("V")
    assert not scores[1, :, 0].any() and not scores[0, :, 0].any() and bool((scores[0, :, 1] > 0).all())


def test_cache_head_results_and_batch_slices(model):
    _, cache = model.run_with_cache(["the cat", "a dog!!"])
    assert "blocks.0.attn.hook_result" not in cache
    cache.compute_head_results()
    torch.testing.assert_close(cache["result", 0].sum(-2) + model.b_O[0], cache["attn_out", 0], atol=1e-5, rtol=1e-5)
    first = cache.apply_slice_to_batch_dim(0)
    assert not first.has_batch_dim and torch.equal(first["resid_pre", 1], cache["resid_pre", 1][0])
    assert cache.apply_slice_to_batch_dim([1])["pattern", 0].shape[0] == 1


def test_generate_return_types_and_set_tokenizer(model):
    tokens = model.generate("the", max_new_tokens=2, return_type="tokens", seed=0, use_past_kv_cache=True)
    assert tokens.shape == (1, 4 + 2) and model.generate(tokens, max_new_tokens=1, return_type="str").startswith("the")
    tokenizer = model.tokenizer
    model.set_tokenizer(tokenizer, default_padding_side="left")
    try:
        assert model.tokenizer is tokenizer and model.to_tokens(["a", "bcd"])[0, 0] == tokenizer.pad_token_id
    finally:
        model.set_tokenizer(tokenizer)


def test_arena_full_ov_circuit_indexed_on_its_matrix_axes(induction_model):
    """ARENA's induction chapter: ``full_OV_circuit[indices, indices].AB`` on a factored ``W_E W_OV W_U``."""
    full_ov = induction_model.W_E @ induction_model.OV[1, 0] @ induction_model.W_U
    indices = torch.tensor([5, 7, 9, 11])
    sub = full_ov[indices, indices]
    torch.testing.assert_close(sub.AB, full_ov.AB[indices][:, indices], atol=1e-5, rtol=1e-5)
    assert induction_model.OV[:, 0, [1, 2]].shape == (2, 2, induction_model.cfg.d_model)
    with pytest.raises(IndexError, match="with a list, tensor or slice"):
        full_ov[3, 4]


def test_hook_ctx_is_readable_after_the_run(model):
    """ARENA reads ``model.blocks[1].attn.hook_pattern.ctx[...]`` after ``run_with_hooks``: this thread's last
    call's, until ``reset_hooks()``; another thread never sees it."""

    def keep(pattern, hook):
        hook.ctx["pattern"] = pattern.detach()

    _, cache = model.run_with_cache(TEXT)
    model.run_with_hooks(TEXT, fwd_hooks=[("blocks.1.attn.hook_pattern", keep)])
    ctx = model.blocks[1].attn.hook_pattern.ctx
    assert torch.equal(ctx["pattern"], cache["pattern", 1])
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(lambda: dict(model.blocks[1].attn.hook_pattern.ctx)).result() == {}
    model.reset_hooks()
    assert model.blocks[1].attn.hook_pattern.ctx == {}
