"""Checkpoints on disk: weights in safetensors, everything else in a JSON file beside them.

A checkpoint ``<name>`` is two files written together:

- ``<name>.safetensors`` — the state dict (float tensors; never pickle).
- ``<name>.json`` — ``format`` and ``format_version``, the model ``config``, the ``tokenizer``
  table (or null), ``weights_sha256`` (the hash of the safetensors file, so a pair from two
  different saves, or a damaged file, is caught) and ``provenance`` (``command``, ``steps``,
  ``train_loss``, ``val_loss``, ``date``, and whatever else the trainer recorded).

Both are written together through :func:`model.files.atomic_paths` (temporary files in the target
folder, renamed into place with ``os.replace``), so a crash never leaves a half-written file under
the final name and a failed save keeps the previous pair. Loading checks the JSON against the schema
of :mod:`model.schema`, the weights file's header, names, shapes and dtypes against the config, the
hash, and NaN/inf, and refuses pickle files (``.pt``, ``.pth``, ``.bin``, ``.ckpt``, ...) outright.
Shipped checkpoints live in ``model/checkpoints/`` and load by name (:data:`SHIPPED`).

This module deals in ``(ModelConfig, state dict)`` and never imports ``MiniGPT``;
``MiniGPT.from_pretrained`` / ``save_pretrained`` call it. Training state for resuming
(optimizer moments, step, RNG state) goes to a third file, ``<name>.train.safetensors``
(:func:`save_train_state`).

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

from model.config import ModelConfig
from model.files import atomic_paths, atomic_write, check_output_path
from model.schema import FLOAT_DTYPES, FORMAT, FORMAT_VERSION, read_safetensors_header, validate_metadata

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
SHIPPED = {
    "minigpt-text": "the locked config trained on the built-in English corpus (pydoc_data.topics)",
    "induction-2l": "2-layer attention-only model with a previous-token head (L0) and an induction head (L1)",
}
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")
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


# ---------------------------------------------------------------------------------------- paths
def resolve_path(name_or_path: str | os.PathLike) -> Path:
    """The ``.safetensors`` path of a shipped name, a path with or without suffix, or its ``.json``."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"expected a checkpoint name or path, got {type(name_or_path).__name__}")
    text = os.fspath(name_or_path)
    if text in SHIPPED:
        return CHECKPOINT_DIR / f"{text}.safetensors"
    if not text.strip():
        raise ValueError(f"the checkpoint name is empty; give a shipped name {sorted(SHIPPED)} or a .safetensors path")
    path = Path(text)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(
            f"{path} looks like a pickle file ({path.suffix}); MiniGPT Lens loads only safetensors + JSON, "
            "because unpickling can run arbitrary code. Convert it where you trust it: "
            "state = torch.load(path, weights_only=True); model = MiniGPT(cfg); model.load_state_dict(state); "
            "model.save_pretrained('name')"
        )
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    elif path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    if not path.is_file():
        if os.sep not in text and "/" not in text and not Path(text).suffix:
            raise FileNotFoundError(
                f"no shipped checkpoint named {text!r} and no file {path}; shipped: {sorted(SHIPPED)}"
            )
        raise FileNotFoundError(
            f"checkpoint weights {path} not found; check the path (shipped names: {sorted(SHIPPED)})"
        )
    return path


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

    Both go through :func:`model.files.atomic_paths`: if anything fails, the previous pair is left as
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
    validate_metadata(json.loads(json.dumps(doc, default=_json_default)), f"the metadata to save for {weights}")
    check_output_path(weights, create_parent=True, what="checkpoint")
    with atomic_paths(weights, meta) as (tmp_w, tmp_j):
        save_file(tensors, str(tmp_w), metadata={"format": FORMAT})
        doc["weights_sha256"] = _sha256(tmp_w)
        tmp_j.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return weights


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Tensor) and obj.numel() == 1:
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"provenance values must be JSON-serialisable, got {type(obj).__name__}")


def read_metadata(weights: Path) -> dict[str, Any]:
    """The JSON document beside ``weights``, validated against :data:`model.schema.CHECKPOINT_SCHEMA`."""
    meta = weights.with_suffix(".json")
    if not meta.is_file():
        raise FileNotFoundError(
            f"{meta} is missing; a checkpoint is a .safetensors file plus a .json file beside it "
            f"(shipped names: {sorted(SHIPPED)})"
        )
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{meta} is not valid JSON ({err}); the file is damaged: save the checkpoint again") from None
    validate_metadata(doc, str(meta))
    return doc


def load_checkpoint(name_or_path: str | os.PathLike) -> Checkpoint:
    """Load a shipped checkpoint by name, or a ``.safetensors`` path (its ``.json`` must sit beside it).

    Checks, in order, each a ValueError saying what is wrong: the JSON against the schema; the
    weights file's header (a pickle, a cut or overwritten file is refused before any tensor is
    read); the tensor names, shapes and dtypes against the config (every mismatch listed); the
    weights' hash against the one the JSON recorded; NaN or inf in the weights.
    """
    weights = resolve_path(name_or_path)
    doc = read_metadata(weights)
    cfg = ModelConfig.from_dict(doc["config"])
    _raise_mismatch(cfg, layout_mismatches(cfg, read_safetensors_header(weights)), str(weights))
    meta = weights.with_suffix(".json")
    if _sha256(weights) != doc["weights_sha256"]:
        raise ValueError(
            f"{weights} does not match the hash recorded in {meta.name}: the weights are damaged, or the two "
            "files come from different saves; save the checkpoint again (or restore both files together)"
        )
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


def list_checkpoints() -> dict[str, str]:
    """Shipped names -> descriptions, for the names whose files are present."""
    return {n: d for n, d in SHIPPED.items() if (CHECKPOINT_DIR / f"{n}.safetensors").is_file()}


# ---------------------------------------------------------------------------------------- train state
def train_state_path(weights: str | os.PathLike) -> Path:
    """``<name>.train.safetensors`` beside ``<name>.safetensors``."""
    p = Path(os.fspath(weights))
    stem = p.with_suffix("") if p.suffix == ".safetensors" else p
    return stem.with_name(stem.name + ".train.safetensors")


def save_train_state(weights: str | os.PathLike, tensors: dict[str, Tensor], info: dict[str, Any]) -> Path:
    """Atomically write the tensors (optimizer moments, RNG state) and a JSON ``info`` dict for resuming."""
    path = check_output_path(train_state_path(weights), create_parent=True, what="training state")
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    text = json.dumps(info, default=_json_default)
    return atomic_write(path, lambda tmp: save_file(flat, str(tmp), metadata={"info": text}))


def load_train_state(weights: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(tensors, info)`` written by :func:`save_train_state`; FileNotFoundError when absent."""
    path = train_state_path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: resuming needs the training state saved beside the checkpoint")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            info = json.loads((f.metadata() or {})["info"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is damaged ({err!r}); resume from another checkpoint or start afresh") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path} is damaged (its info is a {type(info).__name__}); resume from another checkpoint")
    return tensors, info
