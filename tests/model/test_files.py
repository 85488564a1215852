"""Safe files: the one atomic writer, output paths, atomic CSV and loss-plot writes, the file modules' examples.

Checkpoint files (the schema, damaged or hostile files, atomic checkpoint writes): tests/model/checkpoint_safety/.
"""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import listing

from interp import write_csv_atomic
from model.storage import files

ROOT = Path(__file__).resolve().parents[2]


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
