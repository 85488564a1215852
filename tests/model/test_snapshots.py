"""Snapshots of a training run (issue 16): the schedule, writing them without changing the run, the Run value.

The shipped runs are checked in tests/interp/dynamics/test_dynamics_shipped.py; here tiny seeded runs train in a second
or two.
"""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from conftest import make_cfg

from model import MiniGPT, Run, SnapshotSchedule, TrainConfig, load_checkpoint, train
from model.storage.runs import clear_snapshots, snapshot_dir, snapshot_path
from model.training.schedule import about

TINY = TrainConfig(task="induction", steps=12, batch_size=8, warmup_steps=3, eval_every=4, log_every=2, ckpt_every=0)
TINY_CFG = make_cfg(n_ctx=32, attn_only=True, n_heads=2)
SCHEDULE = SnapshotSchedule(early=4, late=3, early_until=3)  # steps 0, 1, 2, 3, then 6, 9, 12 (12: the checkpoint)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny run trained without snapshots, with float32 snapshots, and with float16 ones."""
    tmp = tmp_path_factory.mktemp("snapshots")
    plain = train(TINY_CFG, TINY, tmp / "plain", progress=False, command="test")
    snap = train(TINY_CFG, TINY.replace(snapshots=SCHEDULE), tmp / "snap", progress=False, command="test")
    half = SnapshotSchedule(early=4, late=3, early_until=3, dtype="float16")
    train(TINY_CFG, TINY.replace(snapshots=half), tmp / "half", progress=False, command="test")
    return tmp, plain, snap


def test_schedule_is_log_spaced_early_and_regular_late():
    """The default gives about 60 steps: log-spaced over the first 5% of the run, then evenly spaced."""
    steps = SnapshotSchedule().steps(20000)
    print(f"default schedule over 20000 steps: {len(steps)} snapshots, first {steps[:8]}, last {steps[-3:]}")
    assert 55 <= len(steps) <= 61 and steps[0] == 0 and steps[-1] == 20000
    early, late = [s for s in steps if 0 < s <= 1000], [s for s in steps if s >= 1000]
    ratios = [b / a for a, b in itertools.pairwise(early)]
    assert max(ratios) / min(ratios) < 3, f"early steps not log-spaced: ratios {ratios}"
    gaps = {b - a for a, b in itertools.pairwise(late)}
    assert max(gaps) - min(gaps) <= 1, f"late steps not evenly spaced: gaps {sorted(gaps)}"
    assert SCHEDULE.steps(12) == (0, 1, 2, 3, 6, 9, 12)
    assert about(0) is None and len(about(60).steps(20000)) in range(50, 62)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"early": -1}, "early must be"), ({"late": 1.5}, "late must be"), ({"early_until": 0}, "early_until"),
     ({"dtype": "int8"}, "dtype='int8'")],
)  # fmt: skip
def test_schedule_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SnapshotSchedule(**kwargs)


def test_snapshots_do_not_change_the_run(runs):
    """Writing snapshots draws no random numbers and changes no arithmetic: the final weights are bit-identical."""
    tmp, plain, snap = runs
    a, b = plain.model.state_dict(), snap.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "snapshots changed the training run"
    assert (tmp / "plain.safetensors").read_bytes() == (tmp / "snap.safetensors").read_bytes()
    assert not snapshot_dir(tmp / "plain").exists(), "a run without a schedule wrote snapshots"


def test_run_lists_the_steps_and_loads_each(runs):
    """Run.steps has every scheduled step and the final checkpoint; each loads, checked, with its step recorded."""
    tmp, _, snap = runs
    run = Run.load(tmp / "snap")
    assert run.steps == SCHEDULE.steps(12)
    assert run.path(12) == tmp / "snap.safetensors", "the last step is the final checkpoint, not a copy of it"
    for step in run.steps[:-1]:
        ckpt = load_checkpoint(snapshot_path(tmp / "snap", step))  # a snapshot is a checkpoint: the one validation
        assert ckpt.provenance["steps"] == step and ckpt.provenance["snapshot_dtype"] == "float32"
    first, last = MiniGPT.from_pretrained(str(tmp / "snap"), step=0), MiniGPT.from_pretrained(str(tmp / "snap"))
    fresh = MiniGPT(TINY_CFG, seed=TINY.seed)
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in first.state_dict().items()), "step 0 != the init"
    assert all(torch.equal(v, snap.model.state_dict()[k]) for k, v in last.state_dict().items())
    changes = [
        (run.checkpoint(s).state_dict["blocks.0.attn.W_Q"] - first.state_dict()["blocks.0.attn.W_Q"]).norm()
        for s in run.steps
    ]
    print("distance of W_Q from the init per step:", [round(float(c), 4) for c in changes])
    assert changes[0] == 0 and all(c > 0 for c in changes[1:]), "a snapshot repeats the initial weights"


