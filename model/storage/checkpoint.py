"""Checkpoints on disk: weights in safetensors, everything else in a JSON file beside them.

A checkpoint ``<name>`` is two files written together:

- ``<name>.safetensors`` — the state dict (float tensors; never pickle).
- ``<name>.json`` — ``format`` and ``format_version``, the model ``config``, the ``tokenizer``
  table (or null), ``weights_sha256`` (the hash of the safetensors file, so a pair from two
  different saves, or a damaged file, is caught) and ``provenance`` (``command``, ``steps``,
  ``train_loss``, ``val_loss``, ``date``, and whatever else the trainer recorded).

Both are written together through :func:`model.storage.files.atomic_paths` (temporary files in the target
folder, renamed into place with ``os.replace``), so a crash never leaves a half-written file under
the final name and a failed save keeps the previous pair. Loading checks the JSON against the schema
of :mod:`model.storage.schema`, the weights file's header, names, shapes and dtypes against the config, the
hash, and NaN/inf, and refuses pickle files (``.pt``, ``.pth``, ``.bin``, ``.ckpt``, ...) outright.
Shipped checkpoints live in ``model/checkpoints/`` and load by name (:mod:`model.storage.registry`).

This module deals in ``(ModelConfig, state dict)`` and never imports ``MiniGPT``;
``MiniGPT.from_pretrained`` / ``save_pretrained`` call it. Training state for resuming
(optimizer moments, step, RNG state) goes to a third file (:mod:`model.training.resume`).

Example:
    >>> ckpt = load_checkpoint("minigpt-text")
    >>> ckpt.cfg.n_layers, ckpt.provenance["steps"], sorted(ckpt.provenance)[:3]
    (2, 7000, ['command', 'data', 'date'])
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from model.network.config import ModelConfig
from model.storage.files import atomic_paths, check_output_path
from model.storage.registry import SHIPPED, resolve_path
from model.storage.schema import (
    FLOAT_DTYPES,
    FORMAT,
    FORMAT_VERSION,
    parse_safetensors_header,
    read_safetensors_header,
    validate_metadata,
)

SHOWN = 6  # mismatches listed per kind in an error message


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: config, state dict, tokenizer table (or None), provenance, weights path."""

    cfg: ModelConfig
    state_dict: dict[str, Tensor]
    tokenizer: dict[str, Any] | None
    provenance: dict[str, Any]
    path: Path


