"""A Hugging Face model folder: our forward against ``transformers``' forward on the same weights, ``run_with_cache``
against our forward, and the peak memory of loading the folder.

    python -m benchmarks.bench_hf [--rounds 10] [--device cpu|cuda] [--quick]

The folder is a randomly initialised GPT-2-small-sized model (12 layers x 768, vocabulary 50,257) saved with
``save_pretrained`` in a temporary folder (no download). Timings are medians of ABBA rounds in one process; the
loading peak is a fresh process's resident-set high-water mark while it loads the folder, less its resident set just
before (after the imports), beside the size of the weights. Nothing here passes or fails on wall-clock time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.common import abba, synced, table

GPT2_SMALL = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, n_inner=3072)
QUICK = dict(vocab_size=1000, n_positions=256, n_embd=256, n_layer=4, n_head=8, n_inner=1024)
IMPORTS = (  # everything loading touches, imported (and warmed up on a tiny model) before the measurement
    "import torch, transformers, safetensors.torch, tokenizers, model, model.storage.hf_folder\n"
    "from model import MiniGPT, ModelConfig\nMiniGPT(ModelConfig(), seed=0).process_weights_()"
)


def gpt2_folder(folder: Path, sizes: dict) -> int:
    """A random GPT-2 of ``sizes`` saved in ``folder``; returns its number of weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(**sizes, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).eval()
    hf.save_pretrained(folder)
    return sum(p.numel() for p in hf.parameters())


def loading_peak_mib(folder: Path) -> tuple[float, float]:
    """``(resident MiB after the imports, peak resident MiB while loading less that)``, measured in a fresh Python
    that only imports and loads (Linux ``/proc/self/status``: ``VmRSS`` then ``VmHWM``)."""
    code = (
        f"{IMPORTS}\nimport gc, re\n"
        "mib = lambda key: int(re.search(key + r':\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024\n"
        "gc.collect()\nopen('/proc/self/clear_refs', 'w').write('5')\nbefore = mib('VmRSS')\n"  # 5: reset VmHWM
        f"m = model.MiniGPT.from_pretrained({str(folder)!r})\n"
        "print(before, mib('VmHWM') - before)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    return float(out[-2]), float(out[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="a small GPT-2 and 3 rounds (a smoke run)")
    args = parser.parse_args()
    from transformers import GPT2LMHeadModel

    from model import MiniGPT

    sizes = QUICK if args.quick else GPT2_SMALL
    with tempfile.TemporaryDirectory(prefix="bench-hf-") as tmp:
        folder = Path(tmp)
        n_weights = gpt2_folder(folder, sizes)
        base, growth = loading_peak_mib(folder)
        hf = GPT2LMHeadModel.from_pretrained(folder).to(args.device).eval()
        ours = MiniGPT.from_pretrained(str(folder), device=args.device).eval()
    tokens = torch.randint(0, sizes["vocab_size"], (4, 128), device=args.device)
    with torch.inference_mode():
        err = (ours(tokens).log_softmax(-1) - hf(tokens).logits.log_softmax(-1)).abs().max().item()
        t = abba(
            {
                "transformers": synced(args.device, lambda: hf(tokens)),
                "forward": synced(args.device, lambda: ours(tokens)),
                "run_with_cache": synced(args.device, lambda: ours.run_with_cache(tokens)),
            },
            3 if args.quick else args.rounds,
        )
    label = "gpt2-small-sized (4x128)" if not args.quick else "small gpt2 (4x128)"
    ms = [f"{t[k] * 1e3:.1f}" for k in ("transformers", "forward", "run_with_cache")]
    ratios = [f"{t['forward'] / t['transformers']:.3f}", f"{t['run_with_cache'] / t['forward']:.3f}"]
    rows = [(label, *ms, *ratios, f"{err:.1e}")]
    header = ("config", "transformers ms", "forward ms", "cache ms", "forward/transformers (<=1.10)",
              "cache/forward (<=1.20)", "max |log p diff|")  # fmt: skip
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()}")
    print(table(rows, header))
    weights_mib = n_weights * 4 / 2**20
    print(
        f"loading the folder: peak {growth:,.0f} MiB above the imports ({base:,.0f} MiB) for {weights_mib:,.0f} "
        f"MiB of float32 weights ({growth / weights_mib:.2f}x)"
    )
    print("Llama-style config: skipped (the Llama family is not readable yet)")


if __name__ == "__main__":
    main()
