"""One shared model under many threads: every result equals the single-thread one bit for bit, no hook outlives
its call, an exception in one thread's hook leaves the others alone, and memory does not grow across 1,000 calls.

The model is the shipped ``minigpt-text``, loaded once for this module, frozen (``requires_grad_(False)``) as the
dashboard holds it, and again with trainable parameters. This test found a torch 2.13 deadlock: a thread whose forward
records a graph for a parameter that requires grad (``AccumulateGrad`` creation locks the parameter's autograd mutex,
then takes the GIL) against a thread reading that parameter through ``.T`` or ``[...]`` (GIL held, then the same
mutex). The package therefore uses ``.t()``, ``.narrow()`` and ``index_select`` on parameters (model/layers.py), and
the dashboard freezes its models, which then take no autograd lock at all.
The call catalogue mixes plain forwards, caches, hooks that change activations, ablations of every kind and
method, batched sweeps and seeded generation; ``pytest -s`` prints the stress figures.
"""

from __future__ import annotations

import faulthandler
import gc
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pandas as pd
import pytest
import torch

from interp import AblationResult, HeadAblation, NeuronAblation, ablate, head_sweep, neuron_sweep
from model import ActivationCache, MiniGPT
from model.network.hooks import active_hook_count

N_THREADS, CALLS_PER_THREAD = 16, 50
MEMORY_WARMUP, MEMORY_CALLS = 800, 1000  # RSS settles (fragmentation) over the first ~1,000 calls
SCHEDULE_SEED = 8
WATCHDOG_S = 240  # a deadlock holds the GIL, so no Python-level timeout can end it


