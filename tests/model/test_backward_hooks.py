"""Backward hooks with TransformerLens's signatures, per call: gradients equal torch.autograd.grad, replacements take
effect, and no hook outlives its call (a backward that raises, or none at all), in any thread.

A backward hook ``fn(grad, hook)`` sees the gradient of the loss with respect to its hook point's output; it is
attached to that forward's own activation, so it belongs to that call's graph alone.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from conftest import CONFIG_VARIANTS, make_model

from interp import attribution_patching
from interp.common.metrics import LogitDiff
from model.network.cache import ActivationCache

TOL = dict(atol=1e-6, rtol=1e-5)
OPTIONAL_INPUTS = ("hook_attn_in", "hook_q_input", "hook_k_input", "hook_v_input")  # their own test below


def reference_grads(model, tokens) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """Every activation (kept by forward hooks, on the graph) and the loss's gradient with respect to each, by
    ``torch.autograd.grad``; the LayerNorms' scales, which the fused kernel keeps off the graph, are left out."""
    acts: dict[str, torch.Tensor] = {}

    def keep(act, hook):
        acts[hook.name] = act

    names = [n for n in model.hook_names if not n.endswith(("hook_scale", *OPTIONAL_INPUTS))]
    loss = model.run_with_hooks(tokens, fwd_hooks=[(n, keep) for n in names], return_type="loss")
    names = [n for n in names if acts[n].requires_grad]  # a sinusoidal position table is off the graph
    grads = torch.autograd.grad(loss, [acts[n] for n in names], allow_unused=True)
    return acts, {n: g if g is not None else torch.zeros_like(acts[n]) for n, g in zip(names, grads, strict=True)}, loss


@pytest.fixture(params=list(CONFIG_VARIANTS), ids=list(CONFIG_VARIANTS))
def model(request):
    return make_model(**CONFIG_VARIANTS[request.param])


def test_cached_gradients_equal_autograd_on_every_hook(model, tokens):
    """``run_with_cache(incl_bwd=True)`` caches ``name + "_grad"`` for every hook: equal to autograd's gradient of the
    loss with respect to each activation, and the LayerNorm scales' to the gradient the formula gives them."""
    _, expected, ref_loss = reference_grads(model, tokens)
    model.zero_grad()
    every = lambda name: not name.endswith(OPTIONAL_INPUTS)  # noqa: E731
    loss, cache = model.run_with_cache(tokens, names_filter=every, incl_bwd=True, return_type="loss")
    torch.testing.assert_close(loss, ref_loss, **TOL)
    for name, grad in expected.items():
        torch.testing.assert_close(cache[name + "_grad"], grad, **TOL, msg=f"gradient at {name}")
    off_graph = {n for n in model.hook_names if not n.endswith(("hook_scale", *OPTIONAL_INPUTS))} - set(expected)
    assert not {n + "_grad" for n in off_graph} & set(cache.keys()), "no gradient is cached off the graph, as in TL"
    for name in (n for n in model.hook_names if n.endswith("hook_scale")):
        ln = name.removesuffix(".hook_scale")
        out, grad_out = cache[ln + ".hook_normalized"], expected[ln + ".hook_normalized"]
        bias = model.get_submodule(ln).b
        written = out if bias is None else out - bias  # (x - mean) / scale * w: its derivative in the scale
        want = -(grad_out * written).sum(-1, keepdim=True) / cache[name]
        torch.testing.assert_close(cache[name + "_grad"], want, atol=1e-5, rtol=1e-4, msg=f"gradient at {name}")
    assert all(p.grad is not None for p in model.parameters()), "the parameters' gradients accumulate, as in TL"


