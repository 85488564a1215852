"""A local Hugging Face model folder as a MiniGPT: ``config.json``, the weights (``model.safetensors``, or shards
listed in ``model.safetensors.index.json``) and the tokenizer (``tokenizer.json`` with its special-token files).

Nothing is downloaded and no code from the folder runs (``trust_remote_code`` is never used). The family comes
from ``config.json``'s ``model_type``; :data:`FAMILIES` lists those read so far, each with its converter.

Example:
    >>> import tempfile
    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> folder = tempfile.mkdtemp()
    >>> config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50, n_positions=16)
    >>> GPT2LMHeadModel(config).save_pretrained(folder)
    >>> cfg, state, tokenizer, dtype = read_hf_folder(folder)
    >>> cfg.n_layers, cfg.d_vocab, tokenizer is None  # no tokenizer.json in this folder
    (1, 50, True)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import Tensor

from model.network.config import ModelConfig
from model.network.hf_tokenizer import HFTokenizer
from model.storage.hf_gpt2 import hf_gpt2_to_minigpt
from model.storage.schema import read_safetensors_header

FAMILIES: dict[str, Callable[[dict[str, Tensor], dict], tuple[ModelConfig, dict[str, Tensor]]]] = {
    "gpt2": partial(hf_gpt2_to_minigpt, copy=False),  # the file's tensors become the model's: no second copy
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def read_hf_folder(
    folder: str | Path, dtype: str | torch.dtype | None = None
) -> tuple[ModelConfig, dict[str, Tensor], HFTokenizer | None, torch.dtype]:
    """``(config, MiniGPT state dict, tokenizer or None, dtype)`` of the Hugging Face model in ``folder``; ``dtype``:
    ``"float32"`` (default), ``"bfloat16"`` or ``"float16"``. ``MiniGPT.from_pretrained(folder)`` builds the model."""
    folder = Path(folder)
    config = read_config(folder)
    family = config.get("model_type")
    if family not in FAMILIES:
        raise ValueError(
            f"{folder}: model_type={family!r} is not a family MiniGPT Lens reads; it reads {sorted(FAMILIES)}"
        )
    dtype = _check_dtype(dtype)
    _check_memory(folder, dtype)
    cfg, state = FAMILIES[family](read_weights(folder), config)
    tokenizer = HFTokenizer.from_folder(folder) if (folder / "tokenizer.json").is_file() else None
    return cfg, state, tokenizer, dtype


def read_config(folder: Path) -> dict:
    """``config.json`` of ``folder``, or a FileNotFoundError that says what a model folder holds."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; give a Hugging Face model folder (config.json, weights)")
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} has no config.json: a Hugging Face model folder holds config.json beside its weights "
            "(write one with model.save_pretrained(folder) in transformers)"
        )
    config = json.loads(path.read_text())
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(config).__name__}")
    return config


LOAD_PEAK = 3  # copies of the weights held at once while loading: the files' tensors, the model's, the loaded ones


def weight_files(folder: Path) -> list[Path]:
    """The folder's safetensors files: the shards its index lists, or ``model.safetensors``."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return [folder / s for s in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return [folder / "model.safetensors"] if (folder / "model.safetensors").is_file() else []


def available_memory() -> int:
    """Bytes of memory this machine can give now (``MemAvailable``; the physical pages free where that is unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _check_memory(folder: Path, dtype: torch.dtype) -> None:
    """Refuse, from the safetensors headers alone, a model that loading would not fit in memory."""
    size = torch.tensor([], dtype=dtype).element_size()
    files = [f for f in weight_files(folder) if f.is_file()]  # a missing file is read_weights' error
    numel = sum(math.prod(shape) for path in files for _, shape in read_safetensors_header(path).values())
    need, free = LOAD_PEAK * numel * size, available_memory()
    if need > free:
        raise ValueError(
            f"{folder}: loading it needs about {need / 2**30:.1f} GiB ({numel:,} weights in {dtype}, held "
            f"{LOAD_PEAK} times while loading) and this machine has {free / 2**30:.1f} GiB free; use a smaller "
            "model, dtype='bfloat16', or a machine with more memory"
        )


def read_weights(folder: Path) -> dict[str, Tensor]:
    """Every tensor of the folder's safetensors file, or of the shards its index lists."""
    from safetensors.torch import load_file

    files = weight_files(folder)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: the index lists shards that are not there: {missing}")
    if not files:
        pickled = sorted(p.name for p in folder.glob("*.bin"))
        hint = (
            f" (it has {pickled}: pickled weights, which MiniGPT Lens does not unpickle; convert them with "
            "transformers: model.save_pretrained(folder, safe_serialization=True))"
            if pickled
            else ""
        )
        raise FileNotFoundError(f"{folder} has no model.safetensors or model.safetensors.index.json{hint}")
    state: dict[str, Tensor] = {}
    for path in files:
        state.update(load_file(path))
    return state


def _check_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