@contextmanager
def deadlock_watchdog(seconds: int = WATCHDOG_S) -> Iterator[None]:
    """Dump every thread's stack and exit the process if the body runs past ``seconds`` (a hang fails the run)."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


class HookError(RuntimeError):
    """Raised on purpose inside a hook."""


def scale(factor: float):
    """A hook multiplying the activation by ``factor`` (a new tensor)."""

    def hook(act, hook):
        return act * factor

    return hook


def zero_head(head: int):
    """A hook zeroing one head of ``[batch, pos, head, ...]`` (``hook_z`` or ``hook_result``)."""

    def hook(act, hook):
        act = act.clone()
        act[:, :, head] = 0.0
        return act

    return hook


def shift_position(pos: int, amount: float):
    """A hook adding ``amount`` to the residual stream at one position, in place."""

    def hook(act, hook):
        act[:, pos] += amount

    return hook


def boom(act, hook):
    raise HookError(f"boom in {hook.name}")


def build_calls(model: MiniGPT) -> dict[str, Callable[[], object]]:
    """Named zero-argument calls on the shared model, each deterministic, on inputs of different shapes."""
    gen = torch.Generator().manual_seed(0)
    a, b, c = (torch.randint(3, 64, shape, generator=gen) for shape in [(4, 24), (2, 32), (3, 16)])
    ref = torch.randint(3, 64, (6, 32), generator=gen)
    plain_hook = [("blocks.1.hook_resid_pre", shift_position(3, 0.5))]

    def nested() -> torch.Tensor:
        with model.hooks([("blocks.0.attn.hook_z", zero_head(0))]):
            return model.run_with_hooks(b, fwd_hooks=plain_hook)

    def no_grad(fn: Callable[[], object]) -> Callable[[], object]:
        return torch.no_grad()(fn)

    return {
        "forward": lambda: model(a),
        "forward loss": lambda: model(b, return_type="loss"),
        "forward both, no grad": no_grad(lambda: model(c, return_type="both", loss_per_token=True)),
        "cache all": lambda: model.run_with_cache(a),
        "cache patterns": no_grad(lambda: model.run_with_cache(b, names_filter=lambda n: n.endswith("hook_pattern"))),
        "cache result": lambda: model.run_with_cache(c, ["blocks.0.attn.hook_result", "ln_final.hook_scale"]),
        "cache with hook": lambda: model.run_with_cache(
            a, "blocks.1.hook_resid_post", fwd_hooks=[("blocks.0.hook_mlp_out", scale(0.5))]
        ),
        "hooks zero z": lambda: model.run_with_hooks(a, fwd_hooks=[("blocks.0.attn.hook_z", zero_head(1))]),
        "hooks ln_final scale": lambda: model.run_with_hooks(b, fwd_hooks=[("ln_final.hook_scale", scale(2.0))]),
        "hooks edit result": no_grad(
            lambda: model.run_with_hooks(c, fwd_hooks=[("blocks.1.attn.hook_result", zero_head(2))])
        ),
        "hooks predicate": lambda: model.run_with_hooks(
            c, fwd_hooks=[(lambda n: n.endswith("mlp.hook_post"), scale(0))]
        ),
        "hooks nested": nested,
        "ablate zero heads": lambda: ablate(model, a, heads="0.1,1.3"),
        "ablate mean mlp": lambda: ablate(model, b, mlps=[1], method="mean", reference=ref),
        "ablate resample neurons": lambda: ablate(model, a, neurons=[(0, 7), (1, 200)], method="resample", seed=3),
        "ablate resample ref": lambda: ablate(model, c, heads=[(1, 0)], method="resample", reference=ref, seed=5),
        "ablate specs": lambda: ablate(
            model, c, HeadAblation(0, 2, positions=(1, 4), method="mean"), NeuronAblation(1, 9), reference=ref
        ),
        "ablate positions": lambda: ablate(model, b, positions="1.5", attn_layers=[0], method="zero"),
        "head sweep zero": lambda: head_sweep(model, c, progress=False),
        "head sweep mean": lambda: head_sweep(
            model, b, "mean", reference=ref, layers=[1], chunk_size=3, progress=False
        ),
        "neuron sweep": lambda: neuron_sweep(
            model, c, "resample", layers=[0], neurons=range(24), seed=1, chunk_size=8, progress=False
        ),
        "generate text": lambda: model.generate("the cat sat on ", max_new_tokens=8, seed=0),
        "generate tokens": lambda: model.generate(c[:, :10], max_new_tokens=6, temperature=0.8, top_k=12, seed=1),
        "generate nucleus": lambda: model.generate(b[:1, :20], max_new_tokens=6, top_p=0.9, seed=2),
        "generate greedy": lambda: model.generate(a[:2, :12], max_new_tokens=5, temperature=0),
        "hook raises": lambda: model.run_with_hooks(
            a, fwd_hooks=[("blocks.0.attn.hook_z", zero_head(3)), ("blocks.1.hook_resid_pre", boom)]
        ),
        "cache hook raises": lambda: model.run_with_cache(b, fwd_hooks=[("blocks.1.mlp.hook_pre", boom)]),
    }


def outcome(call: Callable[[], object]) -> object:
    """The call's result with tensors detached (so no autograd graph is kept), or the HookError it raised."""
    try:
        result = call()
    except HookError as err:
        return ("raised", str(err))
    return detached(result)


def detached(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, tuple):
        return tuple(detached(v) for v in value)
    if isinstance(value, AblationResult):
        return (value.logits, value.loss, value.loss_per_token, value.ablations)
    return value


def same(got: object, want: object) -> bool:
    """Exact equality: tensors by torch.equal (dtype and shape too), caches key by key, frames cell by cell."""
    if isinstance(want, torch.Tensor):
        return isinstance(got, torch.Tensor) and got.dtype == want.dtype and torch.equal(got, want)
    if isinstance(want, ActivationCache):
        return isinstance(got, ActivationCache) and list(got) == list(want) and all(same(got[n], want[n]) for n in want)
    if isinstance(want, pd.DataFrame):
        return isinstance(got, pd.DataFrame) and list(got.dtypes) == list(want.dtypes) and got.equals(want)
    if isinstance(want, tuple):
        return isinstance(got, tuple) and len(got) == len(want) and all(map(same, got, want))
    return type(got) is type(want) and got == want


def hooks_left(model: MiniGPT) -> list[str]:
    """Hook points that the calling thread's context still activates (empty after every call)."""
    return [name for name, point in model.hook_dict.items() if point.is_active()] + ["*"] * active_hook_count()


