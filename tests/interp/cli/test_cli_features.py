"""`minigpt sae train|features|steer`, run in-process (exit codes, stdout, files)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from interp.cli.main import main
from interp.features.sae import SAE

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.slow
def test_train_writes_an_sae_with_its_command_and_figures(tmp_path, capsys):
    out = tmp_path / "sae"
    argv = ["sae", "train", "--hook", "blocks.0.hook_resid_post", "--d-sae", "64", "--k", "4", "--steps", "30",
            "--batch-size", "256", "--windows", "512", "--eval-windows", "32", "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "ce_recovered" in printed and "variance_explained" in printed
    doc = json.loads((out / "cfg.json").read_text())
    assert doc["d_sae"] == 64 and doc["hook_name"] == "blocks.0.hook_resid_post"
    prov = doc["minigpt_lens"]["provenance"]
    assert prov["command"].startswith("minigpt sae train --hook blocks.0.hook_resid_post")
    assert prov["metrics"]["l0"] == pytest.approx(4.0)
    assert SAE.from_pretrained(out).cfg.k == 4


@pytest.mark.slow
def test_train_skip_transcoder_records_its_architecture(tmp_path, capsys):
    out = tmp_path / "tc"
    argv = ["sae", "train", "--transcoder", "1", "--skip", "--aux-k", "32", "--d-sae", "64", "--k", "4", "--steps",
            "30", "--batch-size", "256", "--windows", "512", "--eval-windows", "32", "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "topk_skip_transcoder" in capsys.readouterr().out
    tc = SAE.from_pretrained(out)
    assert tc.cfg.architecture == "topk_skip_transcoder" and tc.W_skip.shape == (64, 64)
    assert tc.provenance["train_config"]["skip"] and tc.provenance["train_config"]["aux_k"] == 32


def test_features_shows_a_labelled_card_and_writes_the_contexts(tmp_path, capsys):
    out = tmp_path / "top.csv"
    argv = ["sae", "features", "--sae", "minigpt-text-resid-post-1", "--feature", "15", "--windows", "256",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    print(printed)
    assert "feature 15 of minigpt-text-resid-post-1: on 'v'" in printed and "promoted:" in printed
    frame = pd.read_csv(out)
    assert len(frame) == 10 and (frame.pos_str == "v").mean() >= 0.75


def test_features_on_a_prompt_lists_the_active_features(capsys):
    assert main(["sae", "features", "--sae", "minigpt-text-resid-post-0", "--prompt", "the value", "--top", "5",
                 "--windows", "64"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "the strongest 3 features at each position of 'the value'" in printed


def test_steer_changes_the_continuation(capsys):
    argv = ["sae", "steer", "--sae", "minigpt-text-resid-post-1", "--feature", "15", "--value", "8", "--prompt",
            "the value of the ", "--max-new-tokens", "20"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    print(printed)
    assert "the value of the " in printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sae", "features", "--sae", "no-such-sae", "--feature", "1"], "no shipped SAE named 'no-such-sae'"),
        (["sae", "features", "--sae", "minigpt-text-resid-post-1", "--feature", "512"], "feature 512 is out of range"),
        (["sae", "steer", "--sae", "minigpt-text-resid-post-1", "--feature", "1", "--prompt", "naïve"], "ï"),
        (
            ["sae", "train", "--hook", "blocks.0.hook_resid_post", "--skip", "--d-sae", "8", "--k", "2", "--out", "x"],
            "--skip is for transcoders",
        ),
    ],
)
def test_bad_input_is_one_clear_line(argv, message, capsys):
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