@pytest.mark.parametrize("variant", [v for v, c in CONFIG_VARIANTS.items() if c.get("norm") != "post"])
def test_per_head_input_gradients_sum_to_the_attention_branch(variant, tokens):
    """A gradient wanted at the per-head inputs makes every head read its own input; summed over heads (and over
    query, key and value) it is what reaches ``resid_pre`` through the attention: the gradient at ``resid_pre``
    less the one at the block's next residual state (an additive residual: not post-norm). ``hook_attn_in``'s is
    the same sum."""
    model = make_model(**CONFIG_VARIANTS[variant])
    names = [n for n in model.hook_names if n.endswith((*OPTIONAL_INPUTS, "hook_resid_pre", "hook_resid_mid"))]
    names += [f"blocks.{layer}.hook_resid_post" for layer in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(tokens, names_filter=names, incl_bwd=True, return_type="loss")
    for layer, block in enumerate(model.blocks):
        b = f"blocks.{layer}."
        after = cache[b + ("hook_resid_mid_grad" if block.mlp is not None else "hook_resid_post_grad")]
        branch = cache[b + "hook_resid_pre_grad"] - after
        inputs = sum(cache[b + f"hook_{x}_input_grad"] for x in "qkv").sum(-2)
        torch.testing.assert_close(inputs, branch, **TOL, msg=f"q/k/v input gradients of block {layer}")
        torch.testing.assert_close(cache[b + "hook_attn_in_grad"].sum(-2), branch, **TOL)


def test_a_backward_hook_sees_the_gradient_and_can_replace_it(model, tokens):
    """``bwd_hooks`` see autograd's gradient; a hook doubling the gradient entering block 0 doubles what reaches the
    embedding (everything upstream of it), and leaves block 1's gradient as it was."""
    _, expected, _ = reference_grads(model, tokens)
    seen = {}

    def record(grad, hook):
        seen[hook.name] = grad.clone()

    loss = model.run_with_hooks(tokens, return_type="loss", bwd_hooks=[("blocks.1.hook_resid_pre", record)])
    loss.backward()
    torch.testing.assert_close(seen["blocks.1.hook_resid_pre"], expected["blocks.1.hook_resid_pre"], **TOL)
    doubled = {}
    hooks = [("blocks.0.hook_resid_pre", lambda grad, hook: grad * 2)]
    hooks += [
        (n, lambda grad, hook: doubled.__setitem__(hook.name, grad)) for n in ("hook_embed", "blocks.1.hook_resid_pre")
    ]
    model.run_with_hooks(tokens, return_type="loss", bwd_hooks=hooks).backward()
    torch.testing.assert_close(doubled["hook_embed"], 2 * expected["hook_embed"], **TOL)
    torch.testing.assert_close(doubled["blocks.1.hook_resid_pre"], expected["blocks.1.hook_resid_pre"], **TOL)


def test_no_backward_hook_outlives_its_call(tiny_model, tokens):
    """A hook of one call never fires in another call's backward: not when its own backward never ran, not after
    a backward it raised in; ``reset_hooks_end=False`` and ``add_hook(dir="bwd")`` keep one until ``reset_hooks``."""
    calls = []

    def count(grad, hook):
        calls.append(hook.name)

    tiny_model.run_with_hooks(tokens, return_type="loss", bwd_hooks=[("hook_embed", count)])  # no backward
    tiny_model(tokens, return_type="loss").backward()
    assert calls == [], "a hook of a call whose backward never ran fired in another call's backward"

    def boom(grad, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        tiny_model.run_with_hooks(tokens, return_type="loss", bwd_hooks=[("hook_embed", boom)]).backward()
    tiny_model(tokens, return_type="loss").backward()
    loss = tiny_model.run_with_hooks(tokens, return_type="loss", bwd_hooks=[("hook_embed", count)])
    loss.backward()
    assert calls == ["hook_embed"], "after a backward raised, the next call ran its own hook, and only it"
    tiny_model.run_with_hooks(tokens, return_type="loss", bwd_hooks=[("hook_embed", count)], reset_hooks_end=False)
    tiny_model(tokens, return_type="loss").backward()
    assert calls == ["hook_embed"] * 2, "reset_hooks_end=False keeps the hook for later calls, as in TL"
    tiny_model.reset_hooks(direction="fwd")
    tiny_model(tokens, return_type="loss").backward()
    assert calls == ["hook_embed"] * 3, "reset_hooks(direction='fwd') leaves the backward hooks"
    tiny_model.reset_hooks()
    tiny_model.add_hook("hook_embed", count, dir="bwd")
    tiny_model(tokens, return_type="loss").backward()
    tiny_model.reset_hooks(direction="bwd")
    tiny_model(tokens, return_type="loss").backward()
    assert calls == ["hook_embed"] * 4 and tiny_model.hook_list() == []


def test_each_thread_gets_only_its_own_gradients(tiny_model):
    """16 threads, each caching the gradients of its own tokens through one shared model, get exactly the serial
    results: no thread's hooks see another's backward."""
    gen = torch.Generator().manual_seed(3)
    batches = [torch.randint(3, 64, (2, 10), generator=gen) for _ in range(16)]
    names = ["hook_embed", "blocks.1.hook_resid_mid", "blocks.0.attn.hook_z"]

    def grads(tokens):
        _, cache = tiny_model.run_with_cache(tokens, names_filter=names, incl_bwd=True, return_type="loss")
        return {n: cache[n + "_grad"] for n in names}

    serial = [grads(b) for b in batches]
    with ThreadPoolExecutor(max_workers=16) as pool:
        threaded = list(pool.map(grads, batches * 3))
    for i, got in enumerate(threaded):
        for name in names:
            assert torch.equal(got[name], serial[i % 16][name]), f"thread {i}'s {name} gradient is not its own"


def test_attribution_patching_by_hand_with_backward_hooks_equals_ours(tiny_model):
    """ARENA's attribution patching, written with forward and backward caching hooks (``add_hook(..., "bwd")``),
    equals ``interp.attribution_patching`` over the heads."""
    gen = torch.Generator().manual_seed(0)
    clean, corrupted = torch.randint(3, 64, (4, 12), generator=gen), torch.randint(3, 64, (4, 12), generator=gen)
    metric = LogitDiff(answer=11, wrong=12)

    def fwd_and_bwd(tokens):
        tiny_model.reset_hooks()
        acts, grads = {}, {}
        tiny_model.add_hook(
            lambda name: name.endswith("hook_z"), lambda act, hook: acts.update({hook.name: act.detach()})
        )
        tiny_model.add_hook(
            lambda n: n.endswith("hook_z"), lambda g, hook: grads.update({hook.name: g.detach()}), "bwd"
        )
        value = metric(tiny_model(tokens), tokens)
        value.backward()
        tiny_model.reset_hooks()
        return value.item(), ActivationCache(acts, tiny_model), ActivationCache(grads, tiny_model)

    _, clean_cache, _ = fwd_and_bwd(clean)
    _, corr_cache, corr_grads = fwd_and_bwd(corrupted)
    by_hand = torch.stack([
        ((clean_cache["z", layer] - corr_cache["z", layer]) * corr_grads["z", layer]).sum((0, 1, 3))
        for layer in range(tiny_model.cfg.n_layers)
    ])  # fmt: skip
    ours = attribution_patching(tiny_model, clean, corrupted, metric, grid="heads")
    estimate = torch.tensor((ours.metric_patched - ours.metric_corrupted).to_numpy()).view_as(by_hand)
    print("\nattribution by hand with backward hooks:", by_hand.flatten()[:4].tolist())
    torch.testing.assert_close(estimate, by_hand.double(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"incl_bwd": True}, 'pass return_type="loss"'),
        ({"incl_bwd": True, "return_type": "loss", "loss_per_token": True}, "must be one number"),
        ({"incl_bwd": 1, "return_type": "loss"}, "incl_bwd must be True or False"),
    ],
)
def test_incl_bwd_refuses_what_it_cannot_backpropagate(tiny_model, tokens, kwargs, match):
    """A non-scalar output, or a non-bool flag, is a clear error before anything runs."""
    with pytest.raises((ValueError, TypeError), match=match):
        tiny_model.run_with_cache(tokens, **kwargs)


def test_backward_hooks_refuse_bad_hooks(tiny_model, tokens):
    """A bad direction, a hook that is not callable, or a replacement of the wrong shape are clear errors."""
    with pytest.raises(ValueError, match="dir must be 'fwd'"):
        tiny_model.add_hook("hook_embed", lambda g, h: None, dir="backward")
    with pytest.raises(TypeError, match=r"bwd_hooks must be a list of \(name_or_predicate, fn\) pairs"):
        tiny_model.run_with_hooks(tokens, bwd_hooks="hook_embed")
    with pytest.raises(TypeError, match=r"not a callable fn\(gradient, hook\)"):
        tiny_model.run_with_hooks(tokens, bwd_hooks=[("hook_embed", 3)])
    loss = tiny_model.run_with_hooks(tokens, return_type="loss", bwd_hooks=[("hook_embed", lambda g, h: g[0])])
    with pytest.raises(ValueError, match="the gradient has shape"):
        loss.backward()