def test_unknown_step_names_the_nearest_saved_ones(runs):
    tmp, _, _ = runs
    with pytest.raises(ValueError, match="no snapshot at step 5; the nearest saved steps are 3 and 6"):
        MiniGPT.from_pretrained(str(tmp / "snap"), step=5)
    with pytest.raises(ValueError, match="the nearest saved steps are 12"):
        Run.load(tmp / "snap").path(40)
    with pytest.raises(FileNotFoundError, match="no snapshots in"):
        Run.load(tmp / "plain")


def test_float16_snapshots_load_as_float32_close_to_the_float32_ones(runs):
    tmp = runs[0]
    half, full = Run.load(tmp / "half"), Run.load(tmp / "snap")
    worst = 0.0
    for step in full.steps[:-1]:
        a, b = half.checkpoint(step).state_dict, full.checkpoint(step).state_dict
        assert all(v.dtype == torch.float32 for v in a.values())
        worst = max(worst, max(float(((a[k] - b[k]) / b[k].abs().clamp_min(1e-3)).abs().max()) for k in b))
    print(f"largest relative error of a float16 snapshot: {worst:.2e}")
    assert worst < 1e-3
    assert (tmp / "half.safetensors").read_bytes() == (tmp / "snap.safetensors").read_bytes(), "final not float32"


def test_a_damaged_or_renamed_snapshot_is_refused(runs, tmp_path):
    """Snapshots get the checkpoint's validation (hash), and a file copied under another step's name is caught."""
    src = runs[0] / "snap"
    for step in (1, 2):
        for suffix in (".safetensors", ".json"):
            target = snapshot_path(tmp_path / "copy", step).with_suffix(suffix)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(snapshot_path(src, 1).with_suffix(suffix).read_bytes())
    run = Run.load(tmp_path / "copy")
    assert run.checkpoint(1).provenance["steps"] == 1
    with pytest.raises(ValueError, match="records step 1, not 2"):
        run.checkpoint(2)
    path = snapshot_path(tmp_path / "copy", 1)
    path.write_bytes(path.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(ValueError, match="does not match the hash"):
        run.checkpoint(1)


def test_resume_rewrites_the_later_snapshots_identically(runs, tmp_path):
    """A run stopped at step 5 and resumed has the same snapshots as the uninterrupted one, and no stale ones."""
    cfg = TINY.replace(snapshots=SCHEDULE)
    train(TINY_CFG, cfg, tmp_path / "part", progress=False, command="first", until_step=5)
    assert Run.load(tmp_path / "part").steps == (0, 1, 2, 3, 5), "the partial run lists its steps (5: checkpoint)"
    train(TINY_CFG, cfg, tmp_path / "part", resume=str(tmp_path / "part"), progress=False, command="again")
    whole = Run.load(runs[0] / "snap")
    part = Run.load(tmp_path / "part")
    assert part.steps == whole.steps
    for step in whole.steps:
        a, b = part.checkpoint(step).state_dict, whole.checkpoint(step).state_dict
        assert all(torch.equal(a[k], b[k]) for k in a), f"step {step} differs after the resume"
    assert clear_snapshots(tmp_path / "part", after=3) == 2  # steps 6 and 9 (12 is the checkpoint)


def test_provenance_of_a_snapshot(runs):
    prov = json.loads(snapshot_path(runs[0] / "snap", 6).with_suffix(".json").read_text())["provenance"]
    assert prov["steps"] == 6 and prov["command"] == "test" and "torch_threads" in prov
    assert prov["train_config"]["snapshots"] == {"early": 4, "late": 3, "early_until": 3, "dtype": "float32"}
