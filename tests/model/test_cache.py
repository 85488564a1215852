"""run_with_cache and ActivationCache: bit-identical logits, contents, shorthand keys, detachment, device."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from conftest import CONFIG_VARIANTS, make_model

from model import ActivationCache
from model.network.cache import act_name


@pytest.mark.parametrize("variant", list(CONFIG_VARIANTS))
def test_run_with_cache_logits_are_bit_identical(variant, tokens):
    """Caching everything (hook_result included) leaves the logits bit-identical to a plain forward."""
    model = make_model(**CONFIG_VARIANTS[variant])
    with torch.no_grad():
        clean = model(tokens)
        default, _ = model.run_with_cache(tokens)
        everything, cache = model.run_with_cache(tokens, names_filter=lambda name: True)
    assert torch.equal(default, clean), "the default cache changed the logits"
    assert torch.equal(everything, clean), "caching hook_result (or a LayerNorm scale) changed the logits"
    assert list(cache) == model.hook_names, "a full names_filter should record every hook point"


def test_default_cache_holds_every_hook_but_hook_result(tiny_model, tokens):
    """The default cache has every hook point except the optional ones (attn.hook_result, the per-head inputs and
    hook_mlp_in, made only when asked for), each with its documented shape."""
    _, cache = tiny_model.run_with_cache(tokens)
    optional = ("hook_result", "hook_attn_in", "hook_q_input", "hook_k_input", "hook_v_input", "hook_mlp_in")
    expected = [n for n in tiny_model.hook_names if not n.endswith(optional)]
    assert list(cache) == expected, f"default cache keys differ: {set(cache) ^ set(expected)}"
    b, p, h, d, dh, f = *tokens.shape, 4, 32, 8, 64
    shapes = {
        "hook_embed": (b, p, d),
        "blocks.0.hook_resid_pre": (b, p, d),
        "blocks.0.ln1.hook_scale": (b, p, 1),
        "blocks.0.attn.hook_q": (b, p, h, dh),
        "blocks.0.attn.hook_z": (b, p, h, dh),
        "blocks.0.attn.hook_pattern": (b, h, p, p),
        "blocks.0.attn.hook_attn_scores": (b, h, p, p),
        "blocks.1.mlp.hook_post": (b, p, f),
        "ln_final.hook_normalized": (b, p, d),
    }
    for name, shape in shapes.items():
        assert tuple(cache[name].shape) == shape, f"{name} has shape {tuple(cache[name].shape)}, documented {shape}"


def test_hook_result_only_when_named(tiny_model, tokens):
    """hook_result is not recorded by default; cache["result", l] is computed from z and W_O (as TransformerLens
    does), equals the recorded one, and a cache with neither has a KeyError with the hint."""
    _, cache = tiny_model.run_with_cache(tokens)
    assert ("result", 0) not in cache, "hook_result should not be in the default cache"
    _, named = tiny_model.run_with_cache(tokens, names_filter=["blocks.0.attn.hook_result", "blocks.0.hook_attn_out"])
    assert list(named) == ["blocks.0.attn.hook_result", "blocks.0.hook_attn_out"], f"got {list(named)}"
    assert named["result", 0].shape == (*tokens.shape, 4, 32), "hook_result must be [batch, pos, head, d_model]"
    err = (cache["result", 0] - named["result", 0]).abs().max().item()
    print(f"hook_result computed from z vs recorded: max |diff| {err:.2e}")
    assert err < 1e-6, "cache['result', l] computed from z must equal the recorded hook_result"
    with pytest.raises(KeyError, match="hook_result is only recorded when asked for"):
        named["result", 1]


def test_names_filter_forms(tiny_model, tokens):
    """names_filter takes a name, a list of names or a predicate; an unknown name is a KeyError with suggestions."""
    _, one = tiny_model.run_with_cache(tokens, names_filter="blocks.1.hook_resid_post")
    _, pred = tiny_model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    assert list(one) == ["blocks.1.hook_resid_post"], f"a single name recorded {list(one)}"
    assert list(pred) == ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"], f"predicate gave {list(pred)}"
    with pytest.raises(KeyError, match=r"did you mean 'blocks\.1\.hook_resid_post'"):
        tiny_model.run_with_cache(tokens, names_filter=["blocks.1.hook_resid_pots"])


def test_shorthand_keys(tiny_model, tokens):
    """TransformerLens shorthand keys reach the same tensors as full names."""
    _, cache = tiny_model.run_with_cache(tokens)
    pairs = {
        ("pattern", 1): "blocks.1.attn.hook_pattern",
        ("resid_pre", 0): "blocks.0.hook_resid_pre",
        ("resid_mid", 1): "blocks.1.hook_resid_mid",
        ("mlp_out", 0): "blocks.0.hook_mlp_out",
        ("post", 1): "blocks.1.mlp.hook_post",
        ("q", 0): "blocks.0.attn.hook_q",
        ("scale", 1, "ln2"): "blocks.1.ln2.hook_scale",
        ("scale", 0): "blocks.0.ln1.hook_scale",
        ("embed",): "hook_embed",
        ("scale",): "ln_final.hook_scale",
        "embed": "hook_embed",
        "pos_embed": "hook_pos_embed",
        "normalized": "ln_final.hook_normalized",
    }
    for key, name in pairs.items():
        assert cache[key] is cache[name], f"cache[{key!r}] is not cache[{name!r}]"
        assert key in cache, f"{key!r} in cache should be True"


def test_shorthand_errors(tiny_model, tokens):
    """Unknown shorthands, missing layers and non-string keys raise clear errors; `in` says False."""
    _, cache = tiny_model.run_with_cache(tokens)
    with pytest.raises(KeyError, match=r"shorthand 'pattern' needs a layer, e\.g\. cache\['pattern', 0\]"):
        cache["pattern"]
    with pytest.raises(KeyError, match="unknown shorthand 'patern'; known shorthands are"):
        cache["patern", 0]
    with pytest.raises(KeyError, match=r"'blocks\.9\.attn\.hook_pattern' is not in this cache"):
        cache["pattern", 9]
    with pytest.raises(TypeError, match="cache keys are hook names or"):
        cache[3]  # type: ignore[index]
    assert ("patern", 0) not in cache and 3 not in cache and "pattern" not in cache, "`in` should not raise"
    assert act_name("attn_out", 2) == "blocks.2.hook_attn_out", "act_name builds full names"


def test_cache_is_detached_read_only_and_holds_no_model(tokens):
    """Cached tensors carry no graph, the mapping cannot be written, and it keeps no reference to the model."""
    model = make_model()
    logits, cache = model.run_with_cache(tokens)  # grad enabled and parameters require grad
    assert logits.requires_grad, "forward output should still carry gradients"
    assert all(not t.requires_grad and t.grad_fn is None for t in cache.values()), "cache tensors are not detached"
    with pytest.raises(TypeError):
        cache["hook_embed"] = torch.zeros(1)  # type: ignore[index]
    ref = weakref.ref(model)
    del model, logits
    gc.collect()
    assert ref() is None, "the cache (or a hook) keeps the model alive"
    assert cache["embed"].shape[0] == tokens.shape[0], "the cache must outlive the model"


def test_cache_device_argument(tiny_model, tokens):
    """run_with_cache(device=...) and cache.to(...) put every tensor on that device, values unchanged."""
    _, on_cpu = tiny_model.run_with_cache(tokens)
    _, on_meta = tiny_model.run_with_cache(tokens, device="meta")
    assert all(t.device.type == "meta" for t in on_meta.values()), "device='meta' left tensors elsewhere"
    assert list(on_meta) == list(on_cpu), "the device argument changed which activations were recorded"
    moved = on_cpu.to("meta")
    assert isinstance(moved, ActivationCache) and all(t.device.type == "meta" for t in moved.values())
    assert on_cpu["embed"].device.type == "cpu", "cache.to must return a copy, not move the original"
    _, explicit = tiny_model.run_with_cache(tokens, device=torch.device("cpu"))
    assert all(torch.equal(explicit[n], on_cpu[n]) for n in on_cpu), "device='cpu' changed values"


def test_run_with_cache_return_types_and_hooks(tiny_model, tokens):
    """run_with_cache passes return_type through, and its fwd_hooks show in both the output and the cache."""
    loss, _ = tiny_model.run_with_cache(tokens, return_type="loss")
    assert loss.ndim == 0, "return_type='loss' should give a scalar"

    def zero_embed(act, hook):
        return torch.zeros_like(act)

    _, cache = tiny_model.run_with_cache(tokens, names_filter="hook_embed", fwd_hooks=[("hook_embed", zero_embed)])
    assert torch.count_nonzero(cache["embed"]) == 0, "the cache should record the hooked activation"


def test_cache_size_and_repr(tiny_model, tokens):
    """n_bytes counts every cached element; repr names the cache size."""
    _, cache = tiny_model.run_with_cache(tokens)
    assert cache.n_bytes == sum(t.numel() * 4 for t in cache.values()), "n_bytes is not the float32 byte count"
    assert repr(cache).startswith(f"ActivationCache({len(cache)} activations"), f"repr is {cache!r}"
