"""TransformerLens's patching functions (interp.compat.patching, on the batched engine) against TransformerLens's
own loop (one full hooked forward per cell, as its ``generic_activation_patch`` runs) and beside our
``activation_patching`` on the same grid.

    python -m benchmarks.bench_tl_patching [--rounds 3] [--batch 8] [--pos 32]

Locked config (2 layers, 4 heads, d_model 64), random special-free tokens, a logit-difference metric at the last
position. Timed in one process, ABBA order (benchmarks.common.abba); printed as seconds and the loop's time over
ours. Nothing passes or fails on time.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import abba, table
from interp import LogitDiff, activation_patching
from interp.compat import patching, utils
from model import MiniGPT, ModelConfig

CASES = [  # function, activation, setter, axes, our activation_patching grid
    ("get_act_patch_resid_pre", "resid_pre", patching.layer_pos_patch_setter, ("layer", "pos"), "resid_pre"),
    ("get_act_patch_resid_mid", "resid_mid", patching.layer_pos_patch_setter, ("layer", "pos"), None),
    ("get_act_patch_attn_out", "attn_out", patching.layer_pos_patch_setter, ("layer", "pos"), "attn_out"),
    ("get_act_patch_mlp_out", "mlp_out", patching.layer_pos_patch_setter, ("layer", "pos"), "mlp_out"),
    ("get_act_patch_attn_head_out_all_pos", "z", patching.layer_head_vector_patch_setter, ("layer", "head"),
     "heads"),
    ("get_act_patch_attn_head_q_all_pos", "q", patching.layer_head_vector_patch_setter, ("layer", "head"), None),
    ("get_act_patch_attn_head_k_all_pos", "k", patching.layer_head_vector_patch_setter, ("layer", "head"), None),
    ("get_act_patch_attn_head_v_all_pos", "v", patching.layer_head_vector_patch_setter, ("layer", "head"), None),
    ("get_act_patch_attn_head_pattern_all_pos", "pattern", patching.layer_head_pattern_patch_setter,
     ("layer", "head_index"), None),
    ("get_act_patch_attn_head_out_by_pos", "z", patching.layer_pos_head_vector_patch_setter,
     ("layer", "pos", "head"), "heads_by_pos"),
    ("get_act_patch_attn_head_q_by_pos", "q", patching.layer_pos_head_vector_patch_setter,
     ("layer", "pos", "head"), None),
    ("get_act_patch_attn_head_k_by_pos", "k", patching.layer_pos_head_vector_patch_setter,
     ("layer", "pos", "head"), None),
    ("get_act_patch_attn_head_v_by_pos", "v", patching.layer_pos_head_vector_patch_setter,
     ("layer", "pos", "head"), None),
    ("get_act_patch_attn_head_pattern_by_pos", "pattern", patching.layer_head_pos_pattern_patch_setter,
     ("layer", "head_index", "dest_pos"), None),
]  # fmt: skip


def tl_loop(model, corrupted, clean_cache, metric, setter, name, axes):
    """TransformerLens's generic_activation_patch, written out: one hooked full forward per cell."""
    n_pos = corrupted.shape[1]
    sizes = {"layer": model.cfg.n_layers, "pos": n_pos, "dest_pos": n_pos, "head": model.cfg.n_heads,
             "head_index": model.cfg.n_heads}  # fmt: skip
    frame = patching.make_df_from_ranges([sizes[a] for a in axes], axes)
    out = torch.zeros([sizes[a] for a in axes])
    for index in frame.values.tolist():
        hook_name, clean = utils.get_act_name(name, index[0]), clean_cache[utils.get_act_name(name, index[0])]
        hook = lambda act, hook, index=index, clean=clean: setter(act, index, clean)  # noqa: E731
        out[tuple(index)] = float(metric(model.run_with_hooks(corrupted, fwd_hooks=[(hook_name, hook)])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--pos", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = MiniGPT(ModelConfig(), seed=0).eval()
    clean = model.random_tokens(args.batch, args.pos, seed=0)
    corrupted = clean.clone()
    corrupted[:, args.pos // 2] = model.random_tokens(args.batch, 1, seed=1)[:, 0]
    answer, wrong = 20, 30
    _, clean_cache = model.run_with_cache(clean)

    def metric(logits):
        return (logits[:, -1, answer] - logits[:, -1, wrong]).mean()

    ours_metric = LogitDiff(answer=answer, wrong=wrong)
    rows = []
    with torch.no_grad():
        for fn, name, setter, axes, grid in CASES:
            variants = {
                "ours": lambda fn=fn: getattr(patching, fn)(model, corrupted, clean_cache, metric),
                "loop": lambda s=setter, n=name, a=axes: tl_loop(model, corrupted, clean_cache, metric, s, n, a),
            }
            if grid is not None:
                variants["activation_patching"] = lambda g=grid: activation_patching(
                    model, clean, corrupted, ours_metric, grid=g, progress=False
                )
            times = abba(variants, rounds=args.rounds, warmup=1)
            frame = times.get("activation_patching")
            rows.append(
                (
                    fn,
                    f"{times['ours'] * 1e3:.1f}",
                    f"{times['loop'] * 1e3:.1f}",
                    f"{times['loop'] / times['ours']:.1f}x",
                    "-" if frame is None else f"{frame * 1e3:.1f}",
                )
            )
    print(f"locked config, batch {args.batch} x {args.pos}, {args.rounds} ABBA rounds, 1 thread")
    print(table(rows, ("function", "ours ms", "TL-style loop ms", "loop / ours", "activation_patching ms")))


if __name__ == "__main__":
    main()
