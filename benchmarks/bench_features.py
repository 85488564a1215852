"""Sparse autoencoders: training throughput (activations per second) and the forward overhead of running with an
SAE spliced in, as a ratio to the plain forward.

    python -m benchmarks.bench_features [--rounds 5] [--steps 100] [--device cpu|cuda] [--threads N]

* training: ``train_sae`` on a ``[n, 64]`` tensor of activations (the width of minigpt-text's residual stream),
  d_sae 512, TopK k=16, batch 1024, and on the model source (``(minigpt-text, blocks.1.hook_resid_post,
  windows)``: the model runs to stream the activations), in activations per second;
* forward: minigpt-text on 64 windows of 32 characters, plain ``model(tokens)`` against
  ``model.run_with_saes(tokens, [sae])`` (the shipped ``minigpt-text-resid-post-1``) and
  ``run_with_cache_with_saes`` (features recorded), timed in one process in ABBA order
  (benchmarks.common.abba) and printed as ratios; nothing passes or fails on time.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import abba, synced, table
from interp.features.sae import SAE
from interp.features.training import train_sae
from model import MiniGPT
from model.training.data import builtin_corpus, text_batch


def training_rates(model: MiniGPT, windows: torch.Tensor, steps: int) -> list[tuple[str, str, str]]:
    """Activations per second of ``train_sae`` on a tensor and on the model source."""
    acts = torch.randn(200_000, model.cfg.d_model, generator=torch.Generator().manual_seed(0), device=model.device)
    rows = []
    sources = {"tensor [200000, 64]": acts, "model source (blocks.1.hook_resid_post)":
               (model, "blocks.1.hook_resid_post", windows)}  # fmt: skip
    for name, source in sources.items():
        start = time.perf_counter()
        train_sae(source, 512, k=16, steps=steps, batch_size=1024, seed=0, progress=False, device=str(model.device))
        seconds = time.perf_counter() - start
        rows.append((name, f"{steps * 1024 / seconds:,.0f}", f"{seconds / steps * 1000:.1f}"))
    return rows


def forward_ratios(model: MiniGPT, tokens: torch.Tensor, rounds: int) -> dict[str, float]:
    sae = SAE.from_pretrained("minigpt-text-resid-post-1", device=model.device)
    dev = str(model.device)
    with torch.no_grad():
        times = abba(
            {
                "plain": synced(dev, lambda: model(tokens)),
                "run_with_saes": synced(dev, lambda: model.run_with_saes(tokens, [sae])),
                "run_with_cache_with_saes": synced(dev, lambda: model.run_with_cache_with_saes(tokens, [sae])),
            },
            rounds,
        )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100, help="training steps timed per source")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = MiniGPT.from_pretrained("minigpt-text").to(args.device).eval()
    data = builtin_corpus(model.tokenizer)
    windows = text_batch(data.train, 4096, model.cfg.n_ctx, torch.Generator().manual_seed(0))
    tokens = windows[:64].to(args.device)
    print(f"device {args.device}, {args.threads} thread(s)\n")
    print("SAE training, d_sae 512, TopK k=16, batch 1024:")
    print(table(training_rates(model, windows, args.steps), ("source", "activations / s", "ms / step")))
    times = forward_ratios(model, tokens, args.rounds)
    rows = [(name, f"{t * 1000:.2f}", f"{t / times['plain']:.2f}") for name, t in times.items()]
    print(f"\nforward on {tuple(tokens.shape)} with minigpt-text-resid-post-1 spliced in (ABBA, {args.rounds} rounds):")
    print(table(rows, ("variant", "ms (median)", "x plain forward")))


if __name__ == "__main__":
    main()