# ---------------------------------------------------------------------------------------- layout
def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The state-dict keys and shapes a MiniGPT with ``cfg`` has (persistent tensors only)."""
    d, h, dh, f, v = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_ff, cfg.d_vocab
    shapes: dict[str, tuple[int, ...]] = {"embed.W_E": (v, d)}
    if cfg.positional == "learned":
        shapes["pos_embed.W_pos"] = (cfg.n_ctx, d)

    def ln(prefix: str) -> None:
        shapes[f"{prefix}.w"] = (d,)
        if cfg.bias:
            shapes[f"{prefix}.b"] = (d,)

    for layer in range(cfg.n_layers):
        p = f"blocks.{layer}"
        if cfg.has_ln:
            ln(f"{p}.ln1")
        for w in ("W_Q", "W_K", "W_V"):
            shapes[f"{p}.attn.{w}"] = (h, d, dh)
        shapes[f"{p}.attn.W_O"] = (h, dh, d)
        if cfg.bias:
            shapes.update({f"{p}.attn.b_Q": (h, dh), f"{p}.attn.b_K": (h, dh), f"{p}.attn.b_V": (h, dh)})
            shapes[f"{p}.attn.b_O"] = (d,)
        if not cfg.attn_only:
            if cfg.has_ln:
                ln(f"{p}.ln2")
            shapes.update({f"{p}.mlp.W_in": (d, f), f"{p}.mlp.W_out": (f, d)})
            if cfg.bias:
                shapes.update({f"{p}.mlp.b_in": (f,), f"{p}.mlp.b_out": (d,)})
    if cfg.norm == "pre":
        ln("ln_final")
    if not cfg.tied_embed:
        shapes["unembed.W_U"] = (d, v)
        if cfg.bias:
            shapes["unembed.b_U"] = (v,)
    return shapes


def _listed(items: list[str], brackets: bool = True) -> str:
    more = f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    shown = ", ".join(items[:SHOWN])
    return (f"[{shown}]" if brackets else shown) + more


def layout_mismatches(cfg: ModelConfig, tensors: dict[str, tuple[str, tuple[int, ...]]]) -> list[str]:
    """What differs between ``{name: (dtype, shape)}`` and the layout ``cfg`` needs: one phrase per kind."""
    want = expected_shapes(cfg)
    missing = [repr(k) for k in sorted(set(want) - set(tensors))]
    extra = [repr(k) for k in sorted(set(tensors) - set(want))]
    common = [k for k in want if k in tensors]
    wrong = [f"{k} {tensors[k][1]} (config says {want[k]})" for k in common if tensors[k][1] != want[k]]
    dtypes = [f"{k} {tensors[k][0]}" for k in common if tensors[k][0] not in FLOAT_DTYPES]
    kinds = [
        ("missing ", missing, True),
        ("unexpected ", extra, True),
        ("wrong shapes: ", wrong, False),
        (f"not floating point (expected {'/'.join(FLOAT_DTYPES)}): ", dtypes, False),
    ]
    return [what + _listed(items, brackets) for what, items, brackets in kinds if items]


def _raise_mismatch(cfg: ModelConfig, problems: list[str], where: str) -> None:
    if problems:
        summary = f"d_model={cfg.d_model}, n_heads={cfg.n_heads}, n_layers={cfg.n_layers}, d_ff={cfg.d_ff}"
        raise ValueError(
            f"{where} does not match its config ({summary}, ...): {'; '.join(problems)}; the weights and the "
            "config come from different models: re-save the checkpoint from the model"
        )


def check_state_dict(cfg: ModelConfig, state_dict: dict[str, Tensor], where: str = "state dict") -> None:
    """Raise a ValueError listing missing, unexpected, wrongly shaped and non-float tensors."""
    dtype = {True: "F32", False: "int"}
    layout = {k: (dtype[torch.is_floating_point(v)], tuple(v.shape)) for k, v in state_dict.items()}
    _raise_mismatch(cfg, layout_mismatches(cfg, layout), where)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------- save / load
def save_checkpoint(
    path: str | os.PathLike,
    cfg: ModelConfig,
    state_dict: dict[str, Tensor],
    tokenizer: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write ``<path>.safetensors`` and ``<path>.json`` together, atomically; return the weights path.

    Both go through :func:`model.storage.files.atomic_paths`: if anything fails, the previous pair is left as
    it was and no temporary file remains. The document is checked against the schema before writing,
    so a checkpoint that could not be loaded again is never written. Missing folders are created.

    Example:
        >>> import tempfile
        >>> from model import MiniGPT, ModelConfig
        >>> m = MiniGPT(ModelConfig(), seed=0)
        >>> p = save_checkpoint(tempfile.mkdtemp() + "/m", m.cfg, m.state_dict(), None, {"steps": 0})
        >>> load_checkpoint(p).cfg == m.cfg
        True
    """
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or a path, got {type(path).__name__}")
    path = Path(os.fspath(path))
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    weights, meta = path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    check_state_dict(cfg, tensors, "the state dict to save")
    prov = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **(provenance or {})}
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": cfg.to_dict(),
        "tokenizer": tokenizer,
        "weights_sha256": "0" * 64,  # filled in once the weights are written
        "provenance": prov,
    }
    validate_metadata(json.loads(json.dumps(doc, default=json_default)), f"the metadata to save for {weights}")
    check_output_path(weights, create_parent=True, what="checkpoint")
    with atomic_paths(weights, meta) as (tmp_w, tmp_j):
        save_file(tensors, str(tmp_w), metadata={"format": FORMAT})
        doc["weights_sha256"] = _sha256(tmp_w)
        tmp_j.write_text(json.dumps(doc, indent=2, default=json_default) + "\n", encoding="utf-8")
    return weights


def json_default(obj: Any) -> Any:
    if isinstance(obj, Tensor) and obj.numel() == 1:
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"provenance values must be JSON-serialisable, got {type(obj).__name__}")


