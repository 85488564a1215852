"""The ``minigpt dla`` and ``minigpt export`` subcommands (registered in :mod:`interp.cli.main`).

``dla`` prints the largest direct contributions (:func:`interp.observe.dla.direct_logit_attribution`) to
one position's logit and checks that all of them sum to the logit of the forward pass; ``export``
writes every position's contributions to CSV (:func:`interp.common.export.contributions_to_csv`, atomic).

Positions count the ``<bos>`` that is put before the prompt as 0, so position N predicts the
character after the prompt's first N characters; the default is the last position. Without
``--target``, the target is the next character of the prompt, and at the last position the model's
own top prediction. A sum that misses the logit by more than :data:`TOLERANCE` is a bug in the
library, not in the input: the command says so on stderr, writes nothing and exits 1.
The model and the analyses are imported inside the run functions.
"""

from __future__ import annotations

import argparse
import sys

from interp.cli.common import MODEL_HELP, check_out, load_model, prompt_tokens, symbol_id

PER = ("layer", "component", "head", "neuron")  # interp.observe.dla.PER, without importing torch for --help
TOLERANCE = 1e-4  # |sum of contributions - logit| allowed, float32 (the DLA invariant)
DLA_EXAMPLES = (
    '  minigpt dla --model minigpt-text --prompt "the cat sat on the m"\n'
    '  minigpt dla --model minigpt-text --prompt "the cat sat on the m" --target a --contrast e --per head\n'
    '  minigpt dla --model induction-2l --prompt "abcdefgabcdef" --per head --pos 9 --top 5\n'
    '  minigpt dla --model minigpt-text --prompt "hello" --per neuron --out dla.csv  # every position to CSV'
)
EXPORT_EXAMPLES = (
    '  minigpt export --model minigpt-text --prompt "the cat sat on the mat" --out contributions.csv\n'
    '  minigpt export --model minigpt-text --prompt "the cat sat" --per head --out heads.csv\n'
    '  minigpt export --model induction-2l --prompt "abcdabcd" --target a --contrast b --out diff.csv'
)


# ------------------------------------------------------------------------------------------- arguments
def _add_prompt_arguments(p: argparse.ArgumentParser, per_default: str) -> None:
    p.add_argument("--model", default="minigpt-text", help=MODEL_HELP)
    p.add_argument("--prompt", required=True, help="the text to run (lower-cased; a <bos> is put first)")
    p.add_argument("--target", help="attribute the logit of this character (default: the next character)")
    p.add_argument("--contrast", help="attribute logit[target] - logit[contrast] instead of logit[target]")
    p.add_argument("--per", default=per_default, choices=list(PER), help=f"granularity (default {per_default})")


def add_dla_arguments(p: argparse.ArgumentParser) -> None:
    _add_prompt_arguments(p, "component")
    p.add_argument("--pos", type=int, default=-1, help="position to explain, <bos> is 0 (default -1: the last)")
    p.add_argument("--top", type=int, default=10, help="rows to print, largest |contribution| first (default 10)")
    p.add_argument("--out", help="also write every position's contributions to this CSV file")


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    _add_prompt_arguments(p, "component")
    p.add_argument("--out", required=True, help="the CSV file to write (its directory must exist)")


# ------------------------------------------------------------------------------------------- shared steps
def _contributions(args: argparse.Namespace):
    """Load, tokenize, validate the targets, run once with the cache and attribute every position."""
    from interp.observe.dla import direct_logit_attribution

    check_out(args.out)
    model = load_model(args.model)
    tokens = prompt_tokens(model, args.prompt)
    target, contrast = symbol_id(model, args.target, "--target"), symbol_id(model, args.contrast, "--contrast")
    logits, cache = model.run_with_cache(tokens)
    frame = direct_logit_attribution(model, tokens, cache, target=target, contrast=contrast, per=args.per)
    return model, tokens, logits, frame


