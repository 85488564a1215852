"""TransformerLens's own patching functions, timed in a TransformerLens 2.x venv (not the project's venv), on the
config and input of benchmarks/bench_tl_patching.py (locked sizes, random weights, batch 8 x 32, logit difference at
the last position), for the side-by-side table there::

    /work/tlvenv/bin/python -m benchmarks.tl_patching_timings [--rounds 3]

Prints the median seconds of each function over ``--rounds`` runs, one thread. Different process from ours, so
compare these with ours as a rough ratio only (ours are measured ABBA in one process against the TL-style loop).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig, patching

NAMES = ["get_act_patch_resid_pre", "get_act_patch_resid_mid", "get_act_patch_attn_out", "get_act_patch_mlp_out",
         "get_act_patch_attn_head_out_all_pos", "get_act_patch_attn_head_q_all_pos",
         "get_act_patch_attn_head_k_all_pos", "get_act_patch_attn_head_v_all_pos",
         "get_act_patch_attn_head_pattern_all_pos", "get_act_patch_attn_head_out_by_pos",
         "get_act_patch_attn_head_q_by_pos", "get_act_patch_attn_head_k_by_pos", "get_act_patch_attn_head_v_by_pos",
         "get_act_patch_attn_head_pattern_by_pos"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=2, d_model=64, n_ctx=32, d_head=16, n_heads=4, d_mlp=256, d_vocab=64,
                                  act_fn="gelu", normalization_type="LN", device="cpu")  # fmt: skip
    model = HookedTransformer(cfg).eval()
    clean = torch.randint(3, 64, (8, 32), generator=torch.Generator().manual_seed(0))
    corrupted = clean.clone()
    corrupted[:, 16] = torch.randint(3, 64, (8,), generator=torch.Generator().manual_seed(1))
    _, cache = model.run_with_cache(clean)

    def metric(logits):
        return (logits[:, -1, 20] - logits[:, -1, 30]).mean()

    print("TransformerLens", "locked config, batch 8 x 32, 1 thread")
    print("| function | TransformerLens ms |\n|---|---|")
    with torch.no_grad():
        for name in NAMES:
            fn = getattr(patching, name)
            times = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                fn(model, corrupted, cache, metric)
                times.append(time.perf_counter() - start)
            print(f"| {name} | {statistics.median(times) * 1e3:.1f} |")


if __name__ == "__main__":
    main()
