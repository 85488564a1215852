"""The ``minigpt dla``, ``minigpt export`` and ``minigpt dashboard`` subcommands (registered in :mod:`interp.cli`).

``dla`` prints the largest direct contributions (:func:`interp.dla.direct_logit_attribution`) to
one position's logit and checks that all of them sum to the logit of the forward pass; ``export``
writes every position's contributions to CSV (:func:`interp.export.contributions_to_csv`, atomic);
``dashboard`` runs ``streamlit run dashboards/app.py``, bound to localhost unless told otherwise.

Positions count the ``<bos>`` that is put before the prompt as 0, so position N predicts the
character after the prompt's first N characters; the default is the last position. Without
``--target``, the target is the next character of the prompt, and at the last position the model's
own top prediction. A sum that misses the logit by more than :data:`TOLERANCE` is a bug in the
library, not in the input: the command says so on stderr, writes nothing and exits 1.
The model and the analyses are imported inside the run functions.

Example:
    >>> dashboard_argv(port=8502)[-4:]
    ['--server.address', 'localhost', '--server.port', '8502']
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

USE_EXEC = os.name == "posix"  # replace this process by the server (elsewhere: run it as a child)
TOLERANCE = 1e-4  # |sum of contributions - logit| allowed, float32 (see DESIGN.md, DLA)
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
DASHBOARD_EXAMPLES = (
    "  minigpt dashboard                      # http://localhost:8501\n"
    "  minigpt dashboard --port 8600\n"
    "  minigpt dashboard --address 0.0.0.0    # reachable from other machines: only on a trusted network"
)


# ------------------------------------------------------------------------------------------- arguments
def _add_prompt_arguments(p: argparse.ArgumentParser, per_default: str) -> None:
    from interp.dla import PER

    p.add_argument("--model", default="minigpt-text", help="shipped name or .safetensors path (default minigpt-text)")
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


def add_dashboard_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    p.add_argument("--address", default="localhost", help="address to bind (default localhost: this machine only)")


# ------------------------------------------------------------------------------------------- shared steps
def _char_id(model, char: str | None, flag: str) -> int | None:
    """Token id of a one-character ``--target`` / ``--contrast`` (specials such as ``<bos>`` allowed)."""
    if char is None:
        return None
    tok = model.tokenizer
    if tok is None:
        raise ValueError(f"{flag} is a character but this model has no character tokenizer")
    if char in tok.symbols:
        return tok.symbols.index(char)
    if len(tok.normalize(char)) != 1:
        raise ValueError(f"{flag} must be exactly one character (or <bos>, <pad>, <unk>), got {char!r}")
    try:
        return tok.encode(char)[0]
    except ValueError as err:
        raise ValueError(f"{flag} {char!r}: {err}") from None


def _contributions(args: argparse.Namespace):
    """Load, tokenize, validate the targets, run once with the cache and attribute every position."""
    from interp import dla
    from interp.cli import _check_out, _load_model, _prompt_tokens

    _check_out(args.out)
    model = _load_model(args.model)
    tokens = _prompt_tokens(model, args.prompt)
    target, contrast = _char_id(model, args.target, "--target"), _char_id(model, args.contrast, "--contrast")
    logits, cache = model.run_with_cache(tokens)
    frame = dla.direct_logit_attribution(model, cache, tokens, target=target, contrast=contrast, per=args.per)
    return model, tokens, logits, frame


def _sum_check(frame, logits):
    """Per ``(batch, pos)``: the sum of the contributions and the logit (difference) from the forward pass."""
    import numpy as np

    groups = frame.groupby(["batch", "pos"], sort=True)
    first = groups.first()
    batch, pos = (first.index.get_level_values(n).to_numpy() for n in ("batch", "pos"))
    values = logits.detach().double().cpu().numpy()[batch, pos]  # group d_vocab
    expected = values[np.arange(len(first)), first.target.to_numpy()]
    with_contrast = first.contrast.to_numpy() >= 0
    expected[with_contrast] -= values[with_contrast, first.contrast.to_numpy()[with_contrast]]
    return groups.contribution.sum().to_numpy(), expected


def _fail_check(command: str, error: float) -> int:
    print(
        f"minigpt {command}: error: the contributions miss the logit by {error:.2e} (> {TOLERANCE:g}); "
        "this is a bug in interp.dla, please report it; nothing was written",
        file=sys.stderr,
    )
    return 1


def _write(frame, path: str):
    """Write the contributions atomically; an OS error (permissions, disk full) becomes one clear line."""
    from interp.export import contributions_to_csv

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
    symbols = model.tokenizer.symbols
    target, contrast = symbols[int(first.target)], symbols[int(first.contrast)] if first.contrast >= 0 else None
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
    print(shown[["component", "kind", "contribution"]].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
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


# ------------------------------------------------------------------------------------------- dashboard
def dashboard_app_path() -> Path:
    """``dashboards/app.py`` of the installed package, found without importing it (interp never imports dashboards).

    Example:
        >>> dashboard_app_path().name
        'app.py'
    """
    spec = importlib.util.find_spec("dashboards")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    app = Path(locations[0]) / "app.py" if locations else None
    if app is None or not app.is_file():
        raise FileNotFoundError(
            "cannot find dashboards/app.py beside the interp package; run from the repository root or "
            "install it with pip install -e ."
        )
    return app


def dashboard_argv(port: int = 8501, address: str = "localhost") -> list[str]:
    """The command ``minigpt dashboard`` runs: this Python's ``streamlit run`` on the dashboard app.

    Usage statistics are switched off (the toolkit makes no network calls of its own accord).

    Example:
        >>> dashboard_argv()[1:4]
        ['-m', 'streamlit', 'run']
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"--port must be an integer in 1..65535, got {port!r}")
    if not address or any(c.isspace() for c in address):
        raise ValueError(f"--address must be a host name or IP address such as localhost, got {address!r}")
    app = str(dashboard_app_path())
    options = ["--browser.gatherUsageStats", "false", "--server.address", address, "--server.port", str(port)]
    return [sys.executable, "-m", "streamlit", "run", app, *options]


def run_dashboard(args: argparse.Namespace) -> int:
    argv = dashboard_argv(args.port, args.address)
    if importlib.util.find_spec("streamlit") is None:
        raise ValueError(f"streamlit is not installed in {sys.executable}; install it with pip install streamlit")
    print(f"serving the dashboard on http://{args.address}:{args.port} (Ctrl-C stops it)", flush=True)
    if USE_EXEC:  # this process becomes the server: Ctrl-C and kill reach it directly, nothing is orphaned
        sys.stderr.flush()
        os.execv(argv[0], argv)
    try:
        return subprocess.run(argv, check=False).returncode
    except KeyboardInterrupt:  # Ctrl-C reaches streamlit too, which shuts down by itself
        return 130
