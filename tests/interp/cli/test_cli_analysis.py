"""`minigpt dla`, `minigpt export` and `minigpt dashboard`, run in-process: exit codes, stdout, files written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_model

from interp import read_contributions_csv
from interp.cli import dashboard as cli_dashboard
from interp.cli.main import main
from model import MiniGPT

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    make_model(n_ctx=32).save_pretrained(str(path), {"steps": 0})
    return str(path) + ".safetensors"


def _logits(model_name: str, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens and logits of a plain forward pass: the ground truth the contributions must sum to."""
    model = MiniGPT.from_pretrained(model_name)
    tokens = model.to_tokens(prompt)
    with torch.no_grad():
        return tokens, model(tokens)[0].double()


def _sums(frame: pd.DataFrame) -> torch.Tensor:
    return torch.tensor(frame.groupby("pos", sort=True).contribution.sum().to_numpy())


# ------------------------------------------------------------------------------------------- dla
def test_dla_prints_the_top_rows_ranked_and_a_sum_equal_to_the_logit(capsys):
    """`minigpt dla --per head --top 3` on minigpt-text: 3 rows by |contribution|, the sum equals the top logit."""
    prompt = "the cat sat on the m"
    assert main(["dla", "--model", "minigpt-text", "--prompt", prompt, "--per", "head", "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    tokens, logits = _logits("minigpt-text", prompt)
    last = tokens.shape[1] - 1
    top = MiniGPT.from_pretrained("minigpt-text").tokenizer.symbols[int(logits[-1].argmax())]
    assert f"logit[{top!r}] (the top prediction) at position {last}" in lines[0], lines[0]
    assert lines[1].split() == ["component", "component_type", "contribution"], lines[1]
    shown = [abs(float(line.split()[-1])) for line in lines[2:5]]
    assert shown == sorted(shown, reverse=True), f"rows not ranked by |contribution|: {lines[2:5]}"
    assert re.match(r"\(\d+ smaller contributions sum to -?\d+\.\d{4}\)", lines[5]), lines[5]
    total = float(re.search(r"sum of all \d+ contributions = (-?\d+\.\d+)", lines[6]).group(1))
    assert total == pytest.approx(float(logits[-1].max()), abs=1e-3), "printed sum is not the logit of the forward"
    assert lines[6].endswith("ok)") and len(lines) == 7, lines


def test_dla_pos_picks_the_position_and_defaults_to_the_next_character(tiny_ckpt, capsys):
    """--pos 2 on "abcabc" explains the logit of 'c', the character after "ab"; rows at other positions not shown."""
    assert main(["dla", "--model", tiny_ckpt, "--prompt", "abcabc", "--pos", "2", "--top", "50"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "logit['c'] (the next character) at position 2 (after 'ab')" in lines[0], lines[0]
    assert len(lines) == 2 + 7 + 1, f"expected title, header, all 7 component rows and the check line: {lines}"
    _, logits = _logits(tiny_ckpt, "abcabc")
    total = float(re.search(r"= (-?\d+\.\d+);", lines[-1]).group(1))
    assert total == pytest.approx(float(logits[2, 17]), abs=1e-3), "--pos explained the wrong position"


def test_dla_out_writes_every_position_and_reads_back_summing_to_the_logit_difference(tiny_ckpt, tmp_path, capsys):
    """--target e --contrast a --per neuron --out: the CSV has every position and sums to logit[e] - logit[a]."""
    out = tmp_path / "dla.csv"
    argv = ["dla", "--model", tiny_ckpt, "--prompt", "Hello there", "--target", "E", "--contrast", "a"]
    assert main([*argv, "--per", "neuron", "--out", str(out)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    frame = read_contributions_csv(out)
    tokens, logits = _logits(tiny_ckpt, "hello there")
    assert f"wrote {len(frame)} rows ({tokens.shape[1]} positions) to {out}" in printed, printed
    assert sorted(frame.pos.unique()) == list(range(tokens.shape[1])), "--out did not write every position"
    kinds = set(frame.component_type)
    assert kinds >= {"neuron", "head", "mlp_bias"}, f"--per neuron ignored: {kinds}"
    assert (frame.target == 19).all() and (frame.contrast == 15).all(), "target/contrast ids not 'e'/'a'"
    torch.testing.assert_close(_sums(frame), logits[:, 19] - logits[:, 15], atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------------- export
@pytest.mark.parametrize("per", ["component", "head"])
def test_export_writes_a_csv_that_sums_to_the_next_token_logits(per, tiny_ckpt, tmp_path, capsys):
    """`minigpt export` prints the row count and path; the CSV reads back and sums to each position's logit."""
    out = tmp_path / "contributions.csv"
    extra = [] if per == "component" else ["--per", per]
    assert main(["export", "--model", tiny_ckpt, "--prompt", "the cat", "--out", str(out), *extra]) == 0
    printed = capsys.readouterr().out
    frame = read_contributions_csv(out)
    tokens, logits = _logits(tiny_ckpt, "the cat")
    n_pos = tokens.shape[1]
    assert f"wrote {len(frame)} rows ({n_pos} positions x {len(frame) // n_pos} components, per {per})" in printed
    assert str(out) in printed, printed
    expected = {"component": {"L0.attn", "L1.mlp"}, "head": {"L0H0", "L1H3", "L1.attn_bias"}}[per]
    assert expected <= set(frame.component), f"--per {per} gave components {set(frame.component)}"
    targets = torch.cat([tokens[0, 1:], logits[-1].argmax()[None]])  # next character; the top prediction last
    torch.testing.assert_close(_sums(frame), logits[torch.arange(n_pos), targets], atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dla", "--model", "no-such-model", "--prompt", "a"], "no-such-model"),
        (["export", "--model", "no-such-model", "--prompt", "a", "--out", "{tmp}/c.csv"], "no-such-model"),
        (["dla", "--prompt", "naïve"], "unknown character: 'ï' at position 2"),
        (["export", "--prompt", "naïve", "--out", "{tmp}/c.csv"], "unknown character"),
        (["dla", "--prompt", "abc", "--target", "ab"], "--target must be exactly one character"),
        (["dla", "--prompt", "abc", "--contrast", "é"], "--contrast 'é': 1 unknown character"),
        (["export", "--prompt", "abc", "--target", "", "--out", "{tmp}/c.csv"], "--target must be exactly one"),
        (["dla", "--prompt", "abc", "--out", "{tmp}/missing/d.csv"], "does not exist; create it first"),
        (["export", "--prompt", "abc", "--out", "{tmp}/missing/c.csv"], "does not exist; create it first"),
        (["export", "--prompt", "abc", "--out", "{tmp}"], "is a directory"),
        (["dla", "--prompt", "abc", "--pos", "4", "--out", "{tmp}/d.csv"], "--pos 4 is outside the 4 positions"),
        (["dla", "--prompt", "abc", "--top", "0"], "--top must be at least 1"),
    ],
    ids=[
        "dla-model", "export-model", "dla-chars", "export-chars", "target-two-chars", "contrast-unknown",
        "target-empty", "dla-missing-dir", "export-missing-dir", "out-is-dir", "pos-range", "top-zero",
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tiny_ckpt, tmp_path, capsys, argv, message):
    """Bad input to dla/export exits 2 with one `minigpt <cmd>: error:` line on stderr, no stdout and no file."""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--model" not in argv:
        argv += ["--model", tiny_ckpt]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"minigpt {argv[0]}: error:"), captured.err
    assert message in lines[0], lines[0]
    assert captured.out == "", f"printed to stdout before failing: {captured.out!r}"
    assert list(tmp_path.iterdir()) == [], "a failed command left a file behind"


def test_failed_write_leaves_no_file_and_keeps_the_previous_one(tiny_ckpt, tmp_path, capsys, monkeypatch):
    """A disk error halfway through the CSV exits 2 in one line; no partial or temporary file, old file intact."""

    def half_then_fail(self, handle, **kwargs):
        handle.write("batch,pos,tar")
        raise OSError(28, "No space left on device")

    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    old.write_text("previous\n")
    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    for out in (old, new):
        assert main(["export", "--model", tiny_ckpt, "--prompt", "abc", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"minigpt export: error: could not write {str(out)!r}: No space left on device", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.csv"], "partial or temporary file left behind"
    assert old.read_text() == "previous\n", "a failed export damaged the existing file"


def test_contributions_that_miss_the_logit_exit_1_and_write_nothing(tiny_ckpt, tmp_path, capsys, monkeypatch):
    """If the attribution stops summing to the logit (a library bug), dla and export say so, exit 1, write nothing."""
    from interp.observe import dla

    real = dla.direct_logit_attribution
    drop_embed = lambda *a, **k: real(*a, **k).query("component_type != 'embed'")  # noqa: E731
    monkeypatch.setattr(dla, "direct_logit_attribution", drop_embed)
    out = tmp_path / "c.csv"
    for command in ("dla", "export"):
        assert main([command, "--model", tiny_ckpt, "--prompt", "abc", "--out", str(out)]) == 1
        captured = capsys.readouterr()
        assert "miss the logit" in captured.err and "nothing was written" in captured.err, captured.err
        assert captured.out == "", "printed a table whose check failed"
    assert not out.exists(), "wrote contributions that do not sum to the logit"


# ------------------------------------------------------------------------------------------- dashboard
def test_dashboard_argv_runs_streamlit_on_the_package_app_bound_to_localhost():
    """The dashboard command is this Python's `streamlit run <repo>/dashboards/app.py` on localhost:8501 by default."""
    argv = cli_dashboard.dashboard_argv()
    assert argv[:4] == [sys.executable, "-m", "streamlit", "run"], argv
    assert Path(argv[4]).resolve() == ROOT / "dashboards" / "app.py", f"wrong app path {argv[4]}"
    options = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert options == {"--browser.gatherUsageStats": "false", "--server.address": "localhost", "--server.port": "8501"}
    options = cli_dashboard.dashboard_argv(8600, "0.0.0.0")
    assert options[-4:] == ["--server.address", "0.0.0.0", "--server.port", "8600"], options


class Execed(Exception):
    """Raised by the fake os.execv: a real one never returns."""


def test_dashboard_command_execs_that_argv(capsys, monkeypatch):
    """On POSIX `minigpt dashboard --port 8600` replaces itself (os.execv) by exactly dashboard_argv(8600)."""
    calls = []

    def fake_execv(path, argv):
        calls.append((path, argv))
        raise Execed

    monkeypatch.setattr(cli_dashboard, "USE_EXEC", True)
    monkeypatch.setattr(cli_dashboard.os, "execv", fake_execv)
    with pytest.raises(Execed):
        main(["dashboard", "--port", "8600"])
    argv = cli_dashboard.dashboard_argv(8600, "localhost")
    assert calls == [(argv[0], argv)], calls
    assert "http://localhost:8600" in capsys.readouterr().out


def test_dashboard_command_without_exec_runs_a_child_and_returns_its_exit_code(capsys, monkeypatch):
    """Where exec is not used, the same argv runs as a child process and its exit code is returned."""
    calls = []

    def fake_run(argv, check):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 3)

    monkeypatch.setattr(cli_dashboard, "USE_EXEC", False)
    monkeypatch.setattr(cli_dashboard.subprocess, "run", fake_run)
    assert main(["dashboard", "--address", "127.0.0.1"]) == 3, "the server's exit code was not passed on"
    assert calls == [cli_dashboard.dashboard_argv(8501, "127.0.0.1")], calls
    assert "http://127.0.0.1:8501" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--port", "0"], ["--port", "70000"], ["--address", ""]], ids=["0", "70000", "blank"])
def test_dashboard_bad_port_or_address_is_exit_2_and_starts_nothing(argv, capsys, monkeypatch):
    """An out-of-range --port or a blank --address exits 2 in one line without starting a server."""
    monkeypatch.setattr(cli_dashboard.os, "execv", lambda *a: pytest.fail("started a server on bad input"))
    monkeypatch.setattr(cli_dashboard.subprocess, "run", lambda *a, **k: pytest.fail("started a server on bad input"))
    assert main(["dashboard", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("minigpt dashboard: error: --"), err


def test_dashboard_argv_imports_neither_dashboards_nor_streamlit():
    """Building the dashboard command only locates the app: interp never imports dashboards or streamlit."""
    code = (
        "import sys; from interp.cli.dashboard import dashboard_argv; dashboard_argv(); "
        "bad = [m for m in ('dashboards', 'streamlit') if m in sys.modules]; assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"locating the app imported a forbidden package: {result.stderr}"
