"""A training run on disk: the snapshots written while it trained, and the final checkpoint beside them.

A run trained to ``<dir>/<name>`` keeps its snapshots in ``<dir>/<name>.snapshots/``, one checkpoint per step:
``step-0001200.safetensors`` + ``step-0001200.json``. A snapshot *is* a checkpoint (same JSON schema, same
atomic pair of files, same one validation :func:`model.storage.checkpoint.verify_checkpoint`); its provenance
also says ``"snapshot_dtype"`` (snapshots may be stored in float16 to save room; they load as float32). The
final checkpoint ``<dir>/<name>.safetensors`` is the run's last step (the loop does not write that step twice).

:class:`Run` lists the steps and loads any of them; shipped runs load by the shipped model's name.

Example:
    >>> run = Run.load("induction-2l")
    >>> run.steps[:4], run.steps[-1]
    ((0, 1, 2, 3), 20000)
    >>> run.checkpoint(3000).provenance["steps"]
    3000
    >>> run.path(3100)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: run induction-2l has no snapshot at step 3100; the nearest saved steps are 3000 and 3250 ...
"""

from __future__ import annotations

import bisect
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from model.network.config import ModelConfig
from model.storage.checkpoint import Checkpoint, load_checkpoint, read_metadata, save_checkpoint
from model.storage.registry import CHECKPOINT_DIR, SHIPPED

SUFFIX = ".snapshots"
STEP_FILE = re.compile(r"step-(\d{7,})\.safetensors")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def run_stem(name_or_path: str | os.PathLike) -> Path:
    """``<dir>/<name>`` of a shipped name, a checkpoint path (with or without suffix) or a snapshot folder."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"expected a run name or path, got {type(name_or_path).__name__}")
    text = os.fspath(name_or_path)
    if not text.strip():
        raise ValueError(f"the run name is empty; give a shipped name {sorted(SHIPPED)} or a checkpoint path")
    if text in SHIPPED:
        return CHECKPOINT_DIR / text
    path = Path(text)
    return path.with_suffix("") if path.suffix in (".safetensors", ".json", SUFFIX) else path


def snapshot_dir(out: str | os.PathLike) -> Path:
    """The folder of the snapshots of the run trained to ``out`` (``<dir>/<name>.snapshots``)."""
    stem = run_stem(out)
    return stem.with_name(stem.name + SUFFIX)


def snapshot_path(out: str | os.PathLike, step: int) -> Path:
    """``<dir>/<name>.snapshots/step-<7 digits>.safetensors``."""
    return snapshot_dir(out) / f"step-{step:07d}.safetensors"


def save_snapshot(
    out: str | os.PathLike,
    step: int,
    cfg: ModelConfig,
    state_dict: dict[str, Tensor],
    tokenizer: dict[str, Any] | None,
    provenance: dict[str, Any],
    dtype: str = "float32",
) -> Path:
    """Write the snapshot of step ``step`` of the run ``out`` (a checkpoint, atomically); return its weights path."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {list(DTYPES)}")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    tensors = {k: v.detach().to("cpu", DTYPES[dtype]) for k, v in state_dict.items()}
    prov = {**provenance, "steps": step, "snapshot_dtype": dtype}
    return save_checkpoint(snapshot_path(out, step), cfg, tensors, tokenizer, prov)


def clear_snapshots(out: str | os.PathLike, after: int = -1) -> int:
    """Remove the snapshots of ``out`` with a step above ``after`` (all by default); return how many went.

    A fresh run clears its folder so that no snapshot of an earlier run can pass for one of this run; a resumed
    run clears only the steps it is about to write again.
    """
    folder, gone = snapshot_dir(out), 0
    for step, weights in _listed(folder):
        if step > after:
            weights.unlink(missing_ok=True)
            weights.with_suffix(".json").unlink(missing_ok=True)
            gone += 1
    return gone


def _listed(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := STEP_FILE.fullmatch(p.name))]
    return sorted((step, p) for step, p in found if p.with_suffix(".json").is_file())


@dataclass(frozen=True)
class Run:
    """The saved steps of one training run: ``steps`` (sorted) and the weights file of each (``path(step)``)."""

    name: str
    folder: Path  # the snapshot folder
    files: tuple[tuple[int, Path], ...]  # (step, weights path), sorted by step; the final checkpoint included

    @classmethod
    def load(cls, name_or_path: str | os.PathLike) -> Run:
        """The run of a shipped model's name, of a checkpoint path, or of a snapshot folder."""
        stem = run_stem(name_or_path)
        folder = snapshot_dir(stem)
        files = dict(_listed(folder))
        if not files:
            raise FileNotFoundError(
                f"no snapshots in {folder}: train with snapshots (TrainConfig(snapshots=SnapshotSchedule()), or "
                f"minigpt train --snapshots 60); runs shipped with snapshots: {list_runs()}"
            )
        final = stem.with_name(stem.name + ".safetensors")
        if final.is_file() and final.with_suffix(".json").is_file():
            last = read_metadata(final)["provenance"].get("steps")
            if isinstance(last, int) and last >= max(files):
                files[last] = final  # the exact float32 weights of the last step
        return cls(stem.name, folder, tuple(sorted(files.items())))

    @property
    def steps(self) -> tuple[int, ...]:
        """Every saved step, ascending (0 is the initial weights)."""
        return tuple(step for step, _ in self.files)

    def nearest(self, step: int) -> tuple[int, ...]:
        """The saved steps closest to ``step``: the one below and the one above (one of them at the ends)."""
        steps = self.steps
        i = bisect.bisect_left(steps, step)
        return tuple(steps[j] for j in (i - 1, i) if 0 <= j < len(steps))

    def path(self, step: int) -> Path:
        """The weights file of ``step``; ValueError naming the nearest saved steps when there is none."""
        if isinstance(step, bool) or not isinstance(step, int):
            raise TypeError(f"step must be an int (one of run.steps), got {step!r}")
        found = dict(self.files).get(step)
        if found is None:
            near = " and ".join(map(str, self.nearest(step)))
            raise ValueError(
                f"run {self.name} has no snapshot at step {step}; the nearest saved steps are {near} "
                f"(run.steps lists all {len(self.files)})"
            )
        return found

    def checkpoint(self, step: int) -> Checkpoint:
        """The checkpoint of ``step``, checked like any checkpoint, its weights as float32."""
        ckpt = load_checkpoint(self.path(step))
        if ckpt.provenance.get("steps") != step:
            raise ValueError(
                f"{ckpt.path} records step {ckpt.provenance.get('steps')}, not {step}: the file was renamed or "
                "copied from another run; train the run again"
            )
        weights = {k: v.float() for k, v in ckpt.state_dict.items()}
        return Checkpoint(ckpt.cfg, weights, ckpt.tokenizer, ckpt.provenance, ckpt.path)

    def history(self) -> list[dict[str, Any]]:
        """The loss history (``step``, ``train_loss``, ``val_loss``, ``lr``) of the run's last saved step."""
        return list(read_metadata(self.files[-1][1])["provenance"].get("history", []))


def load_step(name_or_path: str | os.PathLike, step: int | None = None) -> Checkpoint:
    """The final checkpoint of ``name_or_path`` (``step=None``) or the snapshot of ``step`` of its run."""
    return load_checkpoint(name_or_path) if step is None else Run.load(name_or_path).checkpoint(step)


def list_runs() -> list[str]:
    """The shipped models whose training run is shipped too (their snapshot folder is present)."""
    return [name for name in SHIPPED if _listed(snapshot_dir(CHECKPOINT_DIR / name))]