def schedules(names: list[str], n_threads: int, n_calls: int, seed: int) -> list[list[str]]:
    """Per thread: every call once, topped up at random to ``n_calls``, in a shuffled order (seeded)."""
    out = []
    for i in range(n_threads):
        rng = random.Random(seed * 1000 + i)
        order = names + rng.choices(names, k=n_calls - len(names))
        rng.shuffle(order)
        out.append(order)
    return out


@pytest.fixture(scope="module", params=["frozen", "trainable"])
def shared_model(request) -> MiniGPT:
    """The shipped minigpt-text (a fresh copy), frozen as the dashboard holds it, or with trainable parameters."""
    model = MiniGPT.from_pretrained("minigpt-text").eval()
    return model.requires_grad_(request.param == "trainable")


@pytest.fixture(scope="module")
def calls_and_expected(shared_model) -> tuple[dict[str, Callable[[], object]], dict[str, object]]:
    """The call catalogue and each call's single-thread result (run twice: a call must first agree with itself)."""
    calls = build_calls(shared_model)
    with torch.no_grad():
        clean = shared_model(torch.randint(3, 64, (4, 24), generator=torch.Generator().manual_seed(0)))
    expected = {name: outcome(call) for name, call in calls.items()}
    for name, call in calls.items():
        assert same(outcome(call), expected[name]), f"'{name}' differs from itself in one thread: not deterministic"
    assert not same(expected["hooks zero z"], clean), "the zero-z hook changes nothing; the test would be blind"
    assert not same(expected["cache with hook"][0], clean), "the mlp_out hook changes nothing"
    assert expected["hook raises"] == ("raised", "boom in blocks.1.hook_resid_pre"), "the raising hook did not raise"
    return calls, expected


def run_schedule(model: MiniGPT, calls: dict, order: list[str], barrier: threading.Barrier | None) -> list:
    """Run ``order`` in this thread: ``[(name, result, hooks left after it)]``."""
    if barrier is not None:
        barrier.wait(timeout=120)
    return [(name, outcome(calls[name]), hooks_left(model)) for name in order]


def test_mixed_calls_in_16_threads_equal_single_thread_results(shared_model, calls_and_expected):
    """16 threads x 50 mixed calls on one model: each result equals its single-thread result exactly, none leaks."""
    calls, expected = calls_and_expected
    plan = schedules(list(calls), N_THREADS, CALLS_PER_THREAD, SCHEDULE_SEED)
    barrier = threading.Barrier(N_THREADS)
    start = time.perf_counter()
    with deadlock_watchdog(), ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        futures = [pool.submit(run_schedule, shared_model, calls, order, barrier) for order in plan]
        results = [f.result(timeout=300) for f in futures]
    wall = time.perf_counter() - start
    n_calls = sum(len(r) for r in results)
    print(
        f"\nconcurrency: {N_THREADS} threads x {CALLS_PER_THREAD} calls = {n_calls} calls "
        f"({len(calls)} kinds) on one shared model in {wall:.2f} s"
    )
    for thread, rows in enumerate(results):
        for i, (name, got, left) in enumerate(rows):
            assert not left, f"thread {thread} call {i} '{name}' left hooks active: {left[:5]} (context not reset?)"
            assert same(got, expected[name]), (
                f"thread {thread} call {i} '{name}' differs from its single-thread result: another thread's hooks, "
                "cache or RNG reached it (state shared through the model?)"
            )
    assert n_calls == N_THREADS * CALLS_PER_THREAD, f"ran {n_calls} calls"
    assert not hooks_left(shared_model), "the main thread sees hooks after the stress run"
    with torch.no_grad():
        plain = shared_model(torch.randint(3, 64, (4, 24), generator=torch.Generator().manual_seed(0)))
    assert same(plain, expected["forward"]), "a plain forward after the stress run differs: a hook was left behind"


