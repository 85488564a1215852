"""Checkpoints on disk: weights in safetensors, everything else in a JSON file beside them.

A checkpoint ``<name>`` is two files written together:

- ``<name>.safetensors`` — the state dict (float tensors; never pickle).
- ``<name>.json`` — ``format`` and ``format_version``, the model ``config``, the ``tokenizer``
  table (or null), ``weights_sha256`` (the hash of the safetensors file, so a pair from two
  different saves, or a damaged file, is caught) and ``provenance`` (``command``, ``steps``,
  ``train_loss``, ``val_loss``, ``date``, and whatever else the trainer recorded).

Both are written to temporary files in the target directory and renamed into place with
``os.replace``, so a crash never leaves a half-written file under the final name.
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
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from model.config import ModelConfig

FORMAT = "minigpt-lens-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
SHIPPED = {
    "minigpt-text": "the locked config trained on the built-in English corpus (pydoc_data.topics)",
    "induction-2l": "2-layer attention-only model with a previous-token head (L0) and an induction head (L1)",
}
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")
_UMASK = os.umask(0o022)  # read the process umask once (os.umask can only read it by setting it)
os.umask(_UMASK)
_REQUIRED = {"format": str, "format_version": int, "config": dict, "weights_sha256": str, "provenance": dict}


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


def check_state_dict(cfg: ModelConfig, state_dict: dict[str, Tensor], where: str = "state dict") -> None:
    """Raise a ValueError naming missing, unexpected and wrongly shaped tensors."""
    want = expected_shapes(cfg)
    missing = sorted(set(want) - set(state_dict))
    extra = sorted(set(state_dict) - set(want))
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} (config says {want[k]})"
        for k in want
        if k in state_dict and tuple(state_dict[k].shape) != want[k]
    ]
    if missing or extra or wrong:
        parts = [f"missing {missing[:6]}" if missing else "", f"unexpected {extra[:6]}" if extra else ""]
        parts.append(f"wrong shapes: {'; '.join(wrong[:6])}" if wrong else "")
        raise ValueError(
            f"{where} does not match its config: {', '.join(p for p in parts if p)}; "
            "the weights and the config come from different models: re-save the checkpoint from the model"
        )


# ---------------------------------------------------------------------------------------- paths
def resolve_path(name_or_path: str | os.PathLike) -> Path:
    """The ``.safetensors`` path of a shipped name, a path with or without suffix, or its ``.json``."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"expected a checkpoint name or path, got {type(name_or_path).__name__}")
    text = os.fspath(name_or_path)
    if text in SHIPPED:
        return CHECKPOINT_DIR / f"{text}.safetensors"
    path = Path(text)
    if path.suffix in PICKLE_SUFFIXES:
        raise ValueError(
            f"{path} looks like a pickle file ({path.suffix}); MiniGPT Lens loads only safetensors + JSON, "
            "because unpickling can run arbitrary code. Convert it: load the state dict yourself and call "
            "model.save_pretrained('name.safetensors')"
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
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _atomic_write(path: Path, write: Callable[[str], None]) -> str:
    """Write via ``write(tmp_path)`` to a temp file in ``path``'s directory; return the temp path."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp (and safetensors) make 0600; use the usual permissions
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


# ---------------------------------------------------------------------------------------- save / load
def save_checkpoint(
    path: str | os.PathLike,
    cfg: ModelConfig,
    state_dict: dict[str, Tensor],
    tokenizer: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write ``<path>.safetensors`` and ``<path>.json`` atomically; return the weights path.

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
    path = Path(os.fspath(path))
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    check_state_dict(cfg, tensors, "the state dict to save")
    weights, meta = path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")
    tmp_w = _atomic_write(weights, lambda t: save_file(tensors, t, metadata={"format": FORMAT}))
    try:
        prov = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **(provenance or {})}
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": cfg.to_dict(),
            "tokenizer": tokenizer,
            "weights_sha256": _sha256(Path(tmp_w)),
            "provenance": prov,
        }
        text = json.dumps(doc, indent=2, sort_keys=False, default=_json_default)
        tmp_j = _atomic_write(meta, lambda t: Path(t).write_text(text + "\n", encoding="utf-8"))
    except BaseException:
        os.unlink(tmp_w)
        raise
    os.replace(tmp_w, weights)
    os.replace(tmp_j, meta)
    return weights


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Tensor) and obj.numel() == 1:
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"provenance values must be JSON-serialisable, got {type(obj).__name__}")


def read_metadata(weights: Path) -> dict[str, Any]:
    """The validated JSON document beside ``weights``."""
    meta = weights.with_suffix(".json")
    if not meta.is_file():
        raise FileNotFoundError(f"{meta} is missing; a checkpoint is a .safetensors file plus a .json file beside it")
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{meta} is not valid JSON ({err}); the file is damaged: save the checkpoint again") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{meta} must hold a JSON object, got {type(doc).__name__}")
    for key, kind in _REQUIRED.items():
        if not isinstance(doc.get(key), kind) or (kind is int and isinstance(doc.get(key), bool)):
            raise ValueError(
                f"{meta}: key {key!r} must be a {kind.__name__}, got {doc.get(key)!r}; save the checkpoint again"
            )
    if doc["format"] != FORMAT:
        raise ValueError(f"{meta}: format {doc['format']!r} is not {FORMAT!r}; this is not a MiniGPT Lens checkpoint")
    if doc["format_version"] > FORMAT_VERSION:
        raise ValueError(
            f"{meta}: format_version {doc['format_version']} is newer than this library's {FORMAT_VERSION}; upgrade"
        )
    if doc.get("tokenizer") is not None and not isinstance(doc["tokenizer"], dict):
        raise ValueError(f"{meta}: 'tokenizer' must be an object or null, got {doc['tokenizer']!r}")
    return doc


def load_checkpoint(name_or_path: str | os.PathLike) -> Checkpoint:
    """Load a shipped checkpoint by name, or a ``.safetensors`` path (its ``.json`` must sit beside it)."""
    weights = resolve_path(name_or_path)
    doc = read_metadata(weights)
    meta = weights.with_suffix(".json")
    try:
        cfg = ModelConfig.from_dict(doc["config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{meta}: bad 'config': {err}") from None
    if _sha256(weights) != doc["weights_sha256"]:
        raise ValueError(
            f"{weights} does not match the hash recorded in {meta.name}: the weights are damaged, truncated, or "
            "from another save; save the checkpoint again (or restore both files together)"
        )
    try:
        state_dict = load_file(weights)
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{weights} is not a readable safetensors file ({err}); save the checkpoint again") from None
    check_state_dict(cfg, state_dict, str(weights))
    return Checkpoint(cfg, state_dict, doc.get("tokenizer"), doc["provenance"], weights)


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
    path = train_state_path(weights)
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    tmp = _atomic_write(path, lambda t: save_file(flat, t, metadata={"info": json.dumps(info, default=_json_default)}))
    os.replace(tmp, path)
    return path


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
    return tensors, info
