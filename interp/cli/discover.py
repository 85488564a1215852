"""The ``minigpt circuit`` subcommand (registered in :mod:`interp.cli.main`): circuit discovery on two prompts.

``--method exact`` (edge patching of every edge), ``eap``, ``eap-ig`` print the edges that matter most and,
with ``--out edges.csv``, write every edge's score; ``acdc`` prints the circuit it keeps in words, its
faithfulness, and writes its edges. The metric is the one of ``minigpt patch`` (``--answer/--wrong``,
``--target``, ``--loss-positions``, else the loss), read against the clean prompt. Heavy imports happen
inside the functions, so ``minigpt --help`` stays fast.
"""

from __future__ import annotations

import argparse

from interp.cli.common import check_out, check_top, emit, load_model, prompt_tokens
from interp.cli.intervene import _add_model_and_metric, _metric

CIRCUIT_EXAMPLES = (
    '  minigpt circuit --model induction-2l --method acdc --clean "abcdefghabcdefgh" --corrupted "qrstuvwxqrstuvwx"'
    " --loss-positions 10:17\n"
    '  minigpt circuit --model minigpt-text --method eap-ig --clean "the cat sat" --corrupted "the dog sat" '
    "--out edges.csv"
)
METHODS = ("exact", "eap", "eap-ig", "acdc")
THRESHOLD_SHARE = 0.02  # ACDC's default threshold: this share of |metric clean - metric corrupted|


def add_circuit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clean", required=True, help="the clean prompt: the behaviour to explain")
    p.add_argument("--corrupted", required=True, help="the corrupted prompt, as many characters as --clean")
    p.add_argument("--method", default="eap", choices=METHODS, help="default eap")
    p.add_argument(
        "--threshold", type=float,
        help=f"acdc: the largest metric change an edge may cause and still go (default {THRESHOLD_SHARE:g} x the "
        "clean-corrupted gap)",
    )  # fmt: skip
    p.add_argument("--steps", type=int, help="eap-ig: interpolation steps (default 5)")
    p.add_argument("--top", type=int, default=20, help="edges to print, largest |score| first (default 20)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_model_and_metric(p)


def _acdc(model, clean, corrupted, metric, args: argparse.Namespace) -> int:
    from interp.discover.acdc import acdc
    from interp.discover.patching import edge_patching

    threshold = args.threshold
    if threshold is None:  # the gap, from the cheapest exact run: the edges into the logits
        some = edge_patching(model, clean, corrupted, metric, edges=[("embed", "logits")], progress=False)
        threshold = THRESHOLD_SHARE * abs(float(some.metric_clean.iloc[0] - some.metric_corrupted.iloc[0]))
    circuit = acdc(model, clean, corrupted, metric, threshold, progress=False if args.no_progress else None)
    faithful = circuit.faithfulness(model, clean, corrupted, metric) if circuit.size else float("nan")
    title = f"ACDC at threshold {threshold:.4g} ({metric}): faithfulness {faithful:.3f}\n{circuit}"
    frame = circuit.to_frame()
    emit(frame.head(args.top), args, title, full=frame)
    return 0


def run_circuit(args: argparse.Namespace) -> int:
    check_top(args.top)
    check_out(args.out)
    if args.steps is not None and args.method != "eap-ig":
        raise ValueError("--steps is for --method eap-ig")
    if args.threshold is not None and args.method != "acdc":
        raise ValueError("--threshold is for --method acdc")
    model = load_model(args.model)
    clean = prompt_tokens(model, args.clean, "--clean")
    corrupted = prompt_tokens(model, args.corrupted, "--corrupted")
    if clean.shape != corrupted.shape:
        raise ValueError(
            f"--clean has {clean.shape[1] - 1} characters and --corrupted {corrupted.shape[1] - 1}; give them the "
            "same length, so that every position has a counterpart"
        )
    metric = _metric(model, args)
    if args.method == "acdc":
        return _acdc(model, clean, corrupted, metric, args)
    from interp.discover.attribution import edge_attribution_patching
    from interp.discover.patching import edge_patching

    if args.method == "exact":
        frame = edge_patching(model, clean, corrupted, metric, progress=False if args.no_progress else None)
        frame = frame.drop(columns=["metric_clean", "metric_corrupted"])
    else:
        frame = edge_attribution_patching(model, clean, corrupted, metric, args.method, args.steps)
    shown = frame.reindex(frame.abs_score.sort_values(ascending=False).index).head(args.top)
    title = f"{args.method}: {len(frame)} edges, score = change of the metric when the edge is corrupted ({metric})"
    emit(shown, args, title, full=frame)
    return 0