def read_metadata(weights: Path) -> dict[str, Any]:
    """The JSON document beside ``weights``, validated against :data:`model.storage.schema.CHECKPOINT_SCHEMA`."""
    meta = weights.with_suffix(".json")
    if not meta.is_file():
        raise FileNotFoundError(
            f"{meta} is missing; a checkpoint is a .safetensors file plus a .json file beside it "
            f"(shipped names: {sorted(SHIPPED)})"
        )
    doc = _parse_json(meta.read_bytes(), str(meta))
    validate_metadata(doc, str(meta))
    return doc


def _parse_json(blob: bytes, where: str) -> Any:
    try:
        return json.loads(blob.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{where} is not valid JSON ({err}); the file is damaged: save the checkpoint again") from None


def verify_checkpoint(
    doc: Any, layout: dict[str, tuple[str, tuple[int, ...]]], weights_sha256: str, weights: str, meta: str
) -> ModelConfig:
    """The one check of a checkpoint pair before any tensor is read; returns its config.

    ``doc`` is the parsed JSON (from ``meta``), ``layout`` the ``{name: (dtype, shape)}`` of the weights
    file's header and ``weights_sha256`` its hash. Checks, each a ValueError saying what is wrong: the JSON
    against the schema, the tensors against the config (every mismatch listed), the hash against the JSON's.
    :func:`load_checkpoint` and the dashboard's upload (:func:`check_checkpoint_bytes`) both call it.
    """
    cfg = validate_metadata(doc, meta)
    _raise_mismatch(cfg, layout_mismatches(cfg, layout), weights)
    if weights_sha256 != doc["weights_sha256"]:
        raise ValueError(
            f"{weights} does not match the hash recorded in {Path(meta).name}: the weights are damaged, or the two "
            "files come from different saves; save the checkpoint again (or restore both files together)"
        )
    return cfg


def check_checkpoint_bytes(weights_name: str, weights: bytes, meta_name: str, meta: bytes) -> ModelConfig:
    """:func:`verify_checkpoint` on a pair held in memory (an upload), before anything is written to disk.

    Example:
        >>> from model.storage.registry import CHECKPOINT_DIR
        >>> w, j = (CHECKPOINT_DIR / f"induction-2l{s}" for s in (".safetensors", ".json"))
        >>> check_checkpoint_bytes(w.name, w.read_bytes(), j.name, j.read_bytes()).n_heads
        1
        >>> check_checkpoint_bytes(w.name, w.read_bytes()[:100], j.name, j.read_bytes())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: induction-2l.safetensors is damaged: the header length ... does not fit in the file's 100 bytes...
    """
    if not isinstance(weights, bytes) or not isinstance(meta, bytes):
        raise TypeError(
            f"check_checkpoint_bytes takes the files' bytes, got {type(weights).__name__} and {type(meta).__name__}"
        )
    layout = parse_safetensors_header(weights, len(weights), weights_name)
    doc = _parse_json(meta, meta_name)
    return verify_checkpoint(doc, layout, hashlib.sha256(weights).hexdigest(), weights_name, meta_name)


def load_checkpoint(name_or_path: str | os.PathLike) -> Checkpoint:
    """Load a shipped checkpoint by name, or a ``.safetensors`` path (its ``.json`` must sit beside it).

    Checks, in order, each a ValueError saying what is wrong: the JSON against the schema; the
    weights file's header (a pickle, a cut or overwritten file is refused before any tensor is
    read); the tensor names, shapes and dtypes against the config (every mismatch listed); the
    weights' hash against the one the JSON recorded; NaN or inf in the weights.
    """
    weights = resolve_path(name_or_path)
    doc = read_metadata(weights)
    layout = read_safetensors_header(weights)
    cfg = verify_checkpoint(doc, layout, _sha256(weights), str(weights), str(weights.with_suffix(".json")))
    try:
        state_dict = load_file(weights)
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{weights} is damaged: not a readable safetensors file ({err}); save it again") from None
    bad = [k for k, v in state_dict.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(
            f"{weights}: tensors {_listed(bad)} hold NaN or inf; the training diverged or the file was damaged: "
            "load an earlier checkpoint or train again"
        )
    return Checkpoint(cfg, state_dict, doc["tokenizer"], doc["provenance"], weights)
