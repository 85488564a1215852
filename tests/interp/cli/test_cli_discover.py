"""`minigpt circuit`: edge scores and ACDC from the command line, run in-process (exit codes, stdout, files)."""

from __future__ import annotations

import pandas as pd
import pytest

from interp.cli.main import main

CLEAN, CORRUPTED = "abcdefghabcdefgh", "qrstuvwxqrstuvwx"
BASE = ["circuit", "--model", "induction-2l", "--clean", CLEAN, "--corrupted", CORRUPTED, "--loss-positions", "10:17"]
KNOWN = {("embed", "L0H0.v"), ("L0H0", "L1H0.k"), ("embed", "L1H0.q"), ("embed", "L1H0.v"), ("L1H0", "logits")}


@pytest.mark.parametrize("method", ["exact", "eap", "eap-ig"])
def test_edge_scores_are_printed_and_every_edge_written(method, tmp_path, capsys):
    out = tmp_path / "edges.csv"
    assert main([*BASE, "--method", method, "--top", "5", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    frame = pd.read_csv(out)
    assert len(frame) == 19 and {"upstream", "downstream", "score", "abs_score"} <= set(frame.columns)
    top = set(zip(*frame.nlargest(5, "abs_score")[["upstream", "downstream"]].T.values, strict=True))
    print(method, "top 5:", sorted(top))
    assert f"{method}: 19 edges" in printed and len(top & KNOWN) >= 4


def test_acdc_prints_the_circuit_in_words_and_writes_it(tmp_path, capsys):
    out = tmp_path / "circuit.csv"
    assert main([*BASE, "--method", "acdc", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    print(printed)
    kept = set(zip(*pd.read_csv(out)[["upstream", "downstream"]].T.values, strict=True))
    assert kept >= KNOWN and "the key of head L1H0 reads head L0H0" in printed and "faithfulness" in printed


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--corrupted", "abc"], "--clean has 16 characters and --corrupted 3"),
        (["--method", "eap", "--steps", "3"], "--steps is for --method eap-ig"),
        (["--method", "eap", "--threshold", "0.1"], "--threshold is for --method acdc"),
        (["--method", "acdc", "--threshold", "-1"], "threshold must be a number >= 0"),
        (["--method", "eap-ig", "--steps", "0"], "steps must be >= 1"),
        (["--out", "edges.txt"], ".csv"),
    ],
)
def test_bad_input_is_exit_2_with_one_line(extra, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*BASE, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
