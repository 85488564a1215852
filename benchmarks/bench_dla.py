"""Direct logit attribution of every component (per head) against one forward.

    python -m benchmarks.bench_dla [--rounds 30] [--device cpu|cuda] [--quick]

Locked config, batch 64 x 32. ``dla`` is ``direct_logit_attribution(model, tokens, cache,
per="head")`` on a cache recorded once (the frame with every head, MLP, embedding and bias row at
every position); ``cache + dla`` adds the ``run_with_cache`` that produces the cache. The issue
targets dla / forward <= 1.5. Variants run in ABBA order in one process; nothing here passes or
fails on wall-clock time.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import abba, synced, table
from interp import direct_logit_attribution
from model import MiniGPT, ModelConfig


def measure(rounds: int, device: str, batch: int = 64, pos: int = 32) -> tuple[dict[str, float], int]:
    model = MiniGPT(ModelConfig(), seed=0).to(device).eval()
    tokens = torch.randint(0, model.cfg.d_vocab, (batch, pos), generator=torch.Generator().manual_seed(0)).to(device)

    def run(fn):
        return synced(device, fn)

    with torch.inference_mode():
        _, cache = model.run_with_cache(tokens)
        n_rows = len(direct_logit_attribution(model, tokens, cache, per="head"))
        variants = {
            "forward": run(lambda: model(tokens)),
            "dla": run(lambda: direct_logit_attribution(model, tokens, cache, per="head")),
            "cache + dla": run(
                lambda: direct_logit_attribution(model, tokens, model.run_with_cache(tokens)[1], per="head")
            ),
        }
        return abba(variants, rounds), n_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="few rounds (for CI smoke runs)")
    args = parser.parse_args()
    t, n_rows = measure(3 if args.quick else args.rounds, args.device)
    row = (
        "locked (64x32)",
        str(n_rows),
        f"{t['forward'] * 1e3:.2f}",
        f"{t['dla'] * 1e3:.2f}",
        f"{t['cache + dla'] * 1e3:.2f}",
        f"{t['dla'] / t['forward']:.3f}",
        f"{t['cache + dla'] / t['forward']:.3f}",
    )
    header = ("config", "rows", "forward ms", "dla ms", "cache+dla ms", "dla/forward (<=1.5)", "(cache+dla)/forward")
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()}")
    print(table([row], header))


if __name__ == "__main__":
    main()
