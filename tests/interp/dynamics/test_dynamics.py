"""interp.dynamics on series whose phase change is known by construction, and on a tiny run with snapshots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_cfg

from interp import crossing, find_phase_changes, head_scores, training_dynamics
from interp.common.vocabulary import undocumented
from interp.reports.induction import copy_losses, probe_tokens
from interp.weights.composition import composition_scores
from model import MiniGPT, Run, SnapshotSchedule, TrainConfig, train

STEPS = [0, 1, 2, 4, 8, 16, 32, 64, *range(100, 2001, 100)]


def _sigmoid_frame(centre: float, other_centre: float) -> pd.DataFrame:
    """loss falls and score rises through a sigmoid at ``centre``; a third series moves at ``other_centre``."""
    s = np.array(STEPS, dtype=float)
    series = {
        ("loss", "model"): 4 - 3 / (1 + np.exp(-(s - centre) / 60)),
        ("score", "L1H0"): 1 / (1 + np.exp(-(s - centre - 20) / 60)),
        ("norm", "W"): 1 / (1 + np.exp(-(s - other_centre) / 60)),
        ("flat", "model"): np.full(len(s), 0.3),
    }
    rows = [(step, m, c, v) for (m, c), values in series.items() for step, v in zip(STEPS, values, strict=True)]
    return pd.DataFrame(rows, columns=["step", "metric", "component", "value"])


@pytest.mark.parametrize("centre", [500, 1200])
def test_phase_change_window_holds_the_known_centre(centre):
    """The window of the fastest loss drop holds the sigmoid's centre, and names what moves with it (not the rest)."""
    frame = _sigmoid_frame(centre, other_centre=1700 if centre < 1000 else 300)
    changes = find_phase_changes(frame, "loss")
    start, end = int(changes.start_step[0]), int(changes.end_step[0])
    print(f"centre {centre}: window {start}..{end}, moving with it: {changes.metric.tolist()}")
    print(changes.to_string())
    assert start <= centre <= end and end - start <= 400, f"window {start}..{end} misses {centre}"
    assert changes.metric.tolist() == ["loss", "score"], "the series moving elsewhere (or not at all) was listed"
    assert changes.change[0] < 0 < changes.change[1] and changes.share[1] > 0.5
    assert undocumented(list(changes.columns)) == []
    lo, hi = crossing(frame, "score", 0.5, component="L1H0")
    assert lo < centre + 20 <= hi and hi - lo == 100, f"crossing {lo}..{hi} misses the score's midpoint"
    assert crossing(frame, "flat", 0.5) is None


def test_dense_early_snapshots_do_not_pass_for_a_phase_change():
    """A small, fast move in the first steps (a few steps apart) loses to the real change later."""
    frame = _sigmoid_frame(1200, 300)
    early = (frame.metric == "loss") & (frame.step <= 4)
    frame.loc[early, "value"] += np.array([0.2, 0.1, 0.05, 0.0])  # 0.1 per step over steps 0..2
    changes = find_phase_changes(frame, "loss")
    assert changes.start_step[0] <= 1200 <= changes.end_step[0], changes.head(1)


def test_bad_arguments_name_what_to_do():
    frame = _sigmoid_frame(500, 1500)
    with pytest.raises(ValueError, match="metric 'los' is not in the frame"):
        find_phase_changes(frame, "los")
    two = pd.concat([frame, frame.assign(component="other")])
    with pytest.raises(ValueError, match="pass component= one of them"):
        find_phase_changes(two, "loss")
    with pytest.raises(ValueError, match="width must be a fraction"):
        find_phase_changes(frame, "loss", width=0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    cfg = TrainConfig(task="induction", steps=12, batch_size=8, warmup_steps=3, eval_every=6, ckpt_every=0)
    cfg = cfg.replace(snapshots=SnapshotSchedule(early=3, late=2, early_until=4))
    out = tmp_path_factory.mktemp("dynamics") / "tiny"
    train(make_cfg(n_ctx=32, attn_only=True, n_heads=2), cfg, out, progress=False, command="test")
    return Run.load(out)


def test_training_dynamics_equals_the_analyses_on_each_snapshot(tiny_run):
    """Every value of the frame is what the analysis gives on that snapshot loaded by itself."""
    probe = probe_tokens(8)
    frame = training_dynamics(tiny_run, probe=probe, progress=False)
    assert list(frame.columns) == ["step", "metric", "component", "value"] and undocumented(list(frame.columns)) == []
    assert sorted(frame.step.unique()) == list(tiny_run.steps)
    worst = 0.0
    for step in tiny_run.steps:
        model = MiniGPT.from_pretrained(str(tiny_run.folder), step=step)
        at = frame[frame.step == step].set_index(["metric", "component"]).value
        with torch.no_grad():
            logits = model(probe)
        losses = {k: float(m(logits, probe)) for k, m in copy_losses().items()}
        scores = head_scores(model, probe).set_index("component")
        comp = composition_scores(model)
        checks = [
            (at["second_copy_loss", "model"], losses["second_copy"]),
            (at["icl_score", "model"], losses["second_copy"] - losses["first_copy"]),
            (at["induction", "L1H1"], scores.loc["L1H1", "induction"]),
            (at["K_composition", "L0H1->L1H0"], comp.score[(comp.composition == "K") & (comp.src_head == 1)].iloc[0]),
            (at["weight_norm", "blocks.0.attn.W_Q"], float(model.blocks[0].attn.W_Q.norm())),
        ]
        worst = max(worst, *(abs(a - b) for a, b in checks))
    print(f"largest difference from the analyses run one snapshot at a time: {worst:.2e}")
    assert worst < 1e-5
    dla = frame[frame.metric == "dla"]
    assert sorted(dla.component.unique()) == ["L0H0", "L0H1", "L1H0", "L1H1"]


def test_training_dynamics_bad_input(tiny_run):
    with pytest.raises(ValueError, match="metrics \\['loss'\\] not known"):
        training_dynamics(tiny_run, metrics=["loss"], progress=False)
    with pytest.raises(ValueError, match="no snapshot at step 5; the nearest saved steps are 4 and 8"):
        training_dynamics(tiny_run, steps=[5], progress=False)
    with pytest.raises(ValueError, match="probe must be \\[BOS, r, r\\]"):
        training_dynamics(tiny_run, probe=torch.zeros(2, 10, dtype=torch.long), progress=False)
    with pytest.raises(TypeError, match="run must be a Run"):
        training_dynamics(3, progress=False)


def test_cli_dynamics_writes_the_frame_and_prints_the_phase_change(tiny_run, tmp_path, capsys):
    from interp.cli.main import main

    out = tmp_path / "dynamics.csv"
    assert main(["dynamics", "--run", str(tiny_run.folder), "--n-seq", "4", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{len(tiny_run.steps)} saved steps" in printed and "fastest change of second_copy_loss" in printed
    table = pd.read_csv(out)
    assert list(table.columns) == ["step", "metric", "component", "value"] and set(table.step) == set(tiny_run.steps)
    assert main(["dynamics", "--run", str(tmp_path / "none"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "no snapshots in" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()
    assert main(["dynamics", "--run", str(tiny_run.folder), "--out", str(tmp_path / "x.txt")]) == 2
