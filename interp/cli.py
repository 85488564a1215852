"""The one ``minigpt`` command line.

Every subcommand is one ``run`` function plus one ``add_arguments`` function, registered in
:data:`COMMANDS`. To add a subcommand, write the two functions and add one ``Command(...)``
entry; ``main`` builds the parser from the table. A ``run`` function returns the exit code;
any ValueError / TypeError / KeyError / IndexError / FileNotFoundError (or other OSError) it
raises becomes one line on stderr (``minigpt <command>: error: ...``) and exit code 2, and so does
a usage error found by argparse. Output paths are checked before any work (:func:`_check_out`),
and files are written atomically (:mod:`model.files`): a failed command leaves no file behind.

Example:
    >>> main(["generate", "--prompt", "the ", "--temperature", "0", "--max-new-tokens", "12"])
    the same as "__g
    0
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from interp import cli_ablation, cli_analysis

USER_ERRORS = (ValueError, TypeError, KeyError, IndexError, FileNotFoundError)


@dataclass(frozen=True)
class Command:
    """One subcommand: its help line, examples for ``--help``, argument builder and runner."""

    help: str
    examples: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _load_model(name_or_path: str, device: str | None = None):
    from model import MiniGPT

    return MiniGPT.from_pretrained(name_or_path, device=device)


def _prompt_tokens(model, text: str, flag: str = "--prompt", allow_empty: bool = False):
    """``[1, pos]`` tokens (``<bos>`` first) of a prompt given on the command line, or a ValueError naming ``flag``."""
    if not text and not allow_empty:
        raise ValueError(f"{flag} is empty; give at least one character")
    if model.tokenizer is None:
        raise ValueError(f"this checkpoint has no character tokenizer, so {flag} cannot be read")
    try:
        n_tokens = len(model.tokenizer.encode(text, bos=True))
    except ValueError as err:
        raise ValueError(f"{flag}: {err}") from None
    if n_tokens > model.cfg.n_ctx:
        raise ValueError(
            f"{flag} has {n_tokens - 1} characters but this model reads at most {model.cfg.n_ctx - 1} "
            f"(n_ctx={model.cfg.n_ctx}, one position goes to <bos>); shorten it"
        )
    return model.to_tokens(text)


def _check_out(path: str | None, suffixes: tuple[str, ...] = (".csv",)) -> None:
    """Refuse an ``--out`` path before any work is done, so a bad one costs nothing and writes nothing.

    The directory must exist and be writable; the name must end in ``suffixes`` (a table never
    replaces a checkpoint by a typo). An existing file is replaced atomically when the command succeeds.
    """
    from model.files import check_output_path

    if path is not None:
        check_output_path(path, suffixes=suffixes, what="--out")


# ------------------------------------------------------------------------------------------- train
def add_train_arguments(p: argparse.ArgumentParser) -> None:
    from model.train import PRESETS

    p.add_argument("--preset", required=True, choices=sorted(PRESETS), help="model + training recipe")
    p.add_argument("--out", required=True, help="checkpoint path without suffix, e.g. runs/my-model")
    p.add_argument("--steps", type=int, help="total optimizer steps (preset default otherwise)")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--batch-size", type=int, help="sequences per step")
    p.add_argument("--seed", type=int, help="seed of the initial weights and the data stream")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda")
    p.add_argument("--text-file", help="train on this UTF-8 text file instead of the built-in corpus (text presets)")
    p.add_argument("--unknown", choices=["drop", "error"], help="characters outside the 64 symbols in --text-file")
    p.add_argument("--resume", help="continue from this checkpoint (its .train.safetensors must sit beside it)")
    p.add_argument("--eval-every", type=int, help="validate every N steps")
    p.add_argument("--ckpt-every", type=int, help="write the checkpoint every N steps (0: only at the end)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_train(args: argparse.Namespace) -> int:
    from model.train import PRESETS, train

    model_cfg, cfg = PRESETS[args.preset]
    fields = ("steps", "lr", "batch_size", "seed", "device", "text_file", "unknown", "eval_every", "ckpt_every")
    changes = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    cfg = cfg.replace(**changes)
    command = "minigpt " + shlex.join(args.argv)
    result = train(model_cfg, cfg, args.out, resume=args.resume, command=command, progress=not args.no_progress)
    hist = result.history
    val = next((h["val_loss"] for h in reversed(hist) if h["val_loss"] is not None), float("nan"))
    print(
        f"wrote {result.path} (steps {hist[-1]['step']}, train loss {hist[-1]['train_loss']:.4f}, val loss {val:.4f})"
    )
    for key, value in result.final.items():
        if key != "samples":
            print(f"  {key}: {value}")
    return 0


# ------------------------------------------------------------------------------------------- generate
def add_generate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="minigpt-text", help="shipped name or .safetensors path (default minigpt-text)")
    p.add_argument("--prompt", default="", help="text to continue (lower-cased; specials are added for you)")
    p.add_argument("--max-new-tokens", type=int, default=100, help="characters to add (default 100)")
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy (default 1.0)")
    p.add_argument("--top-k", type=int, help="sample only among the k most likely tokens")
    p.add_argument("--top-p", type=float, help="sample only from the smallest set with this much probability")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0): same seed, same text")


def run_generate(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    _prompt_tokens(model, args.prompt, allow_empty=True)  # an empty prompt starts from <bos> alone
    text = model.generate(
        args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        top_k=args.top_k, top_p=args.top_p, seed=args.seed,
    )  # fmt: skip
    print(text)
    return 0


# ------------------------------------------------------------------------------------------- hooks
def add_hooks_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="minigpt-text", help="shipped name or .safetensors path (default minigpt-text)")
    p.add_argument("--prompt", default="hello world", help="text whose activations give the shapes")


def run_hooks(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    _, cache = model.run_with_cache(_prompt_tokens(model, args.prompt), names_filter=list(model.hook_names))
    width = max(len(n) for n in model.hook_names)
    print(f"{'hook':<{width}}  shape")
    for name in model.hook_names:
        print(f"{name:<{width}}  {list(cache[name].shape)}")
    return 0


COMMANDS: dict[str, Command] = {
    "train": Command(
        "train a model from a preset and write its checkpoint",
        "  minigpt train --preset induction-2l --out model/checkpoints/induction-2l\n"
        "  minigpt train --preset minigpt-text --out model/checkpoints/minigpt-text\n"
        "  minigpt train --preset minigpt-text --text-file my.txt --unknown drop --steps 2000 --out runs/mine\n"
        "  minigpt train --preset minigpt-text --out runs/mine --resume runs/mine --steps 4000",
        add_train_arguments,
        run_train,
    ),
    "generate": Command(
        "continue a prompt by sampling from a model",
        '  minigpt generate --model minigpt-text --prompt "the " --temperature 0.8 --seed 1\n'
        '  minigpt generate --model runs/mine.safetensors --prompt "def " --temperature 0  # greedy',
        add_generate_arguments,
        run_generate,
    ),
    "hooks": Command(
        "list a model's hook points and their activation shapes on a prompt",
        '  minigpt hooks --model induction-2l --prompt "abcabc"',
        add_hooks_arguments,
        run_hooks,
    ),
    "dla": Command(
        "direct logit attribution: the largest contributions to a position's logit, checked to sum to it",
        cli_analysis.DLA_EXAMPLES,
        cli_analysis.add_dla_arguments,
        cli_analysis.run_dla,
    ),
    "ablate": Command(
        "ablate heads, MLPs, neurons or positions on a prompt and print the loss before and after",
        cli_ablation.ABLATE_EXAMPLES,
        cli_ablation.add_ablate_arguments,
        cli_ablation.run_ablate,
    ),
    "sweep": Command(
        "ablate every head (or neuron) one at a time, batched, and rank them by the change in a metric",
        cli_ablation.SWEEP_EXAMPLES,
        cli_ablation.add_sweep_arguments,
        cli_ablation.run_sweep,
    ),
    "patch": Command(
        "activation (or attribution) patching from a clean prompt into a corrupted one",
        cli_ablation.PATCH_EXAMPLES,
        cli_ablation.add_patch_arguments,
        cli_ablation.run_patch,
    ),
    "export": Command(
        "write the direct contributions of every component at every position of a prompt to CSV",
        cli_analysis.EXPORT_EXAMPLES,
        cli_analysis.add_export_arguments,
        cli_analysis.run_export,
    ),
    "dashboard": Command(
        "serve the Streamlit dashboard (streamlit run dashboards/app.py), on localhost by default",
        cli_analysis.DASHBOARD_EXAMPLES,
        cli_analysis.add_dashboard_arguments,
        cli_analysis.run_dashboard,
    ),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit code 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        line = f"{self.prog}: error: {message} (usage: {self.prog} --help)".replace("\n", " ")
        self.exit(2, line + "\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per entry of :data:`COMMANDS`."""
    parser = OneLineParser(
        prog="minigpt",
        description="MiniGPT Lens: train, sample and take apart a small GPT.",
        epilog="examples:\n  minigpt generate --prompt 'the '\n  minigpt <command> --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subs = parser.add_subparsers(dest="command", metavar="command", required=True)
    for name, cmd in COMMANDS.items():
        sub = subs.add_parser(
            name, help=cmd.help, description=cmd.help[0].upper() + cmd.help[1:] + ".",
            epilog="examples:\n" + cmd.examples, formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        cmd.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``minigpt`` with ``argv`` (default ``sys.argv[1:]``); return the exit code (0 ok, 2 error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2, message already on stderr)
        return int(exit_.code or 0)
    args.argv = argv
    try:
        return COMMANDS[args.command].run(args)
    except (*USER_ERRORS, OSError) as err:  # OSError: a disk or permission failure outside the checked paths
        if isinstance(err, KeyError) and err.args:
            msg = err.args[0]
        elif isinstance(err, OSError) and err.filename is not None:
            msg = f"{err.strerror or err}: {err.filename!r}"
        else:
            msg = err
        print(f"minigpt {args.command}: error: {msg}".replace("\n", " "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
