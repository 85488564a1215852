"""Property-based tests (hypothesis) of the three things every user touches: text, hook names and DLA.

- Tokenizer: any unicode text either round-trips to its normalised form or is refused with a
  ValueError naming every unknown character at its position; any id list decodes or names the bad id.
- Hook names: any string that is not a hook name is a KeyError with a suggestion, at every entry
  point that takes names; every real name works with run_with_hooks and as a run_with_cache filter.
- DLA: on random small configs, seeds, tokens and targets, the rows sum to the logit (difference).

Example counts are kept small so the file runs in well under 30 s.
"""

from __future__ import annotations

import functools
import string

import pytest
import torch
from conftest import CONFIG_VARIANTS, make_model
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from interp import direct_logit_attribution
from model import MiniGPT, Tokenizer
from model.network.hooks import active_hook_count

TOK = Tokenizer()
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOWER = settings(max_examples=30, deadline=None)


@functools.cache
def variant(name: str) -> MiniGPT:
    """One tiny model per test config, built once."""
    return make_model(**CONFIG_VARIANTS[name])


# ------------------------------------------------------------------------------------------ tokenizer
@FAST
@given(st.text(max_size=60))
def test_any_text_round_trips_or_names_every_unknown_character(text):
    """encode(text) decodes to normalize(text), or raises a ValueError naming each unknown character and position."""
    unknown = TOK.unknown_chars(text)
    if not unknown:
        assert TOK.decode(TOK.encode(text)) == TOK.normalize(text), "round trip lost or changed characters"
        return
    with pytest.raises(ValueError) as info:
        TOK.encode(text)
    message = str(info.value)
    assert message.startswith(f"{len(unknown)} unknown character"), f"count of unknown characters wrong: {message}"
    for position, char in unknown[:10]:
        assert f"{char!r} at position {position}" in message, f"{char!r} at {position} not named: {message}"
    assert 'unknown="replace"' in message, "the message must say how to opt in to <unk>"


@FAST
@given(st.text(max_size=60))
def test_replace_and_drop_agree_with_unknown_chars(text):
    """unknown="replace" puts one <unk> per unknown character; unknown="drop" leaves exactly the known ones."""
    n_unknown = len(TOK.unknown_chars(text))
    replaced, dropped = TOK.encode(text, unknown="replace"), TOK.encode(text, unknown="drop")
    assert replaced.count(TOK.unk_id) == n_unknown, "replace must map each unknown character to one <unk>"
    assert [i for i in replaced if i != TOK.unk_id] == dropped, "drop must equal replace without the <unk>s"


@FAST
@given(st.lists(st.integers(-5, 70), max_size=20))
def test_decode_accepts_every_id_in_range_and_names_the_first_outside(ids):
    """decode(ids) gives one symbol per id in [0, 64), else a ValueError naming the first bad id."""
    bad = [i for i in ids if not 0 <= i < 64]
    if not bad:
        assert TOK.decode(ids) == "".join(TOK.symbols[i] for i in ids)
        return
    with pytest.raises(ValueError, match=rf"token id {bad[0]} is outside the vocabulary \[0, 64\)"):
        TOK.decode(ids)


@FAST
@given(st.text(alphabet=string.ascii_letters + string.digits + " .,!?'\n", max_size=15))
def test_model_text_round_trip(text):
    """model.to_string(model.to_tokens(text)) is <bos> + the normalised text."""
    model = variant("locked")
    assert model.to_string(model.to_tokens(text)) == "<bos>" + TOK.normalize(text)


# ------------------------------------------------------------------------------------------ hook names
def _misspell(name: str, data) -> str:
    """``name`` with one character inserted, deleted or replaced."""
    i = data.draw(st.integers(0, len(name) - 1))
    kind = data.draw(st.sampled_from(["insert", "delete", "replace"]))
    char = data.draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz_.0123456789"))
    if kind == "insert":
        return name[:i] + char + name[i:]
    if kind == "delete":
        return name[:i] + name[i + 1 :]
    return name[:i] + char + name[i + 1 :]


ENTRY_POINTS = {
    "run_with_hooks": lambda m, name, tokens: m.run_with_hooks(tokens, fwd_hooks=[(name, lambda a, h: None)]),
    "run_with_cache": lambda m, name, tokens: m.run_with_cache(tokens, names_filter=name),
    "hooks": lambda m, name, tokens: m.hooks([(name, lambda a, h: None)]).__enter__(),
}


@FAST
@given(data=st.data(), config=st.sampled_from(list(CONFIG_VARIANTS)), entry=st.sampled_from(list(ENTRY_POINTS)))
def test_any_non_hook_name_is_a_key_error_with_a_suggestion(data, config, entry):
    """Any string that is not a hook name raises KeyError naming it and suggesting real names (or where to look)."""
    model = variant(config)
    real = data.draw(st.sampled_from(model.hook_names))
    name = data.draw(st.one_of(st.text(max_size=30), st.just(_misspell(real, data))))
    assume(name not in model.hook_names)
    with pytest.raises(KeyError) as info:
        ENTRY_POINTS[entry](model, name, torch.zeros(1, 3, dtype=torch.long))
    message = info.value.args[0]
    assert message.startswith(f"unknown hook {name!r}; "), f"the message must name the bad hook: {message}"
    if "did you mean" in message:
        suggested = message.split("did you mean ", 1)[1]
        assert any(repr(n) in suggested for n in model.hook_names), f"suggestions are not hook names: {message}"
    else:
        assert "list them with model.hook_names" in message, f"no suggestion and no pointer: {message}"
    assert active_hook_count() == 0, "a refused hook name left a hook behind"


