"""The model-side TransformerLens API: add_hook / reset_hooks state (per model, per thread), hook.ctx within a call,
set_use_attn_result, TransformerLens config keywords, padding with an attention mask, token helpers, generate."""

from __future__ import annotations

import threading

import pytest
import torch
from conftest import make_model

from model import ModelConfig


def test_add_hook_persists_until_reset_and_only_in_its_thread():
    model = make_model()
    tokens = torch.randint(3, 64, (2, 6), generator=torch.Generator().manual_seed(0))
    clean = model(tokens)
    model.add_hook("blocks.0.hook_attn_out", lambda act, hook: act * 0)
    hooked_twice = [model(tokens), model(tokens)]
    seen_elsewhere = []
    worker = threading.Thread(target=lambda: seen_elsewhere.append(model(tokens)))
    worker.start()
    worker.join()
    per_call = model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", lambda act, hook: act)])
    model.reset_hooks()
    diff = (hooked_twice[0] - clean).abs().max().item()
    print(f"add_hook changes the logits by {diff:.3f}; another thread sees clean logits: "
          f"{torch.equal(seen_elsewhere[0], clean)}")  # fmt: skip
    assert diff > 1e-3 and torch.equal(hooked_twice[0], hooked_twice[1]), "an added hook fires on every forward"
    assert torch.equal(seen_elsewhere[0], clean), "another thread must not see this thread's add_hook"
    assert torch.equal(per_call, hooked_twice[0]), "run_with_hooks adds to the added hooks"
    assert torch.equal(model(tokens), clean) and model.hook_list() == [], "reset_hooks must remove them"


def test_permanent_hooks_survive_reset_and_ctx_lives_for_one_call():
    model = make_model()
    tokens = torch.randint(3, 64, (1, 5), generator=torch.Generator().manual_seed(1))
    model.add_hook("hook_embed", lambda act, hook: None, is_permanent=True)
    model.reset_hooks()
    assert len(model.hook_list()) == 1, "a permanent hook survives reset_hooks()"
    model.reset_hooks(including_permanent=True)
    assert model.hook_list() == []
    seen = []

    def store(act, hook):
        hook.ctx["norm"] = act.norm()

    def read(act, hook):
        seen.append(model.hook_dict["blocks.0.hook_attn_out"].ctx.get("norm"))

    model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_attn_out", store), ("blocks.1.hook_attn_out", read)])
    model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_attn_out", read)])
    assert seen[0] is not None and seen[1] is None, "hook.ctx lasts one call, shared by that call's hooks"


def test_set_use_attn_result_and_result_alias():
    model = make_model()
    tokens = torch.randint(3, 64, (2, 6), generator=torch.Generator().manual_seed(2))
    _, plain = model.run_with_cache(tokens)
    model.set_use_attn_result(True)
    _, with_result = model.run_with_cache(tokens)
    assert "blocks.1.attn.hook_result" not in plain and "blocks.1.attn.hook_result" in with_result
    err = (plain["result", 1] - with_result["result", 1]).abs().max().item()
    print(f"hook_result from z vs recorded: {err:.2e}")
    assert err < 1e-6


def test_transformer_lens_config_keywords():
    cfg = ModelConfig(d_mlp=128, normalization_type="LN", act_fn="gelu_new", positional_embedding_type="rotary")
    assert (cfg.d_ff, cfg.norm, cfg.act, cfg.positional) == (128, "pre", "gelu_new", "rotary")
    assert (cfg.d_mlp, cfg.normalization_type, cfg.act_fn, cfg.positional_embedding_type) == (128, "LN", "gelu_new",
                                                                                              "rotary")  # fmt: skip
    assert ModelConfig(normalization_type=None).norm == "none"
    with pytest.raises(ValueError, match="norm="):
        ModelConfig(normalization_type="RMS")


def test_padding_with_the_attention_mask_gives_each_texts_own_logits():
    model = make_model()
    texts = ["ab", "abcde"]
    for side in ("right", "left"):
        tokens = model.to_tokens(texts, padding_side=side)
        mask = model.attention_mask(tokens, side)
        logits = model(tokens, attention_mask=mask)
        alone = model(model.to_tokens(texts[0]))
        rows = mask[0].bool()
        err = (logits[0, rows] - alone[0]).abs().max().item()
        print(f"{side} padding: the short text's logits vs alone, max |diff| {err:.2e}")
        assert err < 1e-5, f"{side}-padded text must get the logits it gets alone"


def test_token_helpers_and_generate():
    model = make_model()
    tokens = model.to_tokens("abcab")
    assert model.get_token_position("b", tokens) == 2 and model.get_token_position("b", tokens, mode="last") == 5
    assert model.to_str_tokens("ab") == ["<bos>", "a", "b"] and model.tokenizer.bos_token_id == model.to_single_token(
        "<bos>")  # fmt: skip
    ids = model.random_tokens(50, 10, seed=0)
    assert (ids >= 3).all() and model.random_tokens(50, 10, seed=0, exclude_special=False).min() < 3
    out = model.generate(tokens, max_new_tokens=4, seed=0, verbose=False, stop_at_eos=True)
    assert out.shape[1] <= tokens.shape[1] + 4 and torch.equal(out[:, : tokens.shape[1]], tokens)


@pytest.mark.parametrize("overrides", [{}, {"bias": False, "tied_embed": False}], ids=["tied", "untied-no-bias"])
def test_b_U_reads_as_zeros_where_the_model_has_none(overrides):
    """A tied model (or one without biases) has ``unembed.b_U`` as zeros, as TransformerLens does (its Main_Demo
    sorts it): a tensor of ``[d_vocab]``, on the model's dtype and device, in no checkpoint and no parameter count, and
    no direct logit attribution row."""
    from interp import direct_logit_attribution

    model = make_model(**overrides)
    assert isinstance(model.unembed.b_U, torch.Tensor) and not model.unembed.has_bias
    assert torch.equal(model.b_U, torch.zeros(64)) and model.b_U.sort().values.shape == (64,)
    assert "unembed.b_U" not in model.state_dict(), "the zeros must not enter a checkpoint"
    assert sum(p.numel() for p in model.parameters()) == model.cfg.n_params
    assert model.half().unembed.b_U.dtype == torch.float16, "the zeros follow the model's dtype"
    model = make_model(**overrides)
    frame = direct_logit_attribution(model, model.to_tokens("hello"))
    assert "b_U" not in set(frame.component), "a bias the model does not have gets no DLA row"
    untied = make_model(tied_embed=False)
    assert untied.unembed.has_bias and "unembed.b_U" in dict(untied.named_parameters())
