"""Forward and run_with_cache against an unhooked plain-PyTorch model of the same architecture.

    python -m benchmarks.bench_forward [--rounds 30] [--device cpu|cuda] [--quick]

Prints medians (ms) and the ratios the foundation issue targets: our forward / reference
(<= 1.10) and full run_with_cache / our forward (<= 1.20). Variants run in ABBA order in one
process; nothing here passes or fails on wall-clock time.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import abba, synced, table
from benchmarks.reference import PlainGPT
from model import MiniGPT, ModelConfig

CONFIGS = {
    "locked (64x32)": (ModelConfig(), 64, 32),
    "gpt2-small-sized (4x128)": (
        ModelConfig(d_model=768, n_heads=12, n_layers=12, d_ff=3072, d_vocab=50257, n_ctx=1024),
        4,
        128,
    ),
}


def measure(cfg: ModelConfig, batch: int, pos: int, rounds: int, device: str) -> dict[str, float]:
    model = MiniGPT(cfg, seed=0).to(device).eval()
    plain = PlainGPT.from_minigpt(model).eval()
    tokens = torch.randint(0, cfg.d_vocab, (batch, pos), device=device)

    def run(fn):
        return synced(device, fn)

    with torch.inference_mode():
        variants = {
            "reference": run(lambda: plain(tokens)),
            "forward": run(lambda: model(tokens)),
            "run_with_cache": run(lambda: model.run_with_cache(tokens)),
        }
        return abba(variants, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="locked config only, few rounds (for CI smoke runs)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--locked-only", action="store_true", help="skip the GPT-2-small-sized config")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for label, (cfg, batch, pos) in CONFIGS.items():
        if (args.quick or args.locked_only) and "gpt2" in label:
            continue
        t = measure(cfg, batch, pos, 3 if args.quick else args.rounds, args.device)
        rows.append(
            (
                label,
                f"{t['reference'] * 1e3:.2f}",
                f"{t['forward'] * 1e3:.2f}",
                f"{t['run_with_cache'] * 1e3:.2f}",
                f"{t['forward'] / t['reference']:.3f}",
                f"{t['run_with_cache'] / t['forward']:.3f}",
            )
        )
    header = ("config", "reference ms", "forward ms", "cache ms", "forward/ref (<=1.10)", "cache/forward (<=1.20)")
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()}")
    print(table(rows, header))


if __name__ == "__main__":
    main()
