"""The training loop: AdamW with warm-up and cosine decay, clipping, evaluation, checkpoints and a loss curve.

One call trains a model and leaves beside ``out`` (``out`` = ``dir/name``):
``name.safetensors`` + ``name.json`` (the checkpoint, rewritten every ``ckpt_every`` steps and at
the end), ``name.train.safetensors`` (what resuming needs, :mod:`model.training.resume`) and the loss
curve as ``name.loss.html`` (plotly) and ``name.loss.png``.

Example:
    >>> import tempfile
    >>> from model import PRESETS
    >>> cfg, tcfg = PRESETS["induction-2l"]
    >>> short = tcfg.replace(steps=30, warmup_steps=5, log_every=10, eval_every=10)
    >>> result = train(cfg, short, out=tempfile.mkdtemp() + "/m", progress=False)
    >>> result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    True
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm  # text bars everywhere (tqdm.auto wants ipywidgets in notebooks)

from model.network.config import ModelConfig
from model.network.minigpt import MiniGPT
from model.storage.files import atomic_write, check_output_path
from model.storage.runs import clear_snapshots
from model.training.data import TextData, builtin_corpus, load_text_file, repeated_segments_batch, text_batch
from model.training.evaluation import Evaluator
from model.training.presets import TrainConfig
from model.training.resume import save_run, start_run, write_snapshot

Report = Callable[[MiniGPT], dict[str, Any]]  # extra final evaluation, e.g. interp's induction report


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model, its checkpoint path and the loss history."""

    model: MiniGPT
    path: Path
    history: list[dict[str, Any]]  # {"step", "train_loss", "val_loss" (None between evaluations), "lr"}
    final: dict[str, Any]  # final evaluation (see model.training.evaluation)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up, then cosine to ``lr * min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps - 1, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def load_data(cfg: TrainConfig, model: MiniGPT) -> TextData | None:
    """The text for task "text" (None for the synthetic task)."""
    if cfg.task != "text":
        return None
    if model.tokenizer is None:
        raise ValueError("task 'text' needs the 64-symbol character vocabulary (d_vocab=64)")
    if cfg.text_file is not None:
        return load_text_file(cfg.text_file, unknown=cfg.unknown, tokenizer=model.tokenizer)
    return builtin_corpus(model.tokenizer)


def next_batch(cfg: TrainConfig, model_cfg: ModelConfig, data: TextData | None, gen: torch.Generator) -> Tensor:
    if data is not None:
        return text_batch(data.train, cfg.batch_size, model_cfg.n_ctx, gen)
    return repeated_segments_batch(cfg.batch_size, model_cfg.n_ctx, gen, d_vocab=model_cfg.d_vocab)


def optimizer_step(model: MiniGPT, opt: torch.optim.Optimizer, tokens: Tensor, lr: float, grad_clip: float) -> float:
    """One AdamW step at learning rate ``lr`` on the next-token loss of ``tokens``; returns the loss."""
    for group in opt.param_groups:
        group["lr"] = lr
    loss = model(tokens.to(model.device), return_type="loss")
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the training loss became {loss.item()}; lower the learning rate (--lr)")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return loss.item()


def train(
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: str | None = None,
    command: str | None = None,
    progress: bool = True,
    until_step: int | None = None,
    report: Report | None = None,
) -> TrainResult:
    """Train (or resume) a model and write its checkpoint, training state and loss curve beside ``out``.

    ``until_step`` stops early, as an interruption would (the schedule still spans ``cfg.steps``);
    ``resume=out`` later continues the same run. ``command`` (default: this process's argv) is
    recorded in the provenance. ``report(model)``, when given, adds its numbers to the final evaluation
    (``minigpt train`` passes :func:`interp.reports.induction.induction_report` for the induction task: the model
    knows nothing of the analyses that judge it).
    """
    out = Path(out)
    out = out.with_suffix("") if out.suffix == ".safetensors" else out
    model, opt, gen, state = start_run(model_cfg, cfg, resume)
    state["commands"] = [*state.get("commands", []), command or shlex.join(sys.argv)]
    data = load_data(cfg, model)
    check_output_path(out.with_name(out.name + ".safetensors"), create_parent=True, what="checkpoint")  # fail early
    evaluator = Evaluator(
        model_cfg, cfg.task, data, seed=cfg.seed, val_windows=cfg.val_windows, samples=cfg.samples, report=report
    )
    state["data"] = (
        data.describe() if data is not None else "repeated random segments (model.data.repeated_segments_batch)"
    )
    snapshots = set(cfg.snapshots.steps(cfg.steps)) - {cfg.steps} if cfg.snapshots is not None else set()
    if snapshots:  # no snapshot of an earlier run into this folder may pass for one of this run
        clear_snapshots(out, after=state["step"] if resume is not None else -1)
        if resume is None and 0 in snapshots:
            write_snapshot(model, out, cfg, state)  # the initial weights
    bar = tqdm(total=cfg.steps, initial=state["step"], disable=not progress, desc=out.name, dynamic_ncols=True)
    running: list[float] = []
    t0 = time.perf_counter() - state["seconds"]
    model.train()
    stop = cfg.steps if until_step is None else min(until_step, cfg.steps)
    for step in range(state["step"], stop):
        lr = lr_at(step, cfg)
        running.append(optimizer_step(model, opt, next_batch(cfg, model_cfg, data, gen), lr, cfg.grad_clip))
        done = step + 1
        val = None
        if done % cfg.eval_every == 0 or done == stop:
            val = evaluator.val_loss(model)
            if progress:  # one line per evaluation, above the bar (and in logs)
                bar.write(f"step {done}: train {sum(running) / len(running):.4f}  val {val:.4f}  lr {lr:.2e}")
        if done % cfg.log_every == 0 or val is not None:
            state["history"].append(
                {"step": done, "train_loss": sum(running) / len(running), "val_loss": val, "lr": lr}
            )
            bar.set_postfix(loss=f"{state['history'][-1]['train_loss']:.3f}", refresh=False)
            running = []
        bar.update(1)
        state["step"], state["seconds"] = done, time.perf_counter() - t0
        if done in snapshots:  # reads the weights only: the run is bit-identical with or without snapshots
            write_snapshot(model, out, cfg, state)
        if cfg.ckpt_every and done % cfg.ckpt_every == 0 and done != stop:
            save_run(model, opt, gen, out, cfg, state, {})
    bar.close()
    final = evaluator.final_report(model)
    path = save_run(model, opt, gen, out, cfg, state, final)
    save_loss_curve(state["history"], path, title=f"{out.name}: {state['data']}")
    model.eval()
    return TrainResult(model=model, path=path, history=state["history"], final=final)


def save_loss_curve(history: list[dict[str, Any]], weights: Path, title: str = "loss") -> tuple[Path, Path]:
    """``<name>.loss.html`` (plotly; loads plotly.js from its CDN to stay small) and ``<name>.loss.png``."""
    from model.training.lossplot import loss_figure, write_loss_png

    stem = weights.with_suffix("")
    html, png = stem.with_name(stem.name + ".loss.html"), stem.with_name(stem.name + ".loss.png")
    atomic_write(html, lambda tmp: loss_figure(history, title).write_html(tmp, include_plotlyjs="cdn"))
    atomic_write(png, lambda tmp: write_loss_png(history, tmp))  # never a half-written plot under the final name
    return html, png
