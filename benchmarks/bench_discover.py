"""Circuit discovery: EAP over every edge against forwards and its floor, batched exact edge patching against one
hooked forward per edge, ACDC's wall time, and EAP on a GPT-2-small-sized graph with its peak extra memory.

    python -m benchmarks.bench_discover [--rounds 5] [--gpt2-rounds 1] [--device cpu|cuda] [--quick]

Everything is timed in one process in ABBA order (benchmarks.common.abba) and printed as ratios beside the
issue's targets; nothing passes or fails on time.

* locked config, batch 64 x 32, next-token loss, 137 edges: EAP (and EAP-IG, 5 steps) in units of one plain
  forward (target <= 3), beside its floor (:func:`eap_floor`: a corrupted forward without a graph, a clean
  forward recording one from the embedding up, one backward to the embedding, with plain model calls);
* the same: batched exact edge patching of every edge against the one-hooked-forward-per-edge reference
  (:func:`interp.discover.reference.edge_patching_reference`; target >= 5x faster), with the loss (every
  position read, so every variant recomputes all positions above its input) and with a logit difference at
  the last position (the last block then computes one query row: see :meth:`model.MiniGPT.forward_from`);
* ACDC on ``induction-2l`` (32 x 31, loss on the second copy) and ``minigpt-text`` (16 windows of 32 characters
  of the validation text against 16 others, loss) in seconds (target < 30 s on CPU);
* GPT-2-small-sized config (d_model 768, 12 x 12 heads, d_ff 3072, vocab 50257; 32,936 edges), batch 4 x 128,
  logit difference at the last position: EAP in forwards (target < 4) beside its floor, and its peak extra
  memory (measured in a fresh process).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from benchmarks.bench_ablation import GPT2_SIZED, compare, peak_extra_mib
from benchmarks.common import table
from interp import LogitDiff, Loss, LossAt, Metric
from interp.discover.acdc import acdc
from interp.discover.attribution import edge_attribution_patching
from interp.discover.graph import edge_graph
from interp.discover.patching import edge_patching
from interp.discover.reference import edge_patching_reference
from model import MiniGPT, ModelConfig
from model.training.data import builtin_corpus, repeated_pair_batch, text_batch

SETTINGS = {  # name -> (config, batch, pos, metric)
    "locked": (ModelConfig(), 64, 32, Loss()),
    "locked-logit-diff": (ModelConfig(), 64, 32, LogitDiff(answer=11, wrong=12)),
    "gpt2": (GPT2_SIZED, 4, 128, LogitDiff(answer=11, wrong=12)),
}


def eap_floor(model: MiniGPT, clean: torch.Tensor, corrupted: torch.Tensor, metric: Metric) -> None:
    """What EAP cannot avoid, with plain model calls: the corrupted forward (no graph), the clean forward with a graph
    from the embedding up, and one backward of the metric to the embedding."""
    with torch.inference_mode():
        model(corrupted)
    leaf = []

    def start(act: torch.Tensor, hook) -> torch.Tensor:
        leaf.append(act.detach().requires_grad_(True))
        return leaf[0]

    with torch.enable_grad():
        logits = model.run_with_hooks(clean, fwd_hooks=[("hook_embed", start)])
        torch.autograd.grad(metric(logits, clean), leaf)


def _setup(setting: str, device: str):
    cfg, batch, pos, metric = SETTINGS[setting]
    model = MiniGPT(cfg, seed=0).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(3, cfg.d_vocab, (batch, pos), generator=gen).to(device)
    corrupted = torch.randint(3, cfg.d_vocab, (batch, pos), generator=gen).to(device)
    return model, clean, corrupted, metric


def _timed(device: str, fn: Callable[[], object], inference: bool = False) -> Callable[[], None]:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run() -> None:
        with torch.inference_mode(inference):
            fn()
        sync()

    return run


def _workloads(setting: str, device: str, with_exact: bool) -> dict[str, Callable[[], None]]:
    model, clean, corrupted, metric = _setup(setting, device)
    work = {
        "forward": _timed(device, lambda: model(clean), inference=True),
        "eap": _timed(device, lambda: edge_attribution_patching(model, clean, corrupted, metric)),
        "floor": _timed(device, lambda: eap_floor(model, clean, corrupted, metric)),
    }
    if with_exact:
        work["eap-ig"] = _timed(device, lambda: edge_attribution_patching(model, clean, corrupted, metric, "eap-ig"))
        work["exact"] = _timed(device, lambda: edge_patching(model, clean, corrupted, metric, progress=False))
        work["loop"] = _timed(device, lambda: edge_patching_reference(model, clean, corrupted, metric, progress=False))
    return work


def _memory_child(setting: str, device: str) -> float:
    work = _workloads(setting, device, with_exact=False)
    work["forward"]()
    return peak_extra_mib(work["eap"], device)


def memory_mib(setting: str, device: str) -> float:
    """Peak extra memory of EAP over every edge, in a fresh process."""
    cmd = [sys.executable, "-m", "benchmarks.bench_discover", "--memory-child", setting, "--threads", "1"]
    done = subprocess.run([*cmd, "--device", device], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def ratios(setting: str, rounds: int, device: str, with_exact: bool) -> dict[str, tuple[float, float]]:
    times = compare(_workloads(setting, device, with_exact), rounds, 1 if rounds > 1 else 0)
    print(", ".join(f"{k} {w * 1e3:.1f} ms wall / {c * 1e3:.1f} ms cpu" for k, (w, c) in times.items()), flush=True)
    return {k: tuple(t / f for t, f in zip(v, times["forward"], strict=True)) for k, v in times.items()}


def acdc_seconds(device: str) -> dict[str, tuple[float, int, int]]:
    """``{model: (seconds, edges kept, edges)}`` for one ACDC run each."""
    out = {}
    induction = MiniGPT.from_pretrained("induction-2l", device=device).eval()
    clean = repeated_pair_batch(32, 15, torch.Generator().manual_seed(0)).to(device)
    corrupted = repeated_pair_batch(32, 15, torch.Generator().manual_seed(1)).to(device)
    text = MiniGPT.from_pretrained("minigpt-text", device=device).eval()
    val = builtin_corpus().val
    windows = (text_batch(val, 16, 32, torch.Generator().manual_seed(s)).to(device) for s in (0, 1))
    for name, model, (a, b), metric, threshold in (
        ("induction-2l", induction, (clean, corrupted), LossAt(range(17, 31)), 0.1),
        ("minigpt-text", text, tuple(windows), Loss(), 0.035),
    ):
        start = time.perf_counter()
        circuit = acdc(model, a, b, metric, threshold, progress=False)
        out[name] = (time.perf_counter() - start, circuit.size, edge_graph(model).n_edges)
    return out


def _row(label: str, pair: tuple[float, float], target: str, note: str = "-", fmt: str = "{:.2f}") -> tuple:
    return (label, fmt.format(pair[0]), fmt.format(pair[1]), target, note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="ABBA rounds on the locked config")
    parser.add_argument("--gpt2-rounds", type=int, default=1, help="ABBA rounds on the GPT-2-sized config (slow)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="locked config only, few rounds (CI smoke runs)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)  # SETTING, used by memory_mib
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        print(_memory_child(args.memory_child, args.device))
        return
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()}")
    r = ratios("locked", 2 if args.quick else args.rounds, args.device, with_exact=True)
    speedup = tuple(loop / exact for loop, exact in zip(r["loop"], r["exact"], strict=True))
    d = ratios("locked-logit-diff", 2 if args.quick else args.rounds, args.device, with_exact=True)
    speedup_d = tuple(loop / exact for loop, exact in zip(d["loop"], d["exact"], strict=True))
    rows = [
        _row("locked 64x32, loss: EAP, 137 edges / forward", r["eap"], "<= 3", f"floor {r['floor'][0]:.2f}"),
        _row("locked: EAP floor (corrupted fwd + clean fwd with graph + backward) / forward", r["floor"], "-"),
        _row("locked: EAP-IG, 5 steps / forward", r["eap-ig"], "-"),
        _row("locked: exact edge patching, batched / forward", r["exact"], "-"),
        _row("locked: one hooked forward per edge / forward", r["loop"], "-", "138 forwards"),
        _row("locked: loop / batched exact (speed-up)", speedup, ">= 5x", "every position read", "{:.1f}x"),
        _row(
            "locked 64x32, logit diff at the last position: EAP / forward",
            d["eap"],
            "<= 3",
            f"floor {d['floor'][0]:.2f}",
        ),
        _row("locked, logit diff: exact edge patching, batched / forward", d["exact"], "-"),
        _row("locked, logit diff: one hooked forward per edge / forward", d["loop"], "-"),
        _row("locked, logit diff: loop / batched exact (speed-up)", speedup_d, ">= 5x", "-", "{:.1f}x"),
    ]
    for name, (seconds, kept, edges) in acdc_seconds(args.device).items():
        rows.append((f"ACDC on {name} ({kept} of {edges} edges kept), seconds", f"{seconds:.2f}", "-", "< 30 s", "-"))
    if not args.quick:
        g = ratios("gpt2", args.gpt2_rounds, args.device, with_exact=False)
        mem = memory_mib("gpt2", args.device)
        rows += [
            _row(
                "gpt2-sized 4x128, logit diff: EAP, 32,936 edges / forward",
                g["eap"],
                "< 4",
                f"floor {g['floor'][0]:.2f}",
            ),
            _row("gpt2-sized: EAP floor / forward", g["floor"], "-"),
            ("gpt2-sized: EAP peak extra memory (MiB)", f"{mem:.0f}", "", "printed", "-"),
        ]
    print(table(rows, ("measure", "wall", "cpu", "target", "note")))


if __name__ == "__main__":
    main()