@FAST
@given(data=st.data(), config=st.sampled_from(list(CONFIG_VARIANTS)))
def test_misspelt_hook_names_suggest_the_intended_one(data, config):
    """One typo away from a real name: the KeyError says 'did you mean' (the suggestion list is never empty)."""
    model = variant(config)
    real = data.draw(st.sampled_from(model.hook_names))
    name = _misspell(real, data)
    assume(name not in model.hook_names)
    with pytest.raises(KeyError, match="did you mean"):
        model.run_with_hooks(torch.zeros(1, 2, dtype=torch.long), fwd_hooks=[(name, lambda a, h: None)])


@FAST
@given(data=st.data(), config=st.sampled_from(list(CONFIG_VARIANTS)), pos=st.integers(1, 16))
def test_every_real_hook_name_works_with_hooks_and_cache(data, config, pos):
    """Each hook name fires once in run_with_hooks (logits unchanged) and is the only key of its filtered cache."""
    model = variant(config)
    name = data.draw(st.sampled_from(model.hook_names))
    tokens = torch.randint(0, 64, (2, pos), generator=torch.Generator().manual_seed(pos))
    seen = []

    def record(act, hook):
        seen.append((hook.name, tuple(act.shape)))

    with torch.no_grad():
        plain = model(tokens)
        hooked = model.run_with_hooks(tokens, fwd_hooks=[(name, record)])
        _, cache = model.run_with_cache(tokens, names_filter=name)
        _, by_predicate = model.run_with_cache(tokens, names_filter=lambda n: n == name)
    expected_shape = model.hook_shapes(2, pos)[name]
    assert seen == [(name, expected_shape)], f"{name} fired {len(seen)} times or with the wrong shape: {seen}"
    if name.endswith("hook_result"):  # a hooked hook_result sums the heads one by one: equal to float rounding
        assert (hooked - plain).abs().max() < 1e-5, f"a hook on {name} that returns None changed the logits"
    else:
        assert torch.equal(hooked, plain), f"a hook on {name} that returns None changed the logits"
    assert list(cache) == [name] and list(by_predicate) == [name], f"the cache filter on {name} is wrong"
    assert tuple(cache[name].shape) == expected_shape, f"cached {name} has the wrong shape"
    assert active_hook_count() == 0


# ------------------------------------------------------------------------------------------ DLA
@st.composite
def small_configs(draw) -> dict:
    """A small additive (pre-norm or no-norm) config."""
    d_model = draw(st.sampled_from([8, 16, 24, 32]))
    n_heads = draw(st.sampled_from([h for h in (1, 2, 4) if d_model % h == 0 and (d_model // h) % 2 == 0]))
    return {
        "d_model": d_model,
        "n_heads": n_heads,
        "n_layers": draw(st.integers(1, 3)),
        "d_ff": draw(st.sampled_from([8, 32])),
        "n_ctx": 12,
        "positional": draw(st.sampled_from(["learned", "sinusoidal", "rotary"])),
        "norm": draw(st.sampled_from(["pre", "none"])),
        "act": draw(st.sampled_from(["relu", "gelu", "gelu_new"])),
        "attn_only": draw(st.booleans()),
        "tied_embed": draw(st.booleans()),
        "bias": draw(st.booleans()),
    }


@SLOWER
@given(
    config=small_configs(),
    seed=st.integers(0, 2**16),
    shape=st.tuples(st.integers(1, 3), st.integers(1, 12)),
    per=st.sampled_from(["layer", "component", "head", "neuron"]),
    use_contrast=st.booleans(),
)
def test_dla_sums_to_the_logit_on_random_configs(config, seed, shape, per, use_contrast):
    """For random small configs, seeds, tokens and targets, DLA rows sum to the logit (difference) to 1e-4."""
    model = make_model(seed=seed, **config)
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 64, shape, generator=gen)
    target = torch.randint(0, 64, shape, generator=gen)
    contrast = torch.randint(0, 64, shape, generator=gen) if use_contrast else None
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    df = direct_logit_attribution(model, tokens, cache, target=target, contrast=contrast, per=per)
    total = torch.tensor(df.groupby(["batch", "pos"]).contribution.sum().to_numpy()).reshape(shape)
    expected = logits.gather(-1, target[..., None])[..., 0].double()
    if use_contrast:
        expected = expected - logits.gather(-1, contrast[..., None])[..., 0].double()
    err = (total - expected).abs().max().item()
    assert err < 1e-4 * max(1.0, expected.abs().max().item()), f"DLA misses the logit by {err} on {config}"
