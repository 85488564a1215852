"""Every bad input to `minigpt`: one line on stderr, exit code 2, no traceback, nothing on stdout, no file written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_model

from interp.cli import dashboard as cli_dashboard
from interp.cli.main import main
from model.storage import files

BAD_MODELS = {  # name -> how the checkpoint at {fx}/<name>.safetensors is broken
    "truncated": lambda d: d[: len(d) // 2],
    "flipped": lambda d: d[:8] + b"[" + d[9:],
}


def _rehash(weights: Path) -> None:
    meta = weights.with_suffix(".json")
    doc = json.loads(meta.read_text())
    doc["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    meta.write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> Path:
    """A folder of checkpoints: a good tiny one and one broken in each way the table names."""
    folder = tmp_path_factory.mktemp("checkpoints")
    model = make_model(n_ctx=32)
    for name in ["tiny", "nojson", "badschema", "badjson", "renamed", "mismatched", *BAD_MODELS]:
        model.save_pretrained(str(folder / name), {"steps": 0})
    data = (folder / "tiny.safetensors").read_bytes()
    for name, damage in BAD_MODELS.items():
        (folder / f"{name}.safetensors").write_bytes(damage(data))
    (folder / "nojson.json").unlink()
    doc = json.loads((folder / "tiny.json").read_text())
    (folder / "badschema.json").write_text(json.dumps({**doc, "config": {**doc["config"], "d_model": "32"}}))
    (folder / "badjson.json").write_text("{not json")
    torch.save(model.state_dict(), folder / "model.pt")
    torch.save(model.state_dict(), folder / "renamed.safetensors")
    _rehash(folder / "renamed.safetensors")
    (folder / "mismatched.json").write_text(json.dumps({**doc, "config": {**doc["config"], "d_model": 64}}))
    return folder


P = "--prompt"
CASES = [
    # model names and checkpoint files
    ("unknown-model", ["generate", "--model", "no-such-model"], "no shipped checkpoint named 'no-such-model'"),
    ("unknown-model-dla", ["dla", "--model", "nope", P, "a"], "shipped: ['induction-2l', 'minigpt-text']"),
    ("missing-path", ["hooks", "--model", "{tmp}/gone.safetensors"], "gone.safetensors not found"),
    ("pickle-suffix", ["generate", "--model", "{fx}/model.pt"], "unpickling can run arbitrary code"),
    ("pickle-renamed", ["ablate", "--model", "{fx}/renamed.safetensors", P, "a", "--heads", "0.0"], "PyTorch/pickle"),
    ("truncated", ["sweep", "--model", "{fx}/truncated.safetensors", P, "ab"], "truncated.safetensors is damaged"),
    ("flipped-header", ["patch", "--model", "{fx}/flipped", "--clean", "a", "--corrupted", "b"], "is damaged"),
    ("json-missing", ["dla", "--model", "{fx}/nojson.safetensors", P, "a"], "nojson.json is missing"),
    ("json-invalid", ["generate", "--model", "{fx}/badjson.safetensors"], "badjson.json is not valid JSON"),
    ("json-schema", ["generate", "--model", "{fx}/badschema.json"], "'config.d_model' must be an integer >= 1"),
    ("mismatched", ["export", "--model", "{fx}/mismatched", P, "a", "--out", "{tmp}/c.csv"], "does not match its"),
    ("empty-model-name", ["generate", "--model", ""], "the checkpoint name is empty"),
    # ablation specs: syntax and ranges
    ("heads-dash", ["ablate", P, "abc", "--heads", "1-2"], "'1-2' is not a component label; write it like L1H3"),
    ("heads-letters", ["ablate", P, "abc", "--heads", "a.b"], "write it like L1H3"),
    ("heads-trailing-dot", ["ablate", P, "abc", "--heads", "1."], "'1.' is not a component label"),
    ("head-out-of-range", ["ablate", P, "abc", "--heads", "1.9"], "valid heads 0..3"),
    ("layer-out-of-range", ["ablate", P, "abc", "--heads", "5.0"], "layer 5 is out of range"),
    ("neuron-out-of-range", ["ablate", P, "abc", "--neurons", "0.999"], "neuron 999 is out of range"),
    ("position-out-of-range", ["ablate", P, "abc", "--positions", "0.99"], "position 99 is out of range"),
    ("mlp-layer-out-of-range", ["ablate", P, "abc", "--mlps", "7"], "layer 7 is out of range"),
    ("layers-syntax", ["ablate", P, "abc", "--attn-layers", "x"], "could not parse layers 'x'"),
    ("nothing-to-ablate", ["ablate", P, "abc"], "nothing to ablate"),
    ("sweep-layer-out-of-range", ["sweep", P, "abc", "--layers", "7"], "layer 7 is out of range"),
    ("short-reference", ["ablate", P, "abcd", "--heads", "0.0", "--method", "mean", "--reference", "a"], "--reference"),
    # unknown choices (argparse)
    ("unknown-method", ["ablate", P, "abc", "--heads", "0.0", "--method", "median"], "invalid choice: 'median'"),
    ("unknown-grid", ["patch", "--clean", "ab", "--corrupted", "ac", "--grid", "neurons"], "invalid choice: 'neurons'"),
    ("unknown-per", ["dla", P, "abc", "--per", "token"], "invalid choice: 'token'"),
    ("unknown-what", ["sweep", P, "abc", "--what", "layers"], "invalid choice: 'layers'"),
    ("unknown-preset", ["train", "--preset", "gpt-5", "--out", "{tmp}/m"], "invalid choice: 'gpt-5'"),
    ("unknown-command", ["frobnicate"], "invalid choice: 'frobnicate'"),
    ("no-command", [], "the following arguments are required: command"),
    ("not-an-int", ["generate", "--max-new-tokens", "many"], "invalid int value: 'many'"),
    ("missing-required", ["dla"], "the following arguments are required: --prompt"),
    # metrics
    ("answer-alone", ["ablate", P, "abc", "--heads", "0.0", "--answer", "a"], "--answer and --wrong go together"),
    ("target-two-chars", ["sweep", P, "abc", "--target", "ab"], "--target must be exactly one character"),
    ("loss-positions-syntax", ["sweep", P, "abc", "--loss-positions", "x"], "--loss-positions must look like 16:31"),
    ("loss-positions-range", ["sweep", P, "abc", "--loss-positions", "0:100"], "out of range"),
    ("dla-contrast-unknown", ["dla", P, "abc", "--contrast", "é"], "--contrast 'é'"),
    # prompts
    ("prompt-unknown-char", ["dla", P, "naïve"], "--prompt: 1 unknown character: 'ï' at position 2"),
    ("prompt-unknown-generate", ["generate", P, "€uro"], "unknown character: '€' at position 0"),
    ("prompt-too-long", ["hooks", P, "x" * 40], "--prompt has 40 characters but this model reads at most 31"),
    ("prompt-too-long-sweep", ["sweep", P, "y" * 32], "reads at most 31"),
    ("prompt-empty-dla", ["dla", P, ""], "--prompt is empty"),
    ("prompt-empty-export", ["export", P, "", "--out", "{tmp}/c.csv"], "--prompt is empty"),
    ("prompt-empty-ablate", ["ablate", P, "", "--heads", "0.0"], "--prompt is empty"),
    ("prompt-empty-hooks", ["hooks", P, ""], "--prompt is empty"),
    ("clean-empty", ["patch", "--clean", "", "--corrupted", "a"], "--clean is empty"),
    ("prompt-lengths-differ", ["patch", "--clean", "abc", "--corrupted", "abcd"], "must have the same shape"),
    # numbers
    ("top-zero-sweep", ["sweep", P, "abc", "--top", "0"], "--top must be at least 1"),
    ("top-zero-patch", ["patch", "--clean", "ab", "--corrupted", "ac", "--top", "-1"], "--top must be at least 1"),
    ("pos-out-of-range", ["dla", P, "abc", "--pos", "4"], "--pos 4 is outside the 4 positions"),
    ("negative-new-tokens", ["generate", "--max-new-tokens", "-1"], "max_new_tokens"),
    ("negative-temperature", ["generate", "--temperature", "-1"], "temperature must be >= 0"),
    ("top-p-above-1", ["generate", "--top-p", "1.5"], "top_p must be in (0, 1]"),
    ("top-k-zero", ["generate", "--top-k", "0"], "top_k must be a positive int"),
    ("train-zero-steps", ["train", "--preset", "induction-2l", "--out", "{tmp}/m", "--steps", "0"], "steps must be"),
    (
        "train-resume-missing",
        ["train", "--preset", "induction-2l", "--out", "{tmp}/m", "--resume", "{tmp}/no"],
        "no.safetensors not found",
    ),
    (
        "train-text-missing",
        ["train", "--preset", "minigpt-text", "--out", "{tmp}/m", "--text-file", "{tmp}/t.txt"],
        "t.txt' does not exist",
    ),
    ("dashboard-port", ["dashboard", "--port", "70000"], "--port must be an integer in 1..65535"),
    # output paths
    ("out-missing-dir", ["export", P, "abc", "--out", "{tmp}/no/c.csv"], "does not exist; create it first"),
    ("out-missing-dir-ablate", ["ablate", P, "abc", "--heads", "0.0", "--out", "{tmp}/no/a.csv"], "does not exist"),
    ("out-is-dir", ["sweep", P, "abc", "--out", "{tmp}"], "is a directory"),
    ("out-not-csv", ["dla", P, "abc", "--out", "{tmp}/model.safetensors"], "must end in .csv"),
    ("out-parent-is-file", ["patch", "--clean", "ab", "--corrupted", "ac", "--out", "{fx}/model.pt/p.csv"], "not a"),
    ("train-out-parent-is-file", ["train", "--preset", "induction-2l", "--out", "{fx}/model.pt/m"], "is a file"),
]


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def expand(argv: list[str], fx: Path, tmp: Path) -> list[str]:
    argv = [a.replace("{fx}", str(fx)).replace("{tmp}", str(tmp)) for a in argv]
    needs_model = argv and argv[0] not in ("train", "dashboard", "frobnicate") and "--model" not in argv
    return [*argv, "--model", str(fx / "tiny.safetensors")] if needs_model else argv


@pytest.fixture(autouse=True)
def no_server(monkeypatch):
    """A bad dashboard argument must never start a server."""
    monkeypatch.setattr(cli_dashboard.os, "execv", lambda *a: pytest.fail("started a server on bad input"))
    monkeypatch.setattr(cli_dashboard.subprocess, "run", lambda *a, **k: pytest.fail("started a server"))


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(fx, tmp_path, capsys, argv, message):
    """The table of bad inputs: exit 2, one `minigpt ...: error:` line naming the problem, no file, no traceback."""
    argv = expand(argv, fx, tmp_path)
    before = sorted(fx.iterdir())
    code, out, err = run(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, f"exit code {code} for {argv}: {err}"
    assert len(lines) == 1 and lines[0].startswith("minigpt"), f"expected one error line, got: {err!r}"
    assert ": error: " in lines[0] and "Traceback" not in err, lines[0]
    assert message in lines[0], f"{message!r} not in {lines[0]!r}"
    assert out == "", f"printed to stdout before failing: {out!r}"
    assert list(tmp_path.iterdir()) == [] and sorted(fx.iterdir()) == before, "a failed command wrote a file"


def test_unwritable_out_directory_is_one_line_and_writes_nothing(fx, tmp_path, capsys, monkeypatch):
    """An --out directory the process may not write to: exit 2, one line, nothing written."""
    real_access = files.os.access
    monkeypatch.setattr(files.os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    for command in (["export", P, "abc"], ["sweep", P, "abc"]):
        code, out, err = run(expand([*command, "--out", f"{tmp_path}/t.csv"], fx, tmp_path), capsys)
        assert code == 2 and err.count("\n") == 1 and "permission denied" in err and out == "", err
    assert list(tmp_path.iterdir()) == []


def test_disk_error_while_writing_is_one_line_and_keeps_the_old_file(fx, tmp_path, capsys, monkeypatch):
    """A disk failure halfway through a table: exit 2, one line, the existing file unchanged, no temporary file."""
    old = tmp_path / "table.csv"
    old.write_text("previous\n")

    def half_then_fail(self, handle, **kwargs):
        handle.write("layer,head,")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    for command in (
        ["sweep", P, "abc"],
        ["ablate", P, "abc", "--heads", "0.1"],
        ["patch", "--clean", "ab", "--corrupted", "ac"],
    ):
        code, out, err = run(expand([*command, "--out", str(old)], fx, tmp_path), capsys)
        assert code == 2 and err.count("\n") == 1 and "No space left on device" in err, err
        assert out == "", "the table was printed although writing it failed"
    assert old.read_text() == "previous\n" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_existing_out_file_is_replaced_only_on_success(fx, tmp_path, capsys):
    """An existing --out file survives a failed command and is replaced whole by a successful one."""
    out = tmp_path / "sweep.csv"
    out.write_text("previous\n")
    code, _, _ = run(expand(["sweep", P, "abc", "--layers", "9", "--out", str(out)], fx, tmp_path), capsys)
    assert code == 2 and out.read_text() == "previous\n", "a failed command touched the existing file"
    code, printed, err = run(expand(["sweep", P, "abc", "--out", str(out), "--no-progress"], fx, tmp_path), capsys)
    assert code == 0 and err == "" and f"wrote {out}" in printed, err
    assert len(pd.read_csv(out)) == 8 and [p.name for p in tmp_path.iterdir()] == ["sweep.csv"]
