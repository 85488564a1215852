"""The one ``minigpt`` command line.

Every subcommand is one ``run`` function plus one ``add_arguments`` function, registered in
:data:`COMMANDS`. To add a subcommand, write the two functions and add one ``Command(...)``
entry; ``main`` builds the parser from the table. A ``run`` function returns the exit code;
any ValueError / TypeError / KeyError / IndexError / FileNotFoundError (or other OSError) it
raises becomes one line on stderr (``minigpt <command>: error: ...``) and exit code 2, and so does
a usage error found by argparse. Output paths are checked before any work (:func:`interp.cli.common.check_out`),
and files are written atomically (:mod:`model.storage.files`): a failed command leaves no file behind.

Example:
    >>> main(["generate", "--prompt", "the ", "--temperature", "0", "--max-new-tokens", "12"])
    the same as "__g
    0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from interp.cli import analysis, dashboard, discover, dynamics, features, intervene, model_commands

USER_ERRORS = (ValueError, TypeError, KeyError, IndexError, FileNotFoundError)


@dataclass(frozen=True)
class Command:
    """One subcommand: its help line, examples for ``--help``, argument builder and runner."""

    help: str
    examples: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "train": Command(
        "train a model from a preset and write its checkpoint",
        model_commands.TRAIN_EXAMPLES,
        model_commands.add_train_arguments,
        model_commands.run_train,
    ),
    "generate": Command(
        "continue a prompt by sampling from a model",
        model_commands.GENERATE_EXAMPLES,
        model_commands.add_generate_arguments,
        model_commands.run_generate,
    ),
    "hooks": Command(
        "list a model's hook points and their activation shapes on a prompt",
        model_commands.HOOKS_EXAMPLES,
        model_commands.add_hooks_arguments,
        model_commands.run_hooks,
    ),
    "dla": Command(
        "direct logit attribution: the largest contributions to a position's logit, checked to sum to it",
        analysis.DLA_EXAMPLES,
        analysis.add_dla_arguments,
        analysis.run_dla,
    ),
    "ablate": Command(
        "ablate heads, MLPs, neurons or positions on a prompt and print the loss before and after",
        intervene.ABLATE_EXAMPLES,
        intervene.add_ablate_arguments,
        intervene.run_ablate,
    ),
    "sweep": Command(
        "ablate every head (or neuron) one at a time, batched, and rank them by the change in a metric",
        intervene.SWEEP_EXAMPLES,
        intervene.add_sweep_arguments,
        intervene.run_sweep,
    ),
    "patch": Command(
        "activation (or attribution) patching from a clean prompt into a corrupted one",
        intervene.PATCH_EXAMPLES,
        intervene.add_patch_arguments,
        intervene.run_patch,
    ),
    "circuit": Command(
        "find the circuit between a clean and a corrupted prompt: exact edge patching, EAP, EAP-IG or ACDC",
        discover.CIRCUIT_EXAMPLES,
        discover.add_circuit_arguments,
        discover.run_circuit,
    ),
    "dynamics": Command(
        "metrics of every snapshot of a training run (losses, head scores, composition, DLA) and its phase change",
        dynamics.DYNAMICS_EXAMPLES,
        dynamics.add_dynamics_arguments,
        dynamics.run_dynamics,
    ),
    "export": Command(
        "write the direct contributions of every component at every position of a prompt to CSV",
        analysis.EXPORT_EXAMPLES,
        analysis.add_export_arguments,
        analysis.run_export,
    ),
    "sae": Command(
        "sparse autoencoders and transcoders: train one, show a feature, steer one (sae train|features|steer)",
        features.SAE_EXAMPLES,
        features.add_sae_arguments,
        features.run_sae,
    ),
    "dashboard": Command(
        "serve the Streamlit dashboard (streamlit run dashboards/app.py), on localhost by default",
        dashboard.DASHBOARD_EXAMPLES,
        dashboard.add_dashboard_arguments,
        dashboard.run_dashboard,
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
