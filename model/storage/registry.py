"""Where checkpoints live: the shipped names and how a name or a path becomes a ``.safetensors`` file.

Shipped checkpoints are in ``model/checkpoints/`` and load by name (:data:`SHIPPED`); anything else is a path
to ``<name>.safetensors`` with its ``.json`` beside it. Pickle files are refused here, by their suffix, with
how to convert them.

Example:
    >>> resolve_path("induction-2l").name, sorted(list_checkpoints())
    ('induction-2l.safetensors', ['induction-2l', 'minigpt-text'])
"""

from __future__ import annotations

import os
from pathlib import Path

CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
SHIPPED = {
    "minigpt-text": "the locked config trained on the built-in English corpus (pydoc_data.topics)",
    "induction-2l": "2-layer attention-only model with a previous-token head (L0) and an induction head (L1)",
}
DEFAULT_CHECKPOINT = "minigpt-text"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")


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


def list_checkpoints() -> dict[str, str]:
    """Shipped names -> descriptions, for the names whose files are present."""
    return {n: d for n, d in SHIPPED.items() if (CHECKPOINT_DIR / f"{n}.safetensors").is_file()}


def shipped_names() -> list[str]:
    """Names of the checkpoints in ``model/checkpoints/`` (weights with their JSON beside), the default first."""
    names = sorted(p.stem for p in CHECKPOINT_DIR.glob("*.json") if p.with_suffix(".safetensors").is_file())
    return sorted(names, key=lambda n: n != DEFAULT_CHECKPOINT)
