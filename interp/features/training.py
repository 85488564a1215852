"""Training SAEs and transcoders (with or without a skip path): ReLU + L1 or TopK, unit-norm decoder rows, a
dead-feature resampler, AuxK, resume.

The loop reuses the training room of the model: the learning-rate schedule (warm-up, cosine decay,
``model.training.loop.lr_at``), the progress bar, the resume state file and its optimizer flattening
(``model.training.resume``), atomic writes and the loss-curve files (``model.training.lossplot``).

Each step: a batch of activations (:mod:`interp.features.streams`, a pure function of ``(seed, step)``), scaled
so that their mean squared norm is ``d_in`` (outputs likewise, to ``d_out``); loss = squared reconstruction
error summed over dimensions and averaged over the batch (a skip transcoder's reconstruction includes its skip
path ``x @ W_skip.T``), plus ``l1_coefficient`` times the features' L1 norm for ReLU (ramped in over the
warm-up), plus, with ``aux_k`` (TopK), ``aux_coefficient`` times AuxK's loss (Gao et al. 2024: the ``aux_k``
largest features silent for ``dead_steps`` steps reconstruct the residual error); one Adam step; the decoder rows
put back on the unit sphere (and the gradient's radial part removed before the step). A feature that has not
fired for ``resample_every`` steps is resampled (until 80% of the run; :mod:`interp.features.dead`). At the end
the input scaling is folded into the biases (and ``W_skip``), so the SAE reads raw activations and its features
are in the units of the output, with unit decoder rows.

``out`` (a folder) receives the SAE (``cfg.json`` + ``sae_weights.safetensors``, every ``ckpt_every`` steps and
at the end), ``sae_weights.train.safetensors`` (what resuming needs) and ``loss.html`` / ``loss.png``;
``resume=True`` continues the run saved there, bit for bit as if it had not stopped.

Example:
    >>> from interp.features.toy import planted_feature_recovery, toy_features
    >>> toy = toy_features(n_features=8, d=4, p=0.1, n=4000, seed=0)
    >>> sae = train_sae(toy.activations, 16, architecture="topk", k=1, steps=120, batch_size=256, seed=0,
    ...                 progress=False)
    >>> sae.cfg.d_sae, bool(planted_feature_recovery(sae, toy.directions).cosine.mean() > 0.8)
    (16, True)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from interp.common.checks import check_int, check_seed
from interp.features.config import WEIGHTS_FILE, SAEConfig, _architecture_for
from interp.features.dead import _auxk_loss, _resample_features
from interp.features.sae import SAE
from interp.features.streams import _make_source
from model.storage.files import atomic_write
from model.training.loop import lr_at
from model.training.lossplot import loss_figure, write_loss_png
from model.training.resume import load_train_state, optimizer_tensors, restore_optimizer, save_train_state

PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")


@dataclass(frozen=True)
class SAETrainConfig:
    """Every choice of an SAE training run (frozen, validated; recorded in the SAE's provenance)."""

    d_sae: int
    architecture: str = "topk"  # "topk" | "relu"
    k: int | None = None  # TopK: features per token
    l1_coefficient: float | None = None  # ReLU: weight of the L1 penalty (default 1.0)
    steps: int = 2000
    batch_size: int = 1024
    lr: float = 1e-3
    warmup_steps: int = 100  # linear warm-up of the learning rate (and of the L1 coefficient)
    min_lr_ratio: float = 0.1  # cosine decay to lr * min_lr_ratio
    resample_every: int = 250  # a feature silent this many steps is resampled (0: never)
    skip: bool = False  # transcoders: an affine skip path W_skip (a skip transcoder)
    aux_k: int = 0  # TopK: AuxK, the dead features kept to reconstruct the residual error (0: no AuxK)
    aux_coefficient: float = 1 / 32  # AuxK: weight of its loss
    dead_steps: int = 50  # AuxK: a feature silent this many steps counts as dead
    seed: int = 0
    log_every: int = 50
    ckpt_every: int = 0  # save every this many steps (0: only at the end)
    buffer_steps: int = 32  # model sources: batches per buffer of activations
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("d_sae", "steps", "batch_size", "log_every", "buffer_steps", "dead_steps"):
            check_int(getattr(self, name), name, minimum=1)
        for name in ("warmup_steps", "resample_every", "ckpt_every", "aux_k"):
            check_int(getattr(self, name), name, minimum=0)
        check_seed(self.seed)
        if self.architecture not in ("topk", "relu"):
            raise ValueError(f"architecture {self.architecture!r} is not one of ['topk', 'relu']")
        if not isinstance(self.skip, bool):
            raise TypeError(f"skip must be True or False, got {self.skip!r}")
        if self.aux_k and self.architecture != "topk":
            raise ValueError("aux_k (AuxK) is for architecture='topk'; ReLU features are not chosen by rank")
        if self.aux_k > self.d_sae:
            raise ValueError(f"aux_k={self.aux_k} is more than d_sae={self.d_sae} features")
        if self.architecture == "topk":
            if self.k is None:
                raise ValueError("architecture='topk' needs k, the number of features kept per token (e.g. k=8)")
            if check_int(self.k, "k", minimum=1) > self.d_sae:
                raise ValueError(f"k={self.k} is more than d_sae={self.d_sae} features")
            if self.l1_coefficient is not None:
                raise ValueError("l1_coefficient is for architecture='relu'; TopK sets sparsity with k")
        else:
            if self.k is not None:
                raise ValueError("k is for architecture='topk'; ReLU sets sparsity with l1_coefficient")
            if self.l1_coefficient is None:
                object.__setattr__(self, "l1_coefficient", 1.0)
        for name in ("l1_coefficient", "aux_coefficient", "lr"):
            value = getattr(self, name)
            if name != "l1_coefficient" or value is not None:
                _check_number(name, value, positive=name == "lr")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")


def _check_number(name: str, value: object, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (value > 0 if positive else value >= 0):
        raise ValueError(f"{name} must be a {'positive number' if positive else 'number >= 0'}, got {value!r}")


def train_sae(activations: Any, d_sae: int, architecture: str = "topk", **options: Any) -> SAE:
    """Train an SAE on ``activations``: a tensor ``[n, d_in]``, or a ``(model, hook_name, tokens)`` source that
    streams them (``tokens [n_seq, pos]``; the model runs on random windows of them, buffer by buffer).

    ``options``: the fields of :class:`SAETrainConfig` (``k``, ``l1_coefficient``, ``steps``, ``seed``,
    ``batch_size``, ``lr``, ...) and ``hook_name`` (recorded in the config; a model source's own by default),
    ``model_name``, ``dataset_path``, ``out`` (a folder to save into), ``resume``, ``progress``, ``command``,
    ``until_step`` (stop early, as an interruption would).
    """
    return _train(activations, d_sae, architecture, transcoder=False, **options)


def train_transcoder(source: Any, d_sae: int, architecture: str = "topk", **options: Any) -> SAE:
    """Train a transcoder: from an MLP's input to its output. ``source`` is ``(model, layer, tokens)`` (reading
    ``blocks.{layer}.ln2.hook_normalized`` and writing ``blocks.{layer}.hook_mlp_out``) or ``(inputs, targets)``
    tensors ``[n, d_in]`` and ``[n, d_out]`` (then give ``hook_name`` and ``hook_name_out``). Options as
    :func:`train_sae`.

    Example:
        >>> import torch
        >>> x = torch.randn(2000, 8)
        >>> tc = train_transcoder((x, torch.relu(x) @ torch.randn(8, 6)), 32, k=4, steps=50, progress=False,
        ...                       hook_name="in", hook_name_out="out")
        >>> tc.cfg.architecture, tc.W_dec.shape
        ('topk_transcoder', torch.Size([32, 6]))
    """
    return _train(source, d_sae, architecture, transcoder=True, **options)


_RUN_OPTIONS = ("hook_name", "hook_name_out", "model_name", "dataset_path", "out", "resume", "progress", "command",
                "until_step")  # fmt: skip


def _train(activations: Any, d_sae: int, architecture: str, *, transcoder: bool, **options: Any) -> SAE:
    run = {name: options.pop(name) for name in _RUN_OPTIONS if name in options}
    fields = {f.name for f in dataclasses.fields(SAETrainConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; known: {sorted(fields - {'d_sae', 'architecture'})} "
                        f"and {list(_RUN_OPTIONS)}")  # fmt: skip
    cfg = SAETrainConfig(d_sae=d_sae, architecture=architecture, **options)
    if cfg.skip and not transcoder:
        raise ValueError("skip=True is for transcoders (train_transcoder): an SAE's skip path would be its input")
    source = _make_source(activations, cfg.batch_size, cfg.seed, transcoder=transcoder, buffer_steps=cfg.buffer_steps)
    hook_name = run.get("hook_name") or source.hook_name or "activations"
    hook_name_out = run.get("hook_name_out") or source.hook_name_out or (f"{hook_name}.out" if transcoder else None)
    sae_cfg = SAEConfig(
        _architecture_for(cfg.architecture, transcoder, cfg.skip), d_in=source.d_in, d_sae=cfg.d_sae,
        hook_name=hook_name, k=cfg.k, d_out=source.d_out if transcoder else None, hook_name_out=hook_name_out,
        model_name=run.get("model_name") or source.model_name, context_size=source.context_size,
        dataset_path=run.get("dataset_path", ""),
    )  # fmt: skip
    out = None if run.get("out") is None else Path(run["out"])
    if run.get("resume") and out is None:
        raise ValueError("resume=True needs out, the folder the run was saved in")
    until = run.get("until_step")
    until = cfg.steps if until is None else min(check_int(until, "until_step", minimum=1), cfg.steps)
    command = run.get("command") or shlex.join(sys.argv)
    return _Run(cfg, sae_cfg, source, out, bool(run.get("resume")), command).loop(until, run.get("progress", True))


class _Run:
    """One training run's state: the SAE in normalised units, the optimizer, the firing counters, the history."""

    def __init__(self, cfg: SAETrainConfig, sae_cfg: SAEConfig, source: Any, out: Path | None, resume: bool,
                 command: str) -> None:  # fmt: skip
        self.cfg, self.sae_cfg, self.source, self.out = cfg, sae_cfg, source, out
        self.sae = SAE(sae_cfg, seed=cfg.seed).to(cfg.device).train()
        self.params = PARAMS + (("W_skip",) if sae_cfg.has_skip else ())
        self.opt = torch.optim.Adam(self.sae.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
        self.silent = torch.zeros(cfg.d_sae, dtype=torch.long, device=cfg.device)  # steps since each last fired
        self.state: dict[str, Any] = {"step": 0, "history": [], "seconds": 0.0, "commands": []}
        if resume:
            self._restore()
        else:
            self.state["scales"] = self._scales()
            self._init_biases()
        self.state["commands"] = [*self.state["commands"], command]

    def _scales(self) -> dict[str, float]:
        """Factors bringing the mean squared norm of the inputs to d_in (outputs to d_out), from 8 batches."""
        xs, ys = zip(*(self.source.batch(-1 - i) for i in range(8)), strict=True)
        x = torch.cat(xs)
        y = x if ys[0] is None else torch.cat(ys)
        scale = lambda t: float((t.shape[1] / t.pow(2).sum(-1).mean()).sqrt())  # noqa: E731
        return {"in": scale(x), "out": scale(y)}

    def _init_biases(self) -> None:
        with torch.no_grad():  # b_dec starts at the (scaled) mean output, as the geometric-median init approximates
            xs, ys = zip(*(self.source.batch(-1 - i) for i in range(8)), strict=True)
            y = torch.cat(xs) if ys[0] is None else torch.cat(ys)
            self.sae.b_dec.copy_((y.mean(0) * self.state["scales"]["out"]).to(self.sae.b_dec))

    def _restore(self) -> None:
        tensors, info = load_train_state(self.out / WEIGHTS_FILE)
        if info.get("config") != dataclasses.asdict(self.cfg) or info.get("sae_config") != self.sae_cfg.to_dict():
            raise ValueError(f"{self.out} was trained with another configuration ({info.get('config')}); resume it "
                             "with the same options")  # fmt: skip
        if info["step"] >= self.cfg.steps:
            raise ValueError(f"{self.out} is already at step {info['step']} >= steps={self.cfg.steps}")
        with torch.no_grad():
            for name in self.params:
                getattr(self.sae, name).copy_(tensors[f"param.{name}"])
        restore_optimizer(self.opt, tensors, info["param_groups"])
        self.silent = tensors["silent"].to(self.cfg.device)
        self.state = {k: info[k] for k in ("step", "history", "seconds", "commands", "scales")}

    def step(self, step: int) -> dict[str, float]:
        cfg, sae, scales = self.cfg, self.sae, self.state["scales"]
        x, y = self.source.batch(step)
        x = x.to(cfg.device) * scales["in"]
        y = x if y is None else y.to(cfg.device) * scales["out"]
        for group in self.opt.param_groups:
            group["lr"] = lr_at(step, cfg)  # warm-up and cosine decay, as the model's training uses
        features = sae._encode(x)
        error = sae._reconstruct(x, features) - y
        recon = error.pow(2).sum(-1).mean()
        loss = recon
        if cfg.architecture == "relu":
            ramp = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
            loss = recon + cfg.l1_coefficient * ramp * features.sum(-1).mean()
        if cfg.aux_k:
            loss = loss + cfg.aux_coefficient * _auxk_loss(sae, x, error, self.silent >= cfg.dead_steps, cfg.aux_k)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the SAE loss became {loss.item()} at step {step}; lower lr")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            rows = sae.W_dec
            rows.grad -= (rows.grad * rows).sum(-1, keepdim=True) * rows  # no radial part: the norm stays 1
            self.opt.step()
            rows /= rows.norm(dim=-1, keepdim=True)
            fired = (features > 0).any(0)
            self.silent += 1
            self.silent[fired] = 0
            if cfg.resample_every and (step + 1) % cfg.resample_every == 0 and step < 0.8 * cfg.steps:
                self._resample(x, error)
        variance = (y - y.mean(0)).pow(2).sum(-1).mean()
        l0 = float((features > 0).sum(-1).float().mean())
        return {"loss": loss.item(), "fvu": float(recon.detach() / variance), "l0": l0}

    def _resample(self, x: Tensor, error: Tensor) -> None:
        dead = self.silent >= self.cfg.resample_every
        gen = torch.Generator().manual_seed(self.cfg.seed + int(self.state["step"]))
        gain = 0.2 if self.cfg.architecture == "relu" else 1.0
        n = _resample_features(self.sae, self.opt, dead, x, error, gain=gain, generator=gen)
        if n:
            self.silent[dead] = 0
            self.state.setdefault("resampled", []).append({"step": self.state["step"] + 1, "features": n})

    def loop(self, until: int, progress: bool) -> SAE:
        cfg, state = self.cfg, self.state
        bar = tqdm(total=cfg.steps, initial=state["step"], disable=not progress, desc="SAE", dynamic_ncols=True)
        running: list[dict[str, float]] = []
        t0 = time.perf_counter() - state["seconds"]
        for step in range(state["step"], until):
            running.append(self.step(step))
            done = step + 1
            state["step"], state["seconds"] = done, time.perf_counter() - t0
            if done % cfg.log_every == 0 or done == until:
                mean = {k: sum(r[k] for r in running) / len(running) for k in running[0]}
                state["history"].append({"step": done, "train_loss": mean["loss"], "val_loss": None,
                                         "lr": lr_at(step, cfg), "fvu": mean["fvu"], "l0": mean["l0"],
                                         "dead": int((self.silent >= max(cfg.resample_every, 1)).sum())})  # fmt: skip
                bar.set_postfix(fvu=f"{mean['fvu']:.3f}", l0=f"{mean['l0']:.1f}", refresh=False)
                running = []
            bar.update(1)
            if self.out is not None and cfg.ckpt_every and done % cfg.ckpt_every == 0 and done != until:
                self.save()
        bar.close()
        sae = self.folded()
        if self.out is not None:
            self.save(sae)
        return sae

    def folded(self) -> SAE:
        """The SAE for raw activations: ``b_enc / c_out``, ``b_dec / c_out``, ``W_enc * c_in / c_out`` (decoder rows
        stay unit: the features come out in output units)."""
        c_in, c_out = self.state["scales"]["in"], self.state["scales"]["out"]
        prov = {"command": self.state["commands"][-1], "commands": self.state["commands"], "steps": self.state["step"],
                "seconds": round(self.state["seconds"], 1), "date": _dt.datetime.now(_dt.timezone.utc).isoformat(
                timespec="seconds"), "train_config": dataclasses.asdict(self.cfg), "data": self.source.describe(),
                "scales": self.state["scales"], "resampled": self.state.get("resampled", []),
                "torch": torch.__version__, "history": self.state["history"]}  # fmt: skip
        sae = SAE(self.sae_cfg, provenance=prov)
        with torch.no_grad():
            sae.W_enc.copy_(self.sae.W_enc * (c_in / c_out))
            sae.b_enc.copy_(self.sae.b_enc / c_out)
            sae.W_dec.copy_(self.sae.W_dec)
            sae.b_dec.copy_(self.sae.b_dec / c_out)
            if sae.W_skip is not None:
                sae.W_skip.copy_(self.sae.W_skip * (c_in / c_out))
        return sae.eval()

    def save(self, sae: SAE | None = None) -> None:
        """The SAE, then the training state beside it, then the loss curve."""
        out = self.out
        (sae or self.folded()).save(out)
        tensors, groups = optimizer_tensors(self.opt)
        tensors |= {f"param.{n}": getattr(self.sae, n).detach() for n in self.params} | {"silent": self.silent}
        info = {k: self.state[k] for k in ("step", "history", "seconds", "commands", "scales")}
        info |= {"param_groups": groups, "config": dataclasses.asdict(self.cfg), "sae_config": self.sae_cfg.to_dict()}
        save_train_state(out / WEIGHTS_FILE, tensors, info)
        history = self.state["history"]
        if history:
            figure = loss_figure(history, f"{self.sae_cfg.architecture} on {self.source.describe()}")
            figure.update_layout(yaxis_title="loss (normalised squared error + L1)")
            atomic_write(out / "loss.html", lambda tmp: figure.write_html(tmp, include_plotlyjs="cdn"))
            atomic_write(out / "loss.png", lambda tmp: write_loss_png(history, tmp))
