"""The run_with_cache memory guard: the size is estimated before anything runs, exactly; a cache over
``model.max_cache_bytes`` is refused with a ValueError naming the estimate, the limit and the remedies; the limit
is per model and works with names_filter; a refused call runs no forward and leaves nothing behind."""

from __future__ import annotations

import math
import re

import pytest
import torch
from conftest import CONFIG_VARIANTS, make_model

from model.network.hooks import active_hook_count


def cache_bytes(model, tokens, names_filter=None) -> int:
    """Bytes of the cache run_with_cache actually records (guard off)."""
    limit, model.max_cache_bytes = model.max_cache_bytes, float("inf")
    try:
        _, cache = model.run_with_cache(tokens, names_filter=names_filter)
    finally:
        model.max_cache_bytes = limit
    return cache.n_bytes


def counting_hook(calls: list):
    def hook(act, hook):
        calls.append(hook.name)

    return hook


@pytest.mark.parametrize("variant", list(CONFIG_VARIANTS))
def test_estimate_is_exactly_the_recorded_size(variant, tokens):
    """A limit equal to the recorded size passes and one byte less is refused, naming that size, on every config."""
    model = make_model(**CONFIG_VARIANTS[variant])
    for names_filter in (None, lambda name: True, "blocks.1.hook_resid_post"):
        n_bytes = cache_bytes(model, tokens, names_filter)
        model.max_cache_bytes = n_bytes
        model.run_with_cache(tokens, names_filter=names_filter)  # exactly at the limit: allowed
        model.max_cache_bytes = n_bytes - 1
        with pytest.raises(ValueError, match=f"would take {n_bytes:,} bytes") as err:
            model.run_with_cache(tokens, names_filter=names_filter)
        assert f"model.max_cache_bytes = {n_bytes - 1:,} bytes" in str(err.value), f"limit not named: {err.value}"


def test_refusal_names_estimate_limit_and_remedies(tiny_model, tokens):
    """The message names the estimate, the limit, names_filter, the largest activations and a limit that works."""
    n_bytes = cache_bytes(tiny_model, tokens)
    tiny_model.max_cache_bytes = 1000
    with pytest.raises(ValueError) as err:
        tiny_model.run_with_cache(tokens)
    message = str(err.value)
    shapes = tiny_model.hook_shapes(*tokens.shape)
    largest = max(math.prod(s) for n, s in shapes.items() if tiny_model.in_default_cache(n))
    assert f"{n_bytes:,} bytes" in message and "1,000 bytes" in message, f"estimate or limit missing: {message}"
    assert "names_filter" in message and "smaller batch" in message, f"no remedy suggested: {message}"
    named = re.search(r"largest: ([^)]*)\)", message).group(1).split(", ")
    assert all(math.prod(shapes[n]) == largest for n in named), f"'largest' lists smaller activations: {named}"
    suggested = int(re.search(r"model\.max_cache_bytes = (\d+) lets this call through", message).group(1))
    tiny_model.max_cache_bytes = suggested
    _, cache = tiny_model.run_with_cache(tokens)
    assert cache.n_bytes == n_bytes, "the limit the message suggests does not let the same call through"


def test_refused_call_runs_nothing_and_leaves_nothing_behind(tiny_model, tokens):
    """A refused call fires no hook (its own or an enclosing one), and afterwards hooks and results are as before."""
    with torch.no_grad():
        clean = tiny_model(tokens)
    fired: list[str] = []
    tiny_model.max_cache_bytes = 1
    with tiny_model.hooks([("hook_embed", counting_hook(fired))]):
        with pytest.raises(ValueError, match=r"over the limit model\.max_cache_bytes"):
            tiny_model.run_with_cache(tokens, fwd_hooks=[(lambda name: True, counting_hook(fired))])
        assert active_hook_count() == 1, "the refused call changed the enclosing hooks"
    assert fired == [], f"the refused call ran a forward (hooks fired on {sorted(set(fired))})"
    assert active_hook_count() == 0, "a hook is still active after the refused call"
    assert not any(point.is_active() for point in tiny_model.hook_dict.values()), "a cache is still recording"
    assert tiny_model.max_cache_bytes == 1, "the refused call changed the limit"
    tiny_model.max_cache_bytes = 4 * 2**30
    logits, cache = tiny_model.run_with_cache(tokens)
    assert torch.equal(logits, clean) and len(cache) > 0, "the model does not run normally after a refused call"


