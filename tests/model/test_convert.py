"""GPT-2 conversion: parity with HuggingFace transformers on randomly initialised models (no download)."""

from __future__ import annotations

import pytest
import torch
from conftest import make_model

from benchmarks.reference import PlainGPT
from model import MiniGPT
from model.storage.hf_gpt2 import gpt2_config_kwargs, hf_gpt2_to_minigpt, minigpt_to_hf_gpt2

transformers = pytest.importorskip("transformers", reason="transformers (a dev dependency) is needed for GPT-2 parity")
GPT2Config, GPT2LMHeadModel, GPT2Model = transformers.GPT2Config, transformers.GPT2LMHeadModel, transformers.GPT2Model

TOL = 1e-4
HF_CONFIGS = {
    # GPT-2's own defaults in miniature: gelu_new, tied head, vocabulary of our tokenizer
    "tied-vocab-64": dict(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=4),
    # another vocabulary, exact gelu, n_inner not 4 * n_embd, another epsilon, untied head, 3 layers
    "untied-vocab-97": dict(
        vocab_size=97,
        n_positions=24,
        n_embd=48,
        n_layer=3,
        n_head=6,
        n_inner=80,
        activation_function="gelu",
        layer_norm_epsilon=1e-6,
        tie_word_embeddings=False,
    ),
}


def make_hf(name: str, seed: int = 0, **overrides) -> GPT2LMHeadModel:
    """A seeded GPT2LMHeadModel with weights shaken so that LayerNorms and biases are not trivial."""
    kwargs = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "bos_token_id": None, "eos_token_id": None}
    kwargs.update(HF_CONFIGS[name], **overrides)
    torch.manual_seed(seed)
    hf = GPT2LMHeadModel(GPT2Config(**kwargs))
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return hf.eval()


def hf_tokens(hf: GPT2LMHeadModel, seed: int = 0) -> torch.Tensor:
    cfg = hf.config
    return torch.randint(0, cfg.vocab_size, (3, cfg.n_positions), generator=torch.Generator().manual_seed(seed))


def hf_block_outputs(hf: GPT2LMHeadModel, tokens: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """HF logits and the output of every block (captured with forward hooks, before ln_f)."""
    outputs: list[torch.Tensor] = []

    def grab(_module, _inputs, output):
        outputs.append((output[0] if isinstance(output, tuple) else output).detach())

    handles = [block.register_forward_hook(grab) for block in hf.transformer.h]
    try:
        with torch.no_grad():
            logits = hf(tokens).logits
    finally:
        for handle in handles:
            handle.remove()
    return logits, outputs


@pytest.fixture(params=list(HF_CONFIGS), ids=list(HF_CONFIGS))
def hf_model(request) -> GPT2LMHeadModel:
    return make_hf(request.param)


def test_logits_and_every_block_output_match_hf(hf_model):
    """Our logits and each blocks.{l}.hook_resid_post equal HF GPT-2's within 1e-4."""
    model = MiniGPT.from_hf_gpt2(hf_model)
    tokens = hf_tokens(hf_model)
    hf_logits, hf_blocks = hf_block_outputs(hf_model, tokens)
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    assert len(hf_blocks) == model.cfg.n_layers
    for layer, hf_out in enumerate(hf_blocks):
        err = (cache["resid_post", layer] - hf_out).abs().max().item()
        assert err < TOL, f"block {layer} output differs from HF by {err:.2e}: check the c_attn split or W_O reshape"
    err = (logits - hf_logits).abs().max().item()
    assert err < TOL, f"logits differ from HF by {err:.2e}: check ln_f, the lm_head (tied/untied) or the activation"


def test_config_read_from_hf(hf_model):
    """Sizes, activation, epsilon and tying come from the GPT2Config."""
    hf_cfg = hf_model.config
    cfg, _ = hf_gpt2_to_minigpt(hf_model)
    expected_act = {"gelu_new": "gelu_new", "gelu": "gelu"}[hf_cfg.activation_function]
    got = (cfg.d_vocab, cfg.n_ctx, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.act, cfg.ln_eps, cfg.tied_embed)
    want = (
        hf_cfg.vocab_size,
        hf_cfg.n_positions,
        hf_cfg.n_embd,
        hf_cfg.n_layer,
        hf_cfg.n_head,
        expected_act,
        hf_cfg.layer_norm_epsilon,
        hf_cfg.tie_word_embeddings,
    )
    assert got == want, f"config mapping is wrong: {got} != {want}"
    assert cfg.d_ff == (hf_cfg.n_inner or 4 * hf_cfg.n_embd), "n_inner (None -> 4 * n_embd) not mapped to d_ff"
    assert (cfg.norm, cfg.positional, cfg.bias) == ("pre", "learned", True), "GPT-2 is pre-norm, learned, biased"


def test_tokenizer_only_for_the_64_symbol_vocabulary(hf_model):
    """A vocabulary of 64 gets the character tokenizer; any other gets none."""
    model = MiniGPT.from_hf_gpt2(hf_model)
    if hf_model.config.vocab_size == 64:
        assert model.tokenizer is not None, "a 64-token GPT-2 should get the character tokenizer"
    else:
        assert model.tokenizer is None, "a tokenizer was attached to a vocabulary it does not match"
        with pytest.raises(ValueError, match="no tokenizer"):
            model.to_tokens("hello")


def test_round_trip_to_hf_and_back_is_identical(hf_model):
    """from_hf -> to_hf -> from_hf gives bit-identical weights, and to_hf reproduces HF's state dict."""
    model = MiniGPT.from_hf_gpt2(hf_model)
    exported = model.to_hf_gpt2_state_dict()
    hf_state = hf_model.state_dict()
    for key, value in exported.items():
        assert torch.equal(value, hf_state[key]), f"{key} changed on the way MiniGPT -> HF"
    again = MiniGPT.from_hf_gpt2(exported, hf_model.config)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), f"{key} changed in the round trip"


