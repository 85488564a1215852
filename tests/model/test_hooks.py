"""Per-call hooks: thread isolation, clean-up after exceptions, no-op hooks, contexts and error messages."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from conftest import CONFIG_VARIANTS, make_model

from model.network.hooks import active_hook_count

N_THREADS = 8
ABLATIONS = [(layer, head) for layer in range(2) for head in range(4)]  # 8 different head ablations


def zero_head(head: int, before=None):
    """A hook zeroing one head's z; ``before()`` runs first (e.g. to wait on barriers)."""

    def hook(z, hook):
        if before is not None:
            before()
        z = z.clone()
        z[:, :, head] = 0.0
        return z

    return hook


def run_ablation(model, tokens, layer: int, head: int, before=None) -> torch.Tensor:
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero_head(head, before))])


def test_threads_running_different_ablations_match_running_alone(tokens):
    """8 threads ablating different heads at the same time on one model get their solo results, bit for bit."""
    model = make_model()
    with torch.no_grad():
        clean = model(tokens)
    alone = [run_ablation(model, tokens, layer, head) for layer, head in ABLATIONS]
    for i, result in enumerate(alone):
        assert not torch.equal(result, clean), f"ablation {ABLATIONS[i]} changes nothing; the test would be blind"
        assert not any(torch.equal(result, other) for other in alone[:i]), "two ablations give equal results"
    inside, release = threading.Barrier(N_THREADS + 1), threading.Barrier(N_THREADS + 1)

    def first_call_waits():
        inside.wait(timeout=60)  # all 8 threads are now inside a hooked forward...
        release.wait(timeout=60)  # ...and stay there while the plain forward below runs

    def worker(i: int) -> list[torch.Tensor]:
        layer, head = ABLATIONS[i]
        outs = [run_ablation(model, tokens, layer, head, before=first_call_waits)]
        return outs + [run_ablation(model, tokens, layer, head) for _ in range(5)]

    def plain() -> tuple[torch.Tensor, int]:
        inside.wait(timeout=60)
        with torch.no_grad():
            out = model(tokens)
        count = active_hook_count()
        release.wait(timeout=60)
        return out, count

    with ThreadPoolExecutor(max_workers=N_THREADS + 1) as pool:
        futures = [pool.submit(worker, i) for i in range(N_THREADS)]
        plain_future = pool.submit(plain)
        results = [f.result(timeout=120) for f in futures]
        plain_out, plain_count = plain_future.result(timeout=120)
    assert plain_count == 0, "a thread with no hooks sees hooks of other threads"
    assert torch.equal(plain_out, clean), "a plain forward during 8 hooked forwards was affected by their hooks"
    for i, outs in enumerate(results):
        for out in outs:
            assert torch.equal(out, alone[i]), f"thread {i} {ABLATIONS[i]} got another thread's hooks (or none)"


def test_exception_in_hook_leaves_no_hook_behind(tokens):
    """A hook that raises propagates its error, and afterwards no hook is active and forward is clean."""
    model = make_model()
    with torch.no_grad():
        clean = model(tokens)

    def boom(act, hook):
        raise RuntimeError("boom in " + hook.name)

    with pytest.raises(RuntimeError, match=r"boom in blocks\.1\.attn\.hook_pattern"):
        model.run_with_hooks(
            tokens, fwd_hooks=[("blocks.0.attn.hook_z", zero_head(0)), ("blocks.1.attn.hook_pattern", boom)]
        )
    assert active_hook_count() == 0, "hooks survived an exception raised inside a hook"
    with torch.no_grad():
        assert torch.equal(model(tokens), clean), "forward after the failed call is not the clean forward"
        with pytest.raises(RuntimeError):
            model.run_with_cache(tokens, fwd_hooks=[("hook_embed", boom)])
        logits, _ = model.run_with_cache(tokens)
    assert torch.equal(logits, clean) and active_hook_count() == 0, "run_with_cache after a failure is not clean"


