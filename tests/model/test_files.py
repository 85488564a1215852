"""Safe files: the one atomic writer, the checkpoint JSON schema, and damaged, pickled or mismatched checkpoints."""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_model

from interp import write_csv_atomic
from model import MiniGPT, ModelConfig, load_checkpoint, save_checkpoint
from model.storage import files
from model.storage.schema import CONFIG_SCHEMA

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def saved(tmp_path):
    """A tiny model saved as ``tmp_path/m.safetensors`` + ``m.json``."""
    model = make_model()
    return model, save_checkpoint(tmp_path / "m", model.cfg, model.state_dict(), model.tokenizer.to_dict())


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------- atomic writes
def test_one_atomic_writer_in_the_package():
    """Only model/files.py renames temporary files into place: no second atomic-write implementation."""
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("model", "interp", "dashboards")
        for path in (ROOT / folder).rglob("*.py")
        if path.name != "files.py" and re.search(r"os\.replace\(|os\.rename\(|mkstemp\(", path.read_text())
    ]
    assert not offenders, f"these files write atomically on their own; use model.files instead: {offenders}"


def test_writer_failing_halfway_keeps_the_old_file(tmp_path):
    """A writer that writes half the bytes then raises leaves the old file byte for byte, and no temp file."""
    path = tmp_path / "data.bin"
    path.write_bytes(b"old content")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_bytes(b"new con")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        files.atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"old content", "a failed write touched the destination"
    assert listing(tmp_path) == ["data.bin"], "temporary file left behind"


