"""The ``minigpt ablate``, ``minigpt sweep`` and ``minigpt patch`` subcommands (registered in :mod:`interp.cli.main`).

Each prints a small table and, with ``--out file.csv``, writes the same table atomically. The
metric is the mean next-token loss unless ``--answer C --wrong D`` (logit difference of two
characters after the prompt), ``--target C`` (probability of a character after the prompt) or
``--loss-positions A:B`` (loss on the characters at positions A..B-1, counting <bos> as 0) says
otherwise. Heavy imports happen inside the functions, so ``minigpt --help`` stays fast.
"""

from __future__ import annotations

import argparse

from interp.cli.common import MODEL_HELP, check_out, check_top, emit, load_model, prompt_tokens, symbol_id

ABLATE_EXAMPLES = (
    '  minigpt ablate --model induction-2l --heads L1H0 --prompt "abcdefghijklmnoabcdefghijklmno"\n'
    '  minigpt ablate --model minigpt-text --heads L1H2,L0H3 --method mean --prompt "the cat sat on the mat"\n'
    '  minigpt ablate --model minigpt-text --neurons L1N37 --mlps 0 --prompt "hello" --out ablation.csv'
)
SWEEP_EXAMPLES = (
    '  minigpt sweep --model induction-2l --prompt "abcdefghijklmnoabcdefghijklmno" --loss-positions 16:31\n'
    '  minigpt sweep --model minigpt-text --what neurons --layers 1 --prompt "the cat" --out neurons.csv'
)
PATCH_EXAMPLES = (
    '  minigpt patch --model minigpt-text --clean "the cat sat" --corrupted "the dog sat" --grid resid_pre\n'
    '  minigpt patch --model induction-2l --clean "abcdeabcde" --corrupted "abxdeabcde" --grid heads --attribution'
)


def _add_model_and_metric(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="minigpt-text", help=MODEL_HELP)
    p.add_argument("--answer", help="metric: logit of this character minus --wrong's, after the prompt")
    p.add_argument("--wrong", help="the contrast character of --answer")
    p.add_argument("--target", help="metric: probability of this character after the prompt")
    p.add_argument("--loss-positions", help="metric: loss on the characters at positions A:B (<bos> is 0)")
    p.add_argument("--out", help="also write the table to this CSV file")