@pytest.mark.parametrize("overrides", [{"act": "gelu_new"}, {"act": "relu", "tied_embed": False, "n_layers": 3}])
def test_hf_loads_our_export_and_gives_our_logits(overrides):
    """A GPT2LMHeadModel built from gpt2_config_kwargs and loaded with our export gives our logits."""
    model = make_model(seed=3, **overrides)
    if model.unembed.b_U is not None:
        with torch.no_grad():
            model.unembed.b_U.zero_()  # GPT-2's lm_head has no bias
    hf = GPT2LMHeadModel(GPT2Config(**gpt2_config_kwargs(model.cfg))).eval()
    result = hf.load_state_dict(model.to_hf_gpt2_state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys, f"key mismatch: {result}"
    tokens = torch.randint(0, model.cfg.d_vocab, (2, model.cfg.n_ctx), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        err = (hf(tokens).logits - model(tokens)).abs().max().item()
    assert err < TOL, f"HF on our exported weights differs by {err:.2e}: check the Conv1D [in, out] transposes"


def test_independent_plain_reference_agrees_with_hf():
    """benchmarks/reference.py's PlainGPT on the converted weights gives HF's logits (a third implementation)."""
    hf = make_hf("tied-vocab-64", seed=5)
    model = MiniGPT.from_hf_gpt2(hf)
    plain = PlainGPT.from_minigpt(model).eval()
    tokens = hf_tokens(hf, seed=2)
    with torch.no_grad():
        hf_logits, ours, theirs = hf(tokens).logits, model(tokens), plain(tokens)
    assert (theirs - hf_logits).abs().max().item() < TOL, "PlainGPT disagrees with HF: conversion lost a weight"
    assert (ours - theirs).abs().max().item() < TOL, "MiniGPT disagrees with the plain reference"


def test_gpt2model_and_state_dicts_with_and_without_prefix():
    """GPT2Model, and state dicts with or without 'transformer.' (plus a config), convert to the same weights."""
    hf = make_hf("tied-vocab-64", seed=7)
    _, want = hf_gpt2_to_minigpt(hf)
    bare = GPT2Model(hf.config)
    bare.load_state_dict(hf.transformer.state_dict())
    no_prefix = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    sources = {
        "GPT2Model": (bare, None),
        "prefixed state dict": (hf.state_dict(), hf.config),
        "unprefixed state dict": (no_prefix, hf.config),
        "state dict + n_head only": (no_prefix, {"n_head": 4}),
    }
    for label, (source, config) in sources.items():
        cfg, got = hf_gpt2_to_minigpt(source, config)
        assert cfg.tied_embed and cfg.n_heads == 4, f"{label}: wrong config {cfg}"
        assert got.keys() == want.keys(), f"{label}: different keys"
        for key in want:
            assert torch.equal(got[key], want[key]), f"{label}: {key} differs"


def test_gelu_pytorch_tanh_is_gelu_new():
    """HF's 'gelu_pytorch_tanh' maps to our gelu_new and gives HF's logits."""
    hf = make_hf("tied-vocab-64", activation_function="gelu_pytorch_tanh")
    model = MiniGPT.from_hf_gpt2(hf)
    assert model.cfg.act == "gelu_new", "gelu_pytorch_tanh should map to act='gelu_new'"
    tokens = hf_tokens(hf)
    with torch.no_grad():
        err = (model(tokens) - hf(tokens).logits).abs().max().item()
    assert err < TOL, f"tanh-GELU differs from HF by {err:.2e}"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
        ({"scale_attn_weights": False}, "scale_attn_weights"),
        ({"activation_function": "gelu_fast"}, "activation_function='gelu_fast'"),
    ],
)
def test_unsupported_hf_options_are_refused(overrides, message):
    """GPT-2 options MiniGPT cannot express raise ValueError naming the option."""
    hf = make_hf("tied-vocab-64", **overrides)
    with pytest.raises(ValueError, match=message):
        hf_gpt2_to_minigpt(hf)


