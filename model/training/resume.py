"""Resuming a run: the training state beside a checkpoint, and the model, optimizer and data stream rebuilt from it.

Beside ``<name>.safetensors`` training writes ``<name>.train.safetensors``: the optimizer moments, the data
generator's RNG state and, in its metadata, the step, history and the commands so far. Resuming from that pair
continues the exact run: ``a`` steps plus a resume to ``b`` are bit-identical to ``b`` uninterrupted steps.

Example:
    >>> import tempfile, torch
    >>> path = save_train_state(tempfile.mkdtemp() + "/m.safetensors", {"x": torch.ones(2)}, {"step": 3})
    >>> load_train_state(path.with_name("m.safetensors"))[1]
    {'step': 3}
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from torch import Tensor

from model.network.config import ModelConfig
from model.network.minigpt import MiniGPT
from model.storage.checkpoint import json_default, load_checkpoint, save_checkpoint
from model.storage.files import atomic_write, check_output_path
from model.storage.runs import save_snapshot
from model.training.presets import TrainConfig


def train_state_path(weights: str | os.PathLike) -> Path:
    """``<name>.train.safetensors`` beside ``<name>.safetensors``."""
    p = Path(os.fspath(weights))
    stem = p.with_suffix("") if p.suffix == ".safetensors" else p
    return stem.with_name(stem.name + ".train.safetensors")


def save_train_state(weights: str | os.PathLike, tensors: dict[str, Tensor], info: dict[str, Any]) -> Path:
    """Atomically write the tensors (optimizer moments, RNG state) and a JSON ``info`` dict for resuming."""
    path = check_output_path(train_state_path(weights), create_parent=True, what="training state")
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    text = json.dumps(info, default=json_default)
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


def make_optimizer(model: MiniGPT, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (``ndim >= 2``) and none on vectors."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    """An optimizer's state as flat tensors (``optim.{param}.{name}``, for a safetensors file) and its param groups."""
    sd = opt.state_dict()
    flat = {f"optim.{i}.{k}": v for i, st in sd["state"].items() for k, v in st.items()}
    return flat, sd["param_groups"]


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], groups: list[dict[str, Any]]) -> None:
    """Load into ``opt`` the state :func:`optimizer_tensors` flattened."""
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for g in groups:
        g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


def start_run(
    model_cfg: ModelConfig, cfg: TrainConfig, resume: str | None
) -> tuple[MiniGPT, torch.optim.AdamW, torch.Generator, dict]:
    """Model, optimizer, data generator and the progress so far (fresh, or restored from ``resume``)."""
    if resume is None:
        model = MiniGPT(model_cfg, seed=cfg.seed).to(cfg.device)
        opt = make_optimizer(model, cfg)
        gen = torch.Generator().manual_seed(cfg.seed)
        return model, opt, gen, {"step": 0, "history": [], "seconds": 0.0, "commands": []}
    ckpt = load_checkpoint(resume)
    if ckpt.cfg != model_cfg:
        raise ValueError(f"{ckpt.path} was trained with a different model config ({ckpt.cfg}); resume with that config")
    tensors, info = load_train_state(ckpt.path)
    if info.get("step") != ckpt.provenance.get("steps"):
        raise ValueError(
            f"{train_state_path(ckpt.path)} is at step {info.get('step')} but {ckpt.path.name} at step "
            f"{ckpt.provenance.get('steps')}: they come from different saves; resume from a matching pair"
        )
    model = MiniGPT(ckpt.cfg)
    model.load_state_dict(ckpt.state_dict)
    model.to(cfg.device)
    opt = make_optimizer(model, cfg)
    restore_optimizer(opt, tensors, info["param_groups"])
    gen = torch.Generator()
    gen.set_state(tensors["data_generator"])
    if info["step"] >= cfg.steps:
        raise ValueError(
            f"{ckpt.path} is already at step {info['step']} >= steps={cfg.steps}; pass more steps to resume"
        )
    return model, opt, gen, info


def _provenance(progress: dict[str, Any], cfg: TrainConfig) -> dict[str, Any]:
    """What a checkpoint of this run records about how it was made (the step, losses, config, data, torch)."""
    hist = progress["history"]
    return {
        "command": progress["commands"][-1],
        "commands": progress["commands"],  # every command that trained this run (more than one after a resume)
        "steps": progress["step"],
        "train_loss": hist[-1]["train_loss"] if hist else None,
        "val_loss": next((h["val_loss"] for h in reversed(hist) if h["val_loss"] is not None), None),
        "loss_unit": "nats per token (per character for text)",
        "train_config": dataclasses.asdict(cfg),
        "data": progress.get("data", ""),
        "seconds": round(progress["seconds"], 1),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def save_run(
    model: MiniGPT,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    out: Path,
    cfg: TrainConfig,
    progress: dict[str, Any],
    final: dict[str, Any],
) -> Path:
    """Write the checkpoint (with provenance) and the training state beside it."""
    prov = _provenance(progress, cfg) | {"final_eval": final, "history": progress["history"]}
    tok = model.tokenizer.to_dict() if model.tokenizer is not None else None
    path = save_checkpoint(out, model.cfg, model.state_dict(), tok, prov)
    tensors, groups = optimizer_tensors(opt)
    tensors["data_generator"] = gen.get_state()
    info = {k: progress[k] for k in ("step", "history", "seconds", "commands")} | {
        "param_groups": groups,
        "data": progress.get("data", ""),
    }
    save_train_state(path, tensors, info)
    return path


def write_snapshot(model: MiniGPT, out: Path, cfg: TrainConfig, progress: dict[str, Any]) -> Path:
    """The snapshot of the weights at ``progress["step"]`` (:mod:`model.storage.runs`); reads, never changes, them."""
    tok = model.tokenizer.to_dict() if model.tokenizer is not None else None
    dtype = cfg.snapshots.dtype if cfg.snapshots is not None else "float32"
    return save_snapshot(out, progress["step"], model.cfg, model.state_dict(), tok, _provenance(progress, cfg), dtype)
