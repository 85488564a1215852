"""Checkpoint writes are atomic: a save that fails at any point (a rename, safetensors halfway, bad provenance) keeps
the previous pair byte for byte and leaves no temporary or backup file; a save leaves only the two final files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import listing

from model import load_checkpoint, save_checkpoint
from model.storage import files


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


def test_save_leaves_no_temp_files_and_is_readable(saved):
    """After a save only the two final files exist, with ordinary (not 0600) permissions."""
    _, path = saved
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.json", "m.safetensors"], "temp files left behind"
    assert path.stat().st_mode & 0o044, "checkpoint is not readable by group/others (mkstemp's 0600 kept?)"


def test_failed_save_keeps_the_old_checkpoint(saved):
    """A save that fails (unserialisable provenance) leaves the previous pair intact and no temp files."""
    model, path = saved
    before = path.read_bytes(), path.with_suffix(".json").read_bytes()
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_checkpoint(path, model.cfg, {k: v * 2 for k, v in model.state_dict().items()}, None, {"bad": object()})
    assert (path.read_bytes(), path.with_suffix(".json").read_bytes()) == before, "a failed save changed the files"
    assert len(list(path.parent.iterdir())) == 2, "temp files left behind"