def test_bad_state_dicts_give_clear_errors():
    """Missing keys, missing n_head, size mismatches, stray keys and non-models get typed errors."""
    hf = make_hf("tied-vocab-64")
    sd = dict(hf.state_dict())
    with pytest.raises(ValueError, match="n_head"):
        hf_gpt2_to_minigpt(sd)
    missing = {k: v for k, v in sd.items() if k != "transformer.h.1.mlp.c_fc.bias"}
    with pytest.raises(KeyError, match=r"h\.1\.mlp\.c_fc\.bias"):
        hf_gpt2_to_minigpt(missing, hf.config)
    with pytest.raises(ValueError, match="n_positions=99"):
        hf_gpt2_to_minigpt(sd, {"n_head": 4, "n_positions": 99})
    with pytest.raises(ValueError, match=r"score\.weight"):
        hf_gpt2_to_minigpt({**sd, "score.weight": torch.zeros(2, 32)}, hf.config)
    with pytest.raises(ValueError, match="tie_word_embeddings=True"):
        hf_gpt2_to_minigpt({**sd, "lm_head.weight": torch.zeros(64, 32)}, hf.config)
    with pytest.raises(TypeError, match="GPT2LMHeadModel"):
        hf_gpt2_to_minigpt(42)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"positional": "rotary"}, "positional='rotary'"),
        ({"norm": "post"}, "norm='post'"),
        ({"bias": False}, "bias=False"),
        ({"attn_only": True}, "attn_only=True"),
    ],
)
def test_non_gpt2_architectures_cannot_be_exported(overrides, message):
    """Exporting a MiniGPT GPT-2 cannot express raises ValueError naming the option."""
    model = make_model(**overrides)
    with pytest.raises(ValueError, match=message):
        model.to_hf_gpt2_state_dict()


def test_untied_unembedding_bias_must_be_zero_to_export():
    """A non-zero b_U has no place in GPT-2's lm_head, so export refuses it."""
    model = make_model(tied_embed=False)
    cfg, state = model.cfg, model.state_dict()
    with pytest.raises(ValueError, match="b_U"):
        minigpt_to_hf_gpt2(cfg, state)