def _add_reference(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="zero", choices=["zero", "mean", "resample"], help="default zero")
    p.add_argument(
        "--reference", action="append",
        help="text for mean/resample ablation (repeat it; default: 64 windows of the built-in corpus)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="resampling seed (default 0)")


def add_ablate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", required=True, help="the text to run (a <bos> is put first)")
    p.add_argument("--heads", help="heads, comma-separated: L1H2,L0H3 (or LAYER.HEAD: 1.2,0.3)")
    p.add_argument("--attn-layers", help="whole attention layers: 0,1")
    p.add_argument("--mlps", help="whole MLP layers: 0,1")
    p.add_argument("--neurons", help="MLP neurons, comma-separated: L1N37,L0N5 (or LAYER.NEURON: 1.37,0.5)")
    p.add_argument("--positions", help="residual stream entering a layer at a position, LAYER.POS: 0.5")
    _add_reference(p)
    _add_model_and_metric(p)


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", required=True, help="the text to run (a <bos> is put first)")
    p.add_argument("--what", default="heads", choices=["heads", "neurons"], help="what to ablate one by one")
    p.add_argument("--layers", help="only these layers: 0,1 (default all)")
    p.add_argument("--top", type=int, default=20, help="rows to print, largest |delta| first (default 20)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_reference(p)
    _add_model_and_metric(p)


def add_patch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clean", required=True, help="the clean prompt")
    p.add_argument("--corrupted", required=True, help="the corrupted prompt, as many characters as --clean")
    p.add_argument("--grid", default="resid_pre", choices=["resid_pre", "attn_out", "mlp_out", "heads", "heads_by_pos"])
    p.add_argument("--attribution", action="store_true", help="the gradient estimate instead of real patching")
    p.add_argument("--top", type=int, default=20, help="rows to print, largest |normalized| first (default 20)")
    _add_model_and_metric(p)


def _metric(model, args: argparse.Namespace):
    from interp.common.metrics import LogitDiff, Loss, LossAt, TargetProb

    if (args.answer is None) != (args.wrong is None):
        raise ValueError("--answer and --wrong go together: give both characters")
    if args.answer is not None:
        return LogitDiff(symbol_id(model, args.answer, "--answer"), symbol_id(model, args.wrong, "--wrong"))
    if args.target is not None:
        return TargetProb(symbol_id(model, args.target, "--target"))
    if args.loss_positions is not None:
        start, _, stop = args.loss_positions.partition(":")
        if not (start.isdigit() and stop.isdigit()):
            raise ValueError(f"--loss-positions must look like 16:31, got {args.loss_positions!r}")
        return LossAt(range(int(start), int(stop)))
    return Loss()


def _reference(model, args: argparse.Namespace, n_pos: int):
    """Reference tokens for mean/resample: the --reference texts, or windows of the built-in corpus."""
    import torch

    if args.method == "zero":
        return None
    if args.reference:
        from model.network.token_ids import prompt_ids

        ids = [prompt_ids(model.tokenizer, text, model.cfg.n_ctx, what="--reference") for text in args.reference]
        width = min(len(i) for i in ids)
        if width < n_pos:
            raise ValueError(f"every --reference needs at least {n_pos - 1} characters, like the prompt")
        return torch.tensor([i[:width] for i in ids], device=model.device)
    from interp.intervene.replace import corpus_reference

    return corpus_reference(model, n_pos=n_pos, seed=args.seed)


def run_ablate(args: argparse.Namespace) -> int:
    import pandas as pd

    from interp.common.metrics import Loss
    from interp.intervene.ablate import ablate

    check_out(args.out)
    model = load_model(args.model)
    tokens = prompt_tokens(model, args.prompt)
    metric = _metric(model, args)
    kwargs = {"heads": args.heads, "attn_layers": args.attn_layers, "mlps": args.mlps}
    kwargs.update(neurons=args.neurons, positions=args.positions)
    if all(v is None for v in kwargs.values()):
        raise ValueError("nothing to ablate: give --heads, --attn-layers, --mlps, --neurons or --positions")
    before = ablate(model, tokens)
    after = ablate(model, tokens, **kwargs, method=args.method, reference=_reference(model, args, tokens.shape[1]))
    top = int(before.logits[0, -1].argmax())
    char = model.tokenizer.decode([top])
    rows = [("loss", before.loss, after.loss)]
    if not isinstance(metric, Loss):
        rows.append((str(metric), before.metric(metric), after.metric(metric)))
    probs = [float(r.logits[0, -1].softmax(-1)[top]) for r in (before, after)]
    rows.append((f"p(next = {char!r}), the top prediction before", *probs))
    frame = pd.DataFrame(rows, columns=["measure", "before", "after"])
    frame["change"] = frame["after"] - frame["before"]
    emit(frame, args, "\n".join(str(spec) for spec in after.ablations))
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    from interp.intervene.parsing import parse_layers
    from interp.intervene.sweeps import head_sweep, neuron_sweep

    check_top(args.top)
    check_out(args.out)
    model = load_model(args.model)
    tokens = prompt_tokens(model, args.prompt)
    sweep = head_sweep if args.what == "heads" else neuron_sweep
    frame = sweep(
        model, tokens, args.method, _metric(model, args), reference=_reference(model, args, tokens.shape[1]),
        seed=args.seed, layers=None if args.layers is None else parse_layers(args.layers),
        progress=False if args.no_progress else None,
    )  # fmt: skip
    shown = frame.reindex(frame.delta.abs().sort_values(ascending=False).index).head(args.top)
    title = f"{args.method}-ablating each of {len(frame)} {args.what} one at a time ({_metric(model, args)})"
    emit(shown, args, title, full=frame)  # the file holds every row, not only those printed
    return 0


def run_patch(args: argparse.Namespace) -> int:
    from interp.intervene.patching import activation_patching, attribution_patching

    check_top(args.top)
    check_out(args.out)
    model = load_model(args.model)
    clean = prompt_tokens(model, args.clean, "--clean")
    corrupted = prompt_tokens(model, args.corrupted, "--corrupted")
    patch = attribution_patching if args.attribution else activation_patching
    frame = patch(model, clean, corrupted, _metric(model, args), args.grid)
    shown = frame.reindex(frame.normalized.abs().sort_values(ascending=False).index).head(args.top)
    kind = "attribution patching" if args.attribution else "activation patching"
    title = f"{kind} over {args.grid}: normalized 0 = corrupted, 1 = clean ({_metric(model, args)})"
    title += f"\nmetric clean {frame.metric_clean.iloc[0]:.4f}, corrupted {frame.metric_corrupted.iloc[0]:.4f}"
    emit(shown.drop(columns=["metric_clean", "metric_corrupted"]), args, title, full=frame)
    return 0