def test_exception_in_with_body_restores_outer_hooks(tokens):
    """An exception inside a nested `with model.hooks()` removes the inner hooks and keeps the outer ones."""
    model = make_model()
    outer_only = run_ablation(model, tokens, 0, 1)
    outer = [("blocks.0.attn.hook_z", zero_head(1))]
    with model.hooks(outer):
        with pytest.raises(KeyError, match="raised in body"), model.hooks([("blocks.1.attn.hook_z", zero_head(2))]):
            raise KeyError("raised in body")
        assert active_hook_count() == 1, "inner hook survived the exception, or the outer one was lost"
        with torch.no_grad():
            assert torch.equal(model(tokens), outer_only), "outer hooks not restored after the inner exception"
    assert active_hook_count() == 0, "hooks outlived their with block"


@pytest.mark.parametrize("variant", list(CONFIG_VARIANTS))
@pytest.mark.parametrize("kind", ["none", "same", "clone"])
def test_hooks_that_change_nothing_leave_logits_bit_identical(variant, kind, tokens):
    """Hooks on every hook point returning None, the same tensor or a copy leave logits bit-identical."""
    model = make_model(**CONFIG_VARIANTS[variant])
    noop = {"none": lambda act, hook: None, "same": lambda act, hook: act, "clone": lambda act, hook: act.clone()}[kind]
    with torch.no_grad():
        clean = model(tokens)
        hooked = model.run_with_hooks(tokens, fwd_hooks=[(lambda n: not n.endswith("hook_result"), noop)])
        with_result = model.run_with_hooks(tokens, fwd_hooks=[(lambda n: n.endswith("hook_result"), noop)])
    assert torch.equal(hooked, clean), f"no-op '{kind}' hooks changed the logits by {(hooked - clean).abs().max():.2e}"
    # a hook on hook_result makes the heads' writes real tensors summed one by one (so gradients reach them):
    # the same numbers in another order, equal to float32 rounding
    assert (with_result - clean).abs().max() < 1e-5, "a no-op hook on hook_result changed the logits"


def test_hook_receives_name_and_layer(tokens):
    """A hook gets (activation, hook) with hook.name and hook.layer(); outside blocks layer() raises."""
    model = make_model()
    seen = []

    def record(act, hook):
        seen.append((hook.name, hook.layer() if hook.name.startswith("blocks") else None, tuple(act.shape)))

    model.run_with_hooks(tokens, fwd_hooks=[(lambda n: n.endswith(("attn.hook_pattern", "hook_embed")), record)])
    b, p = tokens.shape
    assert seen == [
        ("hook_embed", None, (b, p, 32)),
        ("blocks.0.attn.hook_pattern", 0, (b, 4, p, p)),
        ("blocks.1.attn.hook_pattern", 1, (b, 4, p, p)),
    ], f"hooks fired as {seen}"
    with pytest.raises(ValueError, match="'hook_embed' is not inside a block"):
        model.hook_dict["hook_embed"].layer()


def test_every_documented_hook_point_fires(tokens):
    """Each name in model.hook_names (rotary ones included) fires exactly once per forward."""
    model = make_model(positional="rotary")
    fired = []
    model.run_with_hooks(tokens, fwd_hooks=[(lambda n: True, lambda act, hook: fired.append(hook.name))])
    assert sorted(fired) == sorted(model.hook_names), f"hooks fired {fired} but hook_names is {model.hook_names}"
    assert "blocks.0.attn.hook_rot_q" in fired and "hook_pos_embed" not in fired, "rotary hook points are wrong"


def test_hooks_context_manager_and_nesting(tokens):
    """`with model.hooks()` applies hooks inside only; nested contexts add up and fire outer first."""
    model = make_model()
    order = []

    def tag(label):
        def hook(act, hook):
            order.append(label)

        return hook

    both = [("blocks.0.attn.hook_z", zero_head(0)), ("blocks.1.attn.hook_z", zero_head(3))]
    with torch.no_grad():
        clean, want_both = model(tokens), model.run_with_hooks(tokens, fwd_hooks=both)
        outer_only = model.run_with_hooks(tokens, fwd_hooks=both[:1])
        with model.hooks([*both[:1], ("hook_embed", tag("outer"))]) as same:
            assert same is model, "model.network.hooks() should yield the model"
            with model.hooks([*both[1:], ("hook_embed", tag("inner"))]):
                assert torch.equal(model(tokens), want_both), "nested hooks did not add up"
            assert torch.equal(model(tokens), outer_only), "inner hooks outlived their with block"
            assert torch.equal(model.run_with_hooks(tokens, fwd_hooks=both[1:]), want_both), "run_with_hooks in with"
        assert torch.equal(model(tokens), clean), "hooks outlived the with block"
    assert order[:3] == ["outer", "inner", "outer"], f"hook order {order}: outer hooks should fire first"
    assert active_hook_count() == 0


