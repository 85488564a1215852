"""``minigpt dynamics``: the metrics of every snapshot of a training run, as one tidy CSV, and its phase change.

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "d.csv"
    >>> code = run_dynamics(build().parse_args(["--steps", "0", "20000", "--metrics", "losses",
    ...     "--no-progress", "--out", str(out)]))  # doctest: +ELLIPSIS
    training dynamics of induction-2l: 2 saved steps, ...
    >>> code, out.read_text().splitlines()[0]
    (0, 'step,metric,component,value')
"""

from __future__ import annotations

import argparse
import time

DYNAMICS_EXAMPLES = """\
  minigpt dynamics --run induction-2l --out dynamics.csv
  minigpt dynamics --run induction-2l --metrics losses head_scores --phase second_copy_loss
  minigpt dynamics --run path/to/my-run --steps 0 1000 2000"""
GROUPS = ("losses", "head_scores", "composition", "dla", "weight_norms")  # interp.dynamics.metrics.METRIC_GROUPS


def add_dynamics_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default="induction-2l", help="shipped run name or checkpoint path (default induction-2l)")
    p.add_argument("--metrics", nargs="+", choices=GROUPS, help="metric groups (default: all)")
    p.add_argument("--steps", nargs="+", type=int, help="only these saved steps (default: every one)")
    p.add_argument("--n-seq", type=int, default=64, help="sequences [BOS, r, r] in the probe (default 64)")
    p.add_argument("--phase", default="second_copy_loss", help="metric whose fastest change is reported")
    p.add_argument("--out", help="write the whole frame (step, metric, component, value) to this CSV")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build() -> argparse.ArgumentParser:
    """A parser with only this subcommand's arguments (for the doctest)."""
    parser = argparse.ArgumentParser(prog="minigpt dynamics")
    add_dynamics_arguments(parser)
    return parser


def run_dynamics(args: argparse.Namespace) -> int:
    from interp.cli.common import check_out
    from interp.common.export import write_csv_atomic
    from interp.dynamics.metrics import training_dynamics
    from interp.dynamics.phases import find_phase_changes
    from interp.reports.induction import probe_tokens
    from model.storage.runs import Run

    check_out(args.out)
    run = Run.load(args.run)
    start = time.perf_counter()
    frame = training_dynamics(
        run, probe=probe_tokens(args.n_seq), metrics=args.metrics, steps=args.steps, progress=not args.no_progress
    )
    seconds = time.perf_counter() - start
    steps = frame.step.nunique()
    written = write_csv_atomic(frame, args.out) if args.out else None
    print(
        f"training dynamics of {run.name}: {steps} saved steps, {len(frame)} rows, {seconds / steps:.3f} s per snapshot"
    )
    if args.phase in set(frame.metric) and frame[frame.metric == args.phase].component.nunique() == 1 and steps > 1:
        changes = find_phase_changes(frame, args.phase).head(8)
        print(f"fastest change of {args.phase}: steps {changes.start_step[0]}..{changes.end_step[0]}; moving with it:")
        print(
            changes.drop(columns=["start_step", "end_step"]).to_string(index=False, float_format=lambda x: f"{x:.4f}")
        )
    if written is not None:
        print(f"wrote {written}")
    return 0