def test_names_filter_under_the_limit_passes(tiny_model, tokens):
    """With a limit between a filtered and the full cache, the filtered call (any filter form) passes."""
    full = cache_bytes(tiny_model, tokens)
    tiny_model.max_cache_bytes = full // 4
    with pytest.raises(ValueError, match="names_filter"):
        tiny_model.run_with_cache(tokens)
    for names_filter in ("blocks.0.hook_resid_post", ["hook_embed", "blocks.1.attn.hook_z"], lambda n: "pattern" in n):
        _, cache = tiny_model.run_with_cache(tokens, names_filter=names_filter)
        assert 0 < cache.n_bytes <= full // 4, f"filter {names_filter!r} recorded {cache.n_bytes} bytes"
    z, result = "blocks.0.attn.hook_z", "blocks.0.attn.hook_result"
    tiny_model.max_cache_bytes = cache_bytes(tiny_model, tokens, [z])
    tiny_model.run_with_cache(tokens, names_filter=[z, z])  # a name listed twice is recorded (and counted) once
    with pytest.raises(ValueError, match=result.replace(".", r"\.")):
        tiny_model.run_with_cache(tokens, names_filter=[z, result])  # hook_result counts when named


def test_limit_is_per_model_and_scales_with_dtype(tokens):
    """One model's limit does not touch another's; a float64 model's estimate is twice its float32 one."""
    small, other = make_model(), make_model()
    n_bytes = cache_bytes(small, tokens)
    small.max_cache_bytes = n_bytes
    other.run_with_cache(tokens)
    assert other.max_cache_bytes == 4 * 2**30, "setting one model's limit changed another's"
    double = make_model().double()
    double.max_cache_bytes = n_bytes
    with pytest.raises(ValueError, match=f"would take {2 * n_bytes:,} bytes"):
        double.run_with_cache(tokens)


def test_default_limit_refuses_a_multi_gib_cache_before_allocating(tiny_model):
    """The default 4 GiB limit refuses a batch whose cache would exceed it, without running a forward."""
    shapes = tiny_model.hook_shapes(1, 16)
    per_sequence = sum(math.prod(s) for n, s in shapes.items() if tiny_model.in_default_cache(n)) * 4
    batch = 4 * 2**30 // per_sequence + 1
    tokens = torch.zeros(batch, 16, dtype=torch.long)
    fired: list[str] = []
    with pytest.raises(ValueError, match=r"\(4,096\.0 MiB\)"):
        tiny_model.run_with_cache(tokens, fwd_hooks=[("hook_embed", counting_hook(fired))])
    assert fired == [], "the forward ran before the guard refused"


@pytest.mark.parametrize(
    ("limit", "error", "message"),
    [
        ("1GB", TypeError, "must be a number of bytes, got '1GB'"),
        (True, TypeError, "must be a number of bytes, got True"),
        (None, TypeError, "must be a number of bytes, got None"),
        (-1, ValueError, "must be >= 0 bytes, got -1"),
        (float("nan"), ValueError, "must be >= 0 bytes, got nan"),
    ],
)
def test_bad_limit_is_a_clear_error(tiny_model, tokens, limit, error, message):
    """A limit that is not a non-negative number raises a typed error naming it, not a comparison TypeError."""
    tiny_model.max_cache_bytes = limit
    with pytest.raises(error, match=re.escape(message)):
        tiny_model.run_with_cache(tokens)


def test_infinite_limit_turns_the_guard_off(tiny_model, tokens):
    """max_cache_bytes = inf records everything, the same as the default on a small input."""
    _, default = tiny_model.run_with_cache(tokens, names_filter=lambda n: True)
    tiny_model.max_cache_bytes = float("inf")
    _, unlimited = tiny_model.run_with_cache(tokens, names_filter=lambda n: True)
    assert list(unlimited) == list(default), "an infinite limit changed what was recorded"