@pytest.mark.parametrize("failing_call", [1, 2], ids=["first-rename", "second-rename"])
def test_pair_stays_a_pair_when_a_rename_fails(saved, monkeypatch, failing_call):
    """If os.replace fails on either file of a checkpoint, both old files are intact and no temp/backup remains."""
    model, path = saved
    before = path.read_bytes(), path.with_suffix(".json").read_bytes()
    real, calls = os.replace, []

    def flaky_replace(src, dst):
        calls.append(dst)
        if len(calls) == failing_call:
            raise OSError(5, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", flaky_replace)
    changed = {k: v + 1 for k, v in model.state_dict().items()}
    with pytest.raises(OSError, match="Input/output"):
        save_checkpoint(path, model.cfg, changed, model.tokenizer.to_dict())
    monkeypatch.undo()
    assert (path.read_bytes(), path.with_suffix(".json").read_bytes()) == before, "the old pair was not restored"
    assert listing(path.parent) == ["m.json", "m.safetensors"], "temporary or backup files left behind"
    assert torch.equal(load_checkpoint(path).state_dict["embed.W_E"], model.embed.W_E), "old checkpoint unreadable"


def test_checkpoint_writer_failing_halfway_keeps_the_old_pair(saved, monkeypatch):
    """safetensors writing half a file then failing leaves the previous checkpoint loadable and no temp file."""
    import model.storage.checkpoint as checkpoint

    model, path = saved
    before = path.read_bytes()

    def half_then_fail(tensors, filename, metadata=None):
        Path(filename).write_bytes(before[: len(before) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", half_then_fail)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, model.cfg, model.state_dict())
    assert path.read_bytes() == before and listing(path.parent) == ["m.json", "m.safetensors"]


def test_csv_rename_failure_keeps_the_old_csv(tmp_path, monkeypatch):
    """A CSV export whose final rename fails keeps the previous CSV and leaves no temporary file."""
    path = tmp_path / "t.csv"
    write_csv_atomic(pd.DataFrame({"a": [1]}), path)
    monkeypatch.setattr(files.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    with pytest.raises(OSError):
        write_csv_atomic(pd.DataFrame({"a": [2, 3]}), path)
    assert path.read_text() == "a\n1\n" and listing(tmp_path) == ["t.csv"], "old CSV damaged or temp file left"


def test_loss_plot_failing_halfway_keeps_the_old_plot(tmp_path, monkeypatch):
    """Training's loss PNG is written atomically: a writer failing halfway keeps the previous PNG."""
    import model.training.lossplot as lossplot
    from model.training.loop import save_loss_curve

    weights = tmp_path / "m.safetensors"
    history = [{"step": s, "train_loss": 1 / (1 + s), "val_loss": None} for s in range(5)]
    _, png = save_loss_curve(history, weights)
    before = png.read_bytes()

    def half_then_fail(history, out):
        Path(out).write_bytes(before[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lossplot, "write_loss_png", half_then_fail)
    with pytest.raises(OSError):
        save_loss_curve([*history, {"step": 9, "train_loss": 0.1, "val_loss": None}], weights)
    assert png.read_bytes() == before and listing(tmp_path) == ["m.loss.html", "m.loss.png"], "PNG damaged"


def test_output_path_errors(tmp_path, monkeypatch):
    """Missing directory -> FileNotFoundError; a directory, a wrong suffix, an unwritable directory -> ValueError."""
    with pytest.raises(FileNotFoundError, match=r"'.*nope' does not exist; create it first"):
        files.check_output_path(tmp_path / "nope" / "a.csv")
    with pytest.raises(ValueError, match="is a directory"):
        files.check_output_path(tmp_path)
    with pytest.raises(ValueError, match=r"must end in \.csv"):
        files.check_output_path(tmp_path / "m.safetensors", suffixes=(".csv",))
    (tmp_path / "plain").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        files.check_output_path(tmp_path / "plain" / "a.csv", create_parent=True)
    monkeypatch.setattr(files.os, "access", lambda *a: False)
    with pytest.raises(ValueError, match="permission denied"):
        files.check_output_path(tmp_path / "a.csv")


def test_unwritable_directory_found_while_writing_is_a_value_error(tmp_path, monkeypatch):
    """If creating the temporary file is refused (permissions, read-only disk): ValueError, nothing written."""

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    with pytest.raises(ValueError, match=r"cannot write in the directory .*Permission denied"):
        files.atomic_write(tmp_path / "x.txt", lambda tmp: tmp.write_text("x"))
    assert listing(tmp_path) == [], "something was written"


def test_written_files_get_ordinary_permissions(tmp_path):
    """Atomic writes give the usual permissions (umask), not mkstemp's 0600."""
    path = files.atomic_write(tmp_path / "x.txt", lambda tmp: tmp.write_text("x"))
    assert path.stat().st_mode & 0o777 == 0o666 & ~files._UMASK, oct(path.stat().st_mode)


@pytest.mark.parametrize(
    "module", ["model.storage.files", "model.storage.schema", "model.storage.checkpoint", "interp.common.export"]
)
def test_docstring_examples_run(module):
    """The runnable examples in the file modules' docstrings print what they say."""
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, f"{result.failed} failing example(s) in {module}"


# ------------------------------------------------------------------------------------------- JSON schema
def test_config_schema_covers_every_config_field():
    """CONFIG_SCHEMA has exactly the ModelConfig fields (a new field must get a schema entry)."""
    assert list(CONFIG_SCHEMA) == [f.name for f in dataclasses.fields(ModelConfig)], "schema and config drifted"


SCHEMA_CASES = [
    ("format", "pickle", "'format' must be 'minigpt-lens-checkpoint', got 'pickle'"),
    ("format_version", 2, "'format_version' must be an integer from 1 to 1"),
    ("format_version", True, "'format_version' must be an integer .* got True \\(bool\\)"),
    ("config.d_model", "64", "'config.d_model' must be an integer >= 1, got '64' \\(str\\)"),
    ("config.n_layers", 0, "'config.n_layers' must be an integer >= 1, got 0"),
    ("config.positional", "lerned", "'config.positional' must be one of \\['learned', 'sinusoidal', 'rotary'\\]"),
    ("config.attn_only", "yes", "'config.attn_only' must be true or false, got 'yes'"),
    ("config.ln_eps", -1.0, "'config.ln_eps' must be a number > 0"),
    ("config.act", None, "'config.act' must be one of"),
    ("config.dropout", 0.1, "unknown key 'config.dropout'"),
    ("config.n_heads", 3, "not a valid model config: d_model=32 is not divisible by n_heads=3"),
    ("tokenizer.kind", "bpe", "'tokenizer.kind' must be 'char'"),
    ("tokenizer.symbols", ["a", "a"], "'tokenizer.symbols' must be a list of unique strings"),
    ("tokenizer", [], "'tokenizer' must be an object with the tokenizer table, or null"),
    ("weights_sha256", "abc", "'weights_sha256' must be 64 lower-case hex digits"),
    ("provenance", "x", "'provenance' must be an object"),
    ("provenance.steps", -1, "'provenance.steps' must be an integer >= 0"),
    ("extra", 1, "unknown key 'extra'"),
]


def _edit(doc: dict, dotted: str, value) -> None:
    *parents, key = dotted.split(".")
    for p in parents:
        doc = doc[p]
    doc[key] = value


@pytest.mark.parametrize(("key", "value", "message"), SCHEMA_CASES, ids=[f"{k}={v!r}" for k, v, _ in SCHEMA_CASES])
def test_schema_violation_names_key_value_and_expectation(saved, key, value, message):
    """Each schema violation in the JSON is a ValueError naming the file, the key, what it was and what was expected."""
    _, path = saved
    meta = path.with_suffix(".json")
    doc = json.loads(meta.read_text())
    _edit(doc, key, value)
    meta.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"m\.json: .*" + message):
        MiniGPT.from_pretrained(str(path))


@pytest.mark.parametrize("key", ["weights_sha256", "config", "config.act", "tokenizer"])
def test_missing_required_key_is_named(saved, key):
    """A required key missing from the JSON is a ValueError naming it and what belongs there."""
    _, path = saved
    meta = path.with_suffix(".json")
    doc = json.loads(meta.read_text())
    *parents, last = key.split(".")
    (doc[parents[0]] if parents else doc).pop(last)
    meta.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=rf"key '{re.escape(key)}' is missing; expected"):
        load_checkpoint(path)


def test_tokenizer_must_match_the_vocabulary(saved):
    """A tokenizer table whose size differs from config.d_vocab is refused, naming both numbers."""
    _, path = saved
    meta = path.with_suffix(".json")
    doc = json.loads(meta.read_text())
    doc["tokenizer"]["symbols"] = doc["tokenizer"]["symbols"][:-1]
    meta.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"'tokenizer\.symbols' has 63 symbols, expected config\.d_vocab = 64"):
        load_checkpoint(path)


def test_save_refuses_metadata_that_could_not_be_loaded(tmp_path):
    """Saving provenance that breaks the schema fails before anything is written."""
    model = make_model()
    with pytest.raises(ValueError, match=r"'provenance\.steps' must be an integer >= 0, got -1"):
        save_checkpoint(tmp_path / "m", model.cfg, model.state_dict(), None, {"steps": -1})
    assert listing(tmp_path) == [], "a checkpoint that cannot be loaded was written"
