"""Batched ablation sweeps and attribution patching against one full forward per head.

    python -m benchmarks.bench_ablation [--rounds 10] [--gpt2-rounds 1] [--device cpu|cuda] [--quick]

Everything is timed in one process, in ABBA order (benchmarks.common.abba), and printed as ratios
next to the issue's targets and the arithmetic bounds; nothing passes or fails on time.

* locked config, batch 64 x 32, loss metric: the whole zero-ablation sweep of the 8 heads including
  the clean pass, in units of one plain forward (target <= 6.5, bound ~5.6), beside a
  TransformerLens-style loop (a clean forward, then one full forward per head with a hook on z);
* GPT-2-small-sized config (d_model 768, 12 x 12 heads, d_ff 3072, vocab 50257), batch 4 x 128,
  logit-difference metric: the loop's time over the sweep's (target >= 2x, bound ~2.8x);
* attribution patching of all heads (clean pass, corrupted pass with gradients, one backward) in
  forwards (target <= 3) on both; on the locked config beside its measured floor (:func:`attribution_floor`:
  the same three passes with plain model calls and nothing else);
* peak extra memory of the sweep and of attribution patching at default chunk settings (resident
  memory sampled every millisecond on CPU, ``max_memory_allocated`` on CUDA; target < 2 GiB).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import torch

from benchmarks.common import abba, table
from interp import LogitDiff, Loss, Metric, attribution_patching, head_sweep
from model import MiniGPT, ModelConfig

GPT2_SIZED = ModelConfig(d_model=768, n_heads=12, n_layers=12, d_ff=3072, d_vocab=50257, n_ctx=1024)


def tl_style_loop(model: MiniGPT, tokens: torch.Tensor, metric: Metric, layers: range | None = None) -> list[float]:
    """A clean forward, then one full forward per head (of ``layers``, all by default) with a hook zeroing its z."""
    values = [float(metric(model(tokens), tokens))]
    for layer in layers if layers is not None else range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):

            def zero_head(z, hook, head=head):
                z[:, :, head] = 0.0
                return z

            logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero_head)])
            values.append(float(metric(logits, tokens)))
    return values


def attribution_floor(model: MiniGPT, clean: torch.Tensor, corrupted: torch.Tensor) -> None:
    """The arithmetic attribution patching cannot avoid, with plain model calls and the loss as metric: a clean
    forward, a corrupted forward recording a graph from the lowest ``z`` up, and one backward to every ``z``."""
    with torch.inference_mode():
        model(clean)
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(model.cfg.n_layers)]
    leaves = []

    def leaf(z: torch.Tensor, hook) -> torch.Tensor:
        torch.set_grad_enabled(True)  # no graph below the first z; the no_grad block restores the mode
        z = z if z.requires_grad else z.detach().requires_grad_(True)
        leaves.append(z)
        return z

    with torch.no_grad():
        loss = model.run_with_hooks(corrupted, return_type="loss", fwd_hooks=[(n, leaf) for n in names])
    torch.autograd.grad(loss, leaves)


def compare(variants: dict[str, Callable[[], object]], rounds: int, warmup: int) -> dict[str, tuple[float, float]]:
    """``{name: (wall seconds, CPU seconds)}``: medians of ABBA runs (common.abba), with the process CPU time
    of the same calls, which a machine shared with other jobs disturbs much less than the wall clock."""
    cpu: dict[str, list[float]] = {name: [] for name in variants}

    def clocked(name: str, fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            start = time.process_time()
            fn()
            cpu[name].append(time.process_time() - start)

        return run

    wall = abba({name: clocked(name, fn) for name, fn in variants.items()}, rounds, warmup)
    return {name: (wall[name], statistics.median(cpu[name][warmup:])) for name in variants}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_extra_mib(fn: Callable[[], object], device: str) -> float:
    """Peak memory above the level before ``fn``, in MiB (CUDA allocator, or sampled resident set on CPU)."""
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    base = peak = _rss()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return (max(peak, _rss()) - base) / 2**20


def _setup(cfg: ModelConfig, batch: int, pos: int, device: str) -> tuple[MiniGPT, torch.Tensor, torch.Tensor]:
    model = MiniGPT(cfg, seed=0).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(3, cfg.d_vocab, (batch, pos), generator=gen).to(device)
    corrupted = torch.randint(3, cfg.d_vocab, (batch, pos), generator=gen).to(device)
    return model, tokens, corrupted


def _workloads(
    model: MiniGPT, tokens: torch.Tensor, corrupted: torch.Tensor, metric: Metric, device: str, loop_layers: int
):
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def timed(fn: Callable[[], object], inference: bool = True) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode(inference):
                fn()
            sync()

        return run

    work = {
        "forward": timed(lambda: model(tokens)),
        "sweep": timed(lambda: head_sweep(model, tokens, "zero", metric, progress=False)),
        "loop": timed(lambda: tl_style_loop(model, tokens, metric, range(loop_layers))),
        "attribution": timed(lambda: attribution_patching(model, tokens, corrupted, metric, "heads"), inference=False),
    }
    if isinstance(metric, Loss):  # the floor uses the model's own loss
        work["floor"] = timed(lambda: attribution_floor(model, tokens, corrupted), inference=False)
    return work


SETTINGS = {  # name -> (config, batch, pos, metric)
    "locked": (ModelConfig(), 64, 32, Loss()),
    "gpt2": (GPT2_SIZED, 4, 128, LogitDiff(answer=11, wrong=12)),
}


def _memory_child(setting: str, what: str, device: str) -> float:
    """Peak extra memory of one ``what`` run, after one plain forward (run in a fresh process)."""
    cfg, batch, pos, metric = SETTINGS[setting]
    model, tokens, corrupted = _setup(cfg, batch, pos, device)
    work = _workloads(model, tokens, corrupted, metric, device, 1)
    work["forward"]()
    return peak_extra_mib(work[what], device)


def memory_mib(setting: str, device: str) -> dict[str, float]:
    """Peak extra memory of the sweep and of attribution patching, each measured in a fresh process."""
    out = {}
    for what in ("sweep", "attribution"):
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.bench_ablation",
            "--memory-child",
            f"{setting}:{what}",
            "--threads",
            "1",
        ]
        done = subprocess.run([*cmd, "--device", device], capture_output=True, text=True, check=True)
        out[what] = float(done.stdout.strip().splitlines()[-1])
    return out


def measure(setting: str, rounds: int, device: str, loop_layers: int) -> dict:
    """Times (wall, cpu) of forward, sweep, loop (over ``loop_layers`` layers, scaled to all heads), attribution."""
    cfg, batch, pos, metric = SETTINGS[setting]
    memory = memory_mib(setting, device)
    model, tokens, corrupted = _setup(cfg, batch, pos, device)
    work = _workloads(model, tokens, corrupted, metric, device, loop_layers)
    work["forward"]()
    # All four interleaved in one ABBA run: besides spreading machine noise evenly, this keeps the
    # allocator's heap at the size the biggest variant needs, so no variant pays page faults the
    # others do not (alone, a sweep's temporaries can make glibc hand memory back and fault it in again).
    times = compare(work, rounds, 2 if rounds > 2 else 0)
    n_heads = cfg.n_heads * cfg.n_layers
    scale = (n_heads + 1) / (cfg.n_heads * loop_layers + 1)  # the loop's forwards all cost the same
    times["loop"] = (times["loop"][0] * scale, times["loop"][1] * scale)
    print(", ".join(f"{k} {w * 1e3:.1f} ms wall / {c * 1e3:.1f} ms cpu" for k, (w, c) in times.items()), flush=True)
    ratios = {k: tuple(t / f for t, f in zip(v, times["forward"], strict=True)) for k, v in times.items()}
    return {"ratios": ratios, "memory": memory, "scaled_loop": scale != 1}


def _row(label: str, pair: tuple[float, float], target: str, bound: str, fmt: str = "{:.2f}") -> tuple[str, ...]:
    return (label, fmt.format(pair[0]), fmt.format(pair[1]), target, bound)


def report(
    name: str, result: dict, n_heads: int, speedup_target: str, speedup_bound: str, sweep_target: str, sweep_bound: str
) -> list[tuple[str, ...]]:
    r, mem = result["ratios"], result["memory"]
    speedup = tuple(loop / sweep for loop, sweep in zip(r["loop"], r["sweep"], strict=True))
    loop_note = " (timed on layer 0, scaled)" if result["scaled_loop"] else ""
    floor = f"{r['floor'][0]:.2f} (measured)" if "floor" in r else "-"
    return [
        _row(f"{name}: head sweep ({n_heads} heads + clean) / forward", r["sweep"], sweep_target, sweep_bound),
        _row(f"{name}: TransformerLens-style loop / forward{loop_note}", r["loop"], "-", f"{n_heads + 1}"),
        _row(f"{name}: loop / sweep (speed-up)", speedup, speedup_target, speedup_bound, "{:.2f}x"),
        _row(f"{name}: attribution patching, all heads / forward", r["attribution"], "<= 3", floor),
        (
            f"{name}: peak extra memory, sweep / attribution (MiB)",
            f"{mem['sweep']:.0f} / {mem['attribution']:.0f}",
            "",
            "< 2048",
            "-",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="ABBA rounds on the locked config")
    parser.add_argument("--gpt2-rounds", type=int, default=1, help="ABBA rounds on the GPT-2-sized config (slow)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="locked config only, few rounds (CI smoke runs)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)  # SETTING:WHAT, used by memory_mib
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        print(_memory_child(*args.memory_child.split(":"), args.device))
        return
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()}")
    rows = []
    locked = measure("locked", 3 if args.quick else args.rounds, args.device, loop_layers=2)
    rows += report("locked 64x32, loss", locked, 8, "-", "-", "<= 6.5", "~5.6")
    if not args.quick:
        gpt2 = measure("gpt2", args.gpt2_rounds, args.device, loop_layers=1)
        rows += report("gpt2-sized 4x128, logit diff", gpt2, 144, ">= 2x", "~2.8x", "-", "~51")
    print(table(rows, ("measure", "wall", "cpu", "target", "bound")))


if __name__ == "__main__":
    main()