def test_hooks_on_one_model_do_not_touch_another(tokens):
    """Hooks belong to the model they were added on; a second model in the same context is clean."""
    model, other = make_model(seed=0), make_model(seed=1)
    with torch.no_grad():
        clean_other = other(tokens)
        with model.hooks([(lambda n: n.endswith("hook_z"), lambda z, hook: torch.zeros_like(z))]):
            assert torch.equal(other(tokens), clean_other), "another model picked up these hooks"


def test_several_hooks_on_one_point_compose_in_order(tokens):
    """Two hooks on one point run in list order, each seeing the previous one's output."""
    model = make_model()
    seen = []

    def add_one(act, hook):
        return act + 1

    def check(act, hook):
        seen.append(act.clone())

    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter="hook_embed")
        model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", add_one), ("hook_embed", check)])
    assert torch.equal(seen[0], cache["embed"] + 1), "the second hook did not see the first hook's output"


def test_unknown_hook_name_suggests_closest(tokens):
    """A misspelt hook name raises KeyError naming the closest valid names."""
    model = make_model()
    with pytest.raises(
        KeyError, match=r"unknown hook 'blocks\.0\.attn\.hook_patern'; did you mean 'blocks\.0\.attn\.hook_pattern'"
    ):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_patern", zero_head(0))])
    with pytest.raises(KeyError, match=r"unknown hook 'blocks\.7\.hook_resid_pre'; did you mean"):
        model.hooks([("blocks.7.hook_resid_pre", zero_head(0))]).__enter__()
    with pytest.raises(KeyError, match=r"list them with model\.hook_names"):
        model.run_with_hooks(tokens, fwd_hooks=[("zzz", zero_head(0))])
    assert active_hook_count() == 0


def test_hook_returning_wrong_shape_names_hook_and_shapes(tokens):
    """A hook returning the wrong shape raises ValueError naming the hook point and both shapes."""
    model = make_model()
    b, p = tokens.shape

    def squash(z, hook):
        return z[:, :, 0]

    msg = rf"hook squash on 'blocks\.1\.attn\.hook_z' returned shape \({b}, {p}, 8\), "
    msg += rf"but the activation has shape \({b}, {p}, 4, 8\)"
    with pytest.raises(ValueError, match=msg):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", squash)])
    with pytest.raises(TypeError, match=r"returned list; a hook must return a Tensor .* or None"):
        model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", lambda act, hook: [act])])
    assert active_hook_count() == 0


@pytest.mark.parametrize(
    ("fwd_hooks", "error", "message"),
    [
        ([("hook_embed", 3)], TypeError, "hook for 'hook_embed' is int, not a callable"),
        ([("hook_embed",)], TypeError, r"fwd_hooks must be a list of \(name_or_predicate, fn\) pairs"),
        ([(5, lambda a, h: None)], TypeError, "hook selector must be a name or a predicate, got int"),
    ],
)
def test_malformed_fwd_hooks(fwd_hooks, error, message, tokens):
    """Malformed fwd_hooks raise TypeError saying what a hook list looks like."""
    with pytest.raises(error, match=message):
        make_model().run_with_hooks(tokens, fwd_hooks=fwd_hooks)


def test_single_pair_and_predicate_selectors(tokens):
    """A bare (name, fn) pair works, and a predicate selects every matching hook point."""
    model = make_model()
    names = []
    model.run_with_hooks(tokens, fwd_hooks=("hook_embed", lambda act, hook: names.append(hook.name)))
    model.run_with_hooks(
        tokens, fwd_hooks=[(lambda n: n.endswith("hook_resid_pre"), lambda a, h: names.append(h.name))]
    )
    assert names == ["hook_embed", "blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"], f"selected {names}"