def test_exception_in_one_threads_hook_leaves_the_others_unaffected(shared_model, calls_and_expected):
    """A hook raising while 15 other threads are stopped inside their hooked forwards changes none of their results."""
    calls, expected = calls_and_expected
    others = ["hooks zero z", "cache with hook", "ablate zero heads", "hooks nested", "cache all"]
    inside, raised = threading.Barrier(N_THREADS), threading.Event()

    def wait_then(hook_fn):
        def hook(act, hook):
            inside.wait(timeout=60)  # all 16 threads are now inside a hooked forward...
            if hook_fn is boom:
                return boom(act, hook)
            assert raised.wait(timeout=60), "the raising thread never finished"  # ...until the raise is over
            return None

        return hook

    def victim(name: str):
        with shared_model.hooks([("hook_embed", wait_then(None))]):
            got = outcome(calls[name])
        return name, got, hooks_left(shared_model)

    def raiser():
        with pytest.raises(HookError, match=r"boom in blocks\.0\.hook_resid_pre"):
            shared_model.run_with_hooks(torch.full((2, 8), 5), [("blocks.0.hook_resid_pre", wait_then(boom))])
        left = hooks_left(shared_model)
        raised.set()
        return left

    with deadlock_watchdog(), ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        raise_future = pool.submit(raiser)
        futures = [pool.submit(victim, others[i % len(others)]) for i in range(N_THREADS - 1)]
        assert raise_future.result(timeout=120) == [], "the raising thread still has hooks after its exception"
        for future in futures:
            name, got, left = future.result(timeout=120)
            assert not left, f"'{name}' left hooks active after another thread's hook raised"
            assert same(got, expected[name]), f"'{name}' changed because a hook raised in another thread"


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def live_tensors() -> int:
    return sum(issubclass(type(obj), torch.Tensor) for obj in gc.get_objects())  # type(): no __class__ lookups


def test_memory_does_not_grow_across_1000_calls(shared_model, calls_and_expected):
    """1,000 mixed calls in 16 threads after a warm-up: no tensor is kept and resident memory grows < 8 MiB.

    Bounds: each of the 27 call kinds runs about 37 times in 1,000 calls, so keeping any one result per call
    would leave >= 37 more live tensors; the count may grow by at most 8. Resident memory sees what the count
    cannot (buffers held in C++, non-tensor state): the smallest logits here are 3 x 16 x 64 floats = 12 KiB, so
    keeping one per call adds >= 12 MiB (measured: +17 MiB for 12 KiB a call), a full cache per call ~1 GiB.
    After a warm-up in the same 16 threads (malloc arenas and allocator caches at their steady size) growth
    measured +1.7 to +3.4 MiB, hence the 8 MiB bound.
    """
    calls, expected = calls_and_expected
    plan = schedules(list(calls), N_THREADS, (MEMORY_WARMUP + MEMORY_CALLS) // N_THREADS + 1, SCHEDULE_SEED + 1)
    flat = [name for order in plan for name in order]
    warmup, measured = flat[:MEMORY_WARMUP], flat[MEMORY_WARMUP : MEMORY_WARMUP + MEMORY_CALLS]

    def check(name: str) -> bool:
        return same(outcome(calls[name]), expected[name]) and not hooks_left(shared_model)

    with deadlock_watchdog(), ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        assert all(pool.map(check, warmup)), "a warm-up call differed from its single-thread result"
        gc.collect()
        rss_before, tensors_before = resident_bytes(), live_tensors()
        start = time.perf_counter()
        ok = list(pool.map(check, measured))
        wall = time.perf_counter() - start
        gc.collect()
        rss_after, tensors_after = resident_bytes(), live_tensors()
    growth = rss_after - rss_before
    print(
        f"\nmemory: {len(measured)} calls in {N_THREADS} threads after {len(warmup)} warm-up calls, {wall:.2f} s; "
        f"RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB (growth {growth / 2**20:+.2f} MiB); "
        f"live tensors {tensors_before} -> {tensors_after}"
    )
    assert all(ok), f"{ok.count(False)} of {len(ok)} calls differed from their single-thread result or left hooks"
    assert tensors_after - tensors_before <= 8, (
        f"live tensors grew from {tensors_before} to {tensors_after} over {len(measured)} calls: something keeps "
        "results, caches or hook state (a cache holding references, hooks stored on modules?)"
    )
    assert growth < 8 * 2**20, f"resident memory grew by {growth / 2**20:.1f} MiB over {len(measured)} calls: a leak"
