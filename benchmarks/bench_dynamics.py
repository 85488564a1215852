"""Training dynamics: seconds per snapshot of ``interp.training_dynamics``, per metric group, on the shipped runs;
and the "Training dynamics" page's re-render after the step slider moves (target <= 0.5 s).

Groups are timed in ABBA order in one process (:func:`benchmarks.common.abba`) on the same saved steps; the
ratio column is each group's time over the time of all groups together. The page is timed in a
``streamlit.testing.v1.AppTest`` session after the run's frame is cached (once per session), moving the slider
to steps it has not shown yet.

    python -m benchmarks.bench_dynamics [--rounds 2] [--steps 12]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import abba, table

APP = str(Path(__file__).resolve().parents[1] / "dashboards" / "app.py")
GROUPS = ("losses", "head_scores", "composition", "dla", "weight_norms")
BUDGET_S = 0.5


def per_snapshot(name: str, n_steps: int, rounds: int) -> list[tuple[str, ...]]:
    from interp import training_dynamics
    from interp.reports.induction import probe_tokens
    from model import Run

    run = Run.load(name)
    steps = list(run.steps[:: max(1, len(run.steps) // n_steps)])[:n_steps]
    probe = probe_tokens(64)
    variants = {
        group: (lambda g=group: training_dynamics(run, probe, metrics=[g], steps=steps, progress=False))
        for group in GROUPS
    }
    variants["all"] = lambda: training_dynamics(run, probe, steps=steps, progress=False)
    times = abba(variants, rounds, warmup=1)
    return [
        (name, group, f"{t / len(steps):.4f}", f"{t / times['all']:.2f}", str(len(run.steps)))
        for group, t in times.items()
    ]


def slider_rerender(rounds: int) -> list[float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=600)
    at.run()
    at.switch_page("views/dynamics.py").run()  # computes and caches the run's frame
    steps = list(at.select_slider(key="dyn_step").options)
    wall = []
    for option in steps[1 : 1 + rounds]:
        at.select_slider(key="dyn_step").set_value(int(option) if option.isdigit() else option)
        start = time.perf_counter()
        at.run()
        wall.append(time.perf_counter() - start)
        if at.exception:
            raise RuntimeError(f"the page raised: {at.exception[0].message}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds per metric group")
    parser.add_argument("--steps", type=int, default=12, help="saved steps timed per run")
    args = parser.parse_args()
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    rows = [row for name in ("induction-2l", "minigpt-text") for row in per_snapshot(name, args.steps, args.rounds)]
    print(f"Seconds per snapshot (probe of 64 sequences, torch threads {torch.get_num_threads()})")
    print(table(rows, ("run", "metric group", "s per snapshot", "ratio to all", "saved steps")))
    wall = slider_rerender(8)
    ok = "yes" if max(wall) <= BUDGET_S else "NO"
    print(f"\nPage re-render after a slider move: median {statistics.median(wall):.3f} s, max {max(wall):.3f} s "
          f"(<= {BUDGET_S} s: {ok})")  # fmt: skip


if __name__ == "__main__":
    main()