def _sum_check(frame, logits):
    """Per ``(batch, pos)``: the sum of the contributions and the logit (difference) from the forward pass."""
    import numpy as np

    groups = frame.groupby(["batch", "pos"], sort=True)
    first = groups.first()
    batch, pos = (first.index.get_level_values(n).to_numpy() for n in ("batch", "pos"))
    values = logits.detach().double().cpu().numpy()[batch, pos]  # group d_vocab
    expected = values[np.arange(len(first)), first.target.to_numpy()]
    with_contrast = first.contrast.notna().to_numpy()
    contrast = first.contrast.fillna(0).to_numpy(dtype=np.int64)
    expected[with_contrast] -= values[with_contrast, contrast[with_contrast]]
    return groups.contribution.sum().to_numpy(), expected


def _fail_check(command: str, error: float) -> int:
    print(
        f"minigpt {command}: error: the contributions miss the logit by {error:.2e} (> {TOLERANCE:g}); "
        "this is a bug in interp.observe.dla, please report it; nothing was written",
        file=sys.stderr,
    )
    return 1


def _write(frame, path: str):
    """Write the contributions atomically; an OS error (permissions, disk full) becomes one clear line."""
    from interp.common.export import contributions_to_csv

    try:
        return contributions_to_csv(frame, path)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise ValueError(f"could not write {path!r}: {err.strerror or err}") from None


# ------------------------------------------------------------------------------------------- dla
def _position(pos: int, n_pos: int) -> int:
    if not -n_pos <= pos < n_pos:
        raise IndexError(
            f"--pos {pos} is outside the {n_pos} positions of the prompt (0..{n_pos - 1} with <bos> as 0; "
            "negative counts from the end)"
        )
    return pos % n_pos


def _title(model, tokens, pos: int, args: argparse.Namespace, first) -> str:
    target, contrast = first.target_str, None if first.contrast_str is None else first.contrast_str
    if args.target is not None:
        what = f"logit[{target!r}]"
    elif pos < tokens.shape[1] - 1:
        what = f"logit[{target!r}] (the next character)"
    else:
        what = f"logit[{target!r}] (the top prediction)"
    if contrast is not None:
        what += f" - logit[{contrast!r}]"
    context = model.tokenizer.decode(tokens[0, 1 : pos + 1].tolist())
    return f"direct logit attribution of {what} at position {pos} (after {context!r}), per {args.per}"


def run_dla(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    model, tokens, logits, frame = _contributions(args)
    pos = _position(args.pos, tokens.shape[1])
    sums, expected = _sum_check(frame, logits)
    error = float(abs(sums - expected).max())
    if error > TOLERANCE:
        return _fail_check("dla", error)
    written = _write(frame, args.out) if args.out else None  # before printing: a failed write prints nothing
    rows = frame[frame.pos == pos]
    shown = rows.reindex(rows.contribution.abs().sort_values(ascending=False).index).head(args.top)
    print(_title(model, tokens, pos, args, rows.iloc[0]))
    table = shown[["component", "component_type", "contribution"]]
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    if len(rows) > len(shown):
        rest = rows.contribution.sum() - shown.contribution.sum()
        print(f"({len(rows) - len(shown)} smaller contributions sum to {rest:.4f})")
    print(
        f"sum of all {len(rows)} contributions = {sums[pos]:.4f}; the forward pass gives {expected[pos]:.4f} "
        f"(|difference| {abs(sums[pos] - expected[pos]):.1e} <= {TOLERANCE:g}: ok)"
    )
    if written is not None:
        print(f"wrote {len(frame)} rows ({tokens.shape[1]} positions) to {written}")
    return 0


# ------------------------------------------------------------------------------------------- export
def run_export(args: argparse.Namespace) -> int:
    _, tokens, logits, frame = _contributions(args)
    sums, expected = _sum_check(frame, logits)
    error = float(abs(sums - expected).max())
    if error > TOLERANCE:
        return _fail_check("export", error)
    path = _write(frame, args.out)
    n_pos = tokens.shape[1]
    print(f"wrote {len(frame)} rows ({n_pos} positions x {len(frame) // n_pos} components, per {args.per}) to {path}")
    what = "logit" if args.contrast is None else "logit difference"
    print(f"at every position they sum to the {what} of the forward pass (max |difference| {error:.1e})")
    return 0
