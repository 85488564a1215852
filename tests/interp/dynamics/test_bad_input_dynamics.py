"""Bad input to training dynamics (interp/dynamics) and to training runs on disk (model/storage/runs.py).

Part of the bad-input matrix (tests/interp/test_bad_input_interp.py walks interp/ and counts these rows too); see
tests/bad_input_matrix.py for what every row checks.
"""

from __future__ import annotations

import pandas as pd
import pytest
from bad_input_matrix import Case, assert_clean_failure, build_env, params

from interp.dynamics import metrics, phases
from model.storage import runs
from model.training import schedule

FRAME = pd.DataFrame({"step": [0, 10, 20], "metric": "loss", "component": "model", "value": [4.0, 2.0, 1.0]})


def _cases() -> list[Case]:
    M, P, R = "interp.dynamics.metrics.", "interp.dynamics.phases.", "model.storage.runs."
    return [
        Case(M + "training_dynamics", "run is an int", lambda e: metrics.training_dynamics(3), TypeError,
             "run must be a Run or a run name / path (e.g. 'induction-2l'), got int"),
        Case(M + "training_dynamics", "a run without snapshots", lambda e: metrics.training_dynamics(
             e.tmp / "none"), FileNotFoundError, "no snapshots in"),
        Case(M + "training_dynamics", "metrics is one str", lambda e: metrics.training_dynamics(
             "induction-2l", metrics="losses"), TypeError, "metrics must be a list of metric groups"),
        Case(M + "training_dynamics", "unknown step", lambda e: metrics.training_dynamics(
             "induction-2l", steps=[3100], progress=False), ValueError, "the nearest saved steps are 3000 and 3250"),
        Case(M + "training_dynamics", "steps empty", lambda e: metrics.training_dynamics(
             "induction-2l", steps=[], progress=False), ValueError, "steps is empty"),
        Case(P + "find_phase_changes", "not a frame", lambda e: phases.find_phase_changes([1, 2], "loss"),
             TypeError, "frame must be the DataFrame of training_dynamics, got list"),
        Case(P + "find_phase_changes", "columns missing", lambda e: phases.find_phase_changes(
             FRAME.drop(columns="value"), "loss"), ValueError, "frame lacks the columns ['value']"),
        Case(P + "find_phase_changes", "metric an int", lambda e: phases.find_phase_changes(FRAME, 3), TypeError,
             "metric must be a metric name (str), got int"),
        Case(P + "find_phase_changes", "unknown component", lambda e: phases.find_phase_changes(FRAME, "loss",
             "L9H9"), ValueError, "metric 'loss' has no component 'L9H9'; it has ['model']"),
        Case(P + "find_phase_changes", "one step", lambda e: phases.find_phase_changes(FRAME[:1], "loss"),
             ValueError, "has 1 saved step(s): a change needs at least two"),
        Case(P + "find_phase_changes", "min_share 2", lambda e: phases.find_phase_changes(FRAME, "loss",
             min_share=2), ValueError, "min_share must be a fraction in [0, 1]"),
        Case(P + "find_phase_changes", "min_span 0", lambda e: phases.find_phase_changes(FRAME, "loss",
             min_span=0), ValueError, "min_span must be >= 1, got 0"),
        Case(P + "crossing", "level a str", lambda e: phases.crossing(FRAME, "loss", "0.5"), TypeError,
             "level must be a number, got '0.5'"),
        Case(P + "crossing", "unknown metric", lambda e: phases.crossing(FRAME, "induction", 0.5), ValueError,
             "metric 'induction' is not in the frame; it has ['loss']"),
        Case(R + "Run.load", "an int", lambda e: runs.Run.load(3), TypeError, "expected a run name or path, got int"),
        Case(R + "Run.load", "blank", lambda e: runs.Run.load(" "), ValueError, "the run name is empty"),
        Case(R + "Run.path", "step a str", lambda e: runs.Run.load("induction-2l").path("1200"), TypeError,
             "step must be an int (one of run.steps), got '1200'"),
        Case(R + "save_snapshot", "dtype int8", lambda e: runs.save_snapshot(e.tmp / "s", 1, e.model.cfg, {}, None,
             {}, dtype="int8"), ValueError, "dtype='int8' is not one of"),
        Case(R + "save_snapshot", "negative step", lambda e: runs.save_snapshot(e.tmp / "s", -1, e.model.cfg, {},
             None, {}), ValueError, "step must be a non-negative integer, got -1"),
        Case("model.training.schedule.SnapshotSchedule.steps", "total 0", lambda e: schedule.SnapshotSchedule()
             .steps(0), ValueError, "total must be a positive integer (the run's steps), got 0"),
        Case("model.training.schedule.about", "negative", lambda e: schedule.about(-1), ValueError,
             "the number of snapshots must be a non-negative integer, got -1"),
    ]  # fmt: skip


CASES = _cases()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return build_env(tmp_path_factory.mktemp("bad_input_dynamics"))


@pytest.mark.parametrize("case", params(CASES))
def test_bad_input_raises_a_clear_typed_error(case, env):
    """The function refuses the bad input with a typed error naming it, and changes nothing."""
    assert_clean_failure(case, env)
