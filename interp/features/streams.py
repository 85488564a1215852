"""Where an SAE's training activations come from: a tensor, or a model run on tokens, batch by batch.

Every batch is a pure function of ``(seed, step)``, so a resumed run sees exactly the batches the uninterrupted
one would have seen:

- :class:`_TensorSource` holds ``[n, d_in]`` activations (and, for a transcoder, ``[n, d_out]`` targets) and
  draws each batch's rows at random with a generator seeded by ``(seed, step)``;
- :class:`_ModelSource` runs the model on windows of ``tokens`` (``[n_seq, pos]``) and reads one hook point (an
  SAE) or two (a transcoder: the MLP's input and output). It fills a buffer covering ``buffer_steps`` batches
  from windows drawn by ``(seed, buffer index)``, shuffles it, and serves it in order: the model runs once per
  buffer, never on the whole token set at once.

Example:
    >>> import torch
    >>> source = _TensorSource(torch.arange(20.0).view(10, 2), batch_size=4, seed=0)
    >>> bool(torch.equal(source.batch(3)[0], source.batch(3)[0])), source.batch(3)[0].shape, source.batch(3)[1]
    (True, torch.Size([4, 2]), None)
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.common.checks import check_int, check_model
from model.network.minigpt import MiniGPT

Batch = tuple[Float[Tensor, "batch d_in"], Float[Tensor, "batch d_out"] | None]


def _generator(seed: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + index)


def _check_activations(x: object, what: str) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != 2:
        shape = f" of shape {tuple(x.shape)} and dtype {x.dtype}" if isinstance(x, Tensor) else ""
        raise TypeError(f"{what} must be a float tensor [n, d], got {type(x).__name__}{shape}")
    if len(x) < 2:
        raise ValueError(f"{what} has {len(x)} rows; an SAE needs many activations to learn from")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} holds NaN or inf; an SAE cannot be trained on them")
    return x.detach()


class _TensorSource:
    """Batches of rows of a ``[n, d_in]`` tensor (and of ``targets [n, d_out]`` for a transcoder)."""

    def __init__(self, x: Tensor, batch_size: int, seed: int, targets: Tensor | None = None) -> None:
        self.x = _check_activations(x, "activations")
        self.targets = None if targets is None else _check_activations(targets, "targets")
        if self.targets is not None and len(self.targets) != len(self.x):
            raise ValueError(
                f"activations have {len(self.x)} rows but targets {len(self.targets)}; pair them row by row"
            )
        self.batch_size, self.seed = batch_size, seed
        self.d_in = self.x.shape[1]
        self.d_out = self.d_in if self.targets is None else self.targets.shape[1]
        self.hook_name = self.hook_name_out = None
        self.model_name, self.context_size = "", None

    def batch(self, step: int) -> Batch:
        rows = torch.randint(len(self.x), (self.batch_size,), generator=_generator(self.seed, step))
        return self.x[rows], None if self.targets is None else self.targets[rows]

    def describe(self) -> str:
        return f"a tensor of {len(self.x)} activations [{len(self.x)}, {self.d_in}]"


class _ModelSource:
    """Activations at ``hook_name`` (and, for a transcoder, ``hook_name_out``) of ``model`` on windows of ``tokens``."""

    def __init__(
        self, model: MiniGPT, hook_name: str, tokens: Int[Tensor, "n_seq pos"], batch_size: int, seed: int,
        hook_name_out: str | None = None, buffer_steps: int = 32,
    ) -> None:  # fmt: skip
        self.model = check_model(model)
        for name in (hook_name, hook_name_out):
            if name is not None and (not isinstance(name, str) or name not in model.hook_dict):
                from model.network.hook_selection import unknown_hook_error

                raise unknown_hook_error(name, model.hook_names)
        self.tokens = model.check_tokens(tokens).cpu()
        self.hook_name, self.hook_name_out = hook_name, hook_name_out
        self.batch_size, self.seed, self.buffer_steps = batch_size, seed, check_int(buffer_steps, "buffer_steps", 1)
        shapes = model.hook_shapes(1, self.tokens.shape[1])
        self.d_in = shapes[hook_name][-1]
        self.d_out = self.d_in if hook_name_out is None else shapes[hook_name_out][-1]
        if len(shapes[hook_name]) != 3 or (hook_name_out is not None and len(shapes[hook_name_out]) != 3):
            raise ValueError(f"an SAE reads a [batch, pos, d] hook point; {hook_name} is {shapes[hook_name]}")
        self.model_name, self.context_size = "", model.cfg.n_ctx
        self._buffer: tuple[int, Batch] | None = None

    def _fill(self, index: int) -> Batch:
        per_window = self.tokens.shape[1]
        n_windows = -(-self.buffer_steps * self.batch_size // per_window)
        gen = _generator(self.seed, index)
        windows = self.tokens[torch.randint(len(self.tokens), (n_windows,), generator=gen)].to(self.model.device)
        names = [self.hook_name] + ([self.hook_name_out] if self.hook_name_out else [])
        with torch.no_grad():
            _, cache = self.model.run_with_cache(windows, names_filter=names, return_type=None)
        order = torch.randperm(n_windows * per_window, generator=gen)
        x = cache[self.hook_name].reshape(-1, self.d_in).cpu()[order].float()
        y = None if self.hook_name_out is None else cache[self.hook_name_out].reshape(-1, self.d_out).cpu()[order]
        return x, None if y is None else y.float()

    def batch(self, step: int) -> Batch:
        index, offset = divmod(step, self.buffer_steps)
        if self._buffer is None or self._buffer[0] != index:
            self._buffer = (index, self._fill(index))
        x, y = self._buffer[1]
        rows = slice(offset * self.batch_size, (offset + 1) * self.batch_size)
        return x[rows], None if y is None else y[rows]

    def describe(self) -> str:
        where = self.hook_name + (f" -> {self.hook_name_out}" if self.hook_name_out else "")
        return f"{where} of the model on windows of {tuple(self.tokens.shape)} tokens"


def _mlp_input_name(model: MiniGPT, layer: int) -> str:
    """The hook point holding exactly what layer ``layer``'s MLP reads: ``ln2.hook_normalized`` (pre-norm), else
    ``hook_resid_mid``. A transcoder reads there."""
    if model.blocks[layer].ln2 is not None and model.cfg.norm == "pre":
        return f"blocks.{layer}.ln2.hook_normalized"
    return f"blocks.{layer}.hook_resid_mid"


def _make_source(activations: Any, batch_size: int, seed: int, *, transcoder: bool, buffer_steps: int = 32):
    """The source an activations argument names (see :func:`interp.features.training.train_sae`)."""
    if isinstance(activations, Tensor):
        if transcoder:
            raise TypeError("a transcoder needs (inputs, targets) tensors or a (model, layer, tokens) source")
        return _TensorSource(activations, batch_size, seed)
    if not isinstance(activations, tuple | list) or len(activations) not in (2, 3):
        raise TypeError(
            "activations must be a tensor [n, d_in] or a (model, hook_name, tokens) source (a transcoder: "
            f"(inputs, targets) or (model, layer, tokens)), got {type(activations).__name__}"
        )
    if len(activations) == 2:
        if not transcoder:
            raise TypeError("(inputs, targets) pairs train a transcoder (train_transcoder); an SAE takes one tensor")
        return _TensorSource(activations[0], batch_size, seed, targets=activations[1])
    model, where, tokens = activations
    if transcoder:
        layer = check_int(where, "layer", minimum=0)
        model = check_model(model)
        if layer >= model.cfg.n_layers or model.blocks[layer].mlp is None:
            raise ValueError(f"layer {layer} has no MLP to transcode (the model has {model.cfg.n_layers} layers"
                             f"{', attention only' if model.cfg.attn_only else ''})")  # fmt: skip
        return _ModelSource(model, _mlp_input_name(model, layer), tokens, batch_size, seed,
                           hook_name_out=f"blocks.{layer}.hook_mlp_out", buffer_steps=buffer_steps)  # fmt: skip
    if not isinstance(where, str):
        raise TypeError(f"the hook name of a (model, hook_name, tokens) source must be a str, got {where!r}")
    return _ModelSource(model, where, tokens, batch_size, seed, buffer_steps=buffer_steps)
