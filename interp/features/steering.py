"""Changing one feature and watching the next token: ablate it, steer along it, or clamp it.

With ``a = f_i(x)`` the feature's activation and ``d = W_dec[i]`` its decoder direction, the activation ``y`` at
the SAE's write point becomes:

- ``"ablate"``: ``y - a d`` (the feature removed; what the SAE does not explain stays, as with SAELens's
  error term);
- ``"steer"``: ``y + value d`` (``value`` in the activation's units: the feature's typical activation is a
  good scale, see :func:`interp.features.evaluate.feature_summary`);
- ``"clamp"``: ``y + (value - a) d`` (the feature held at ``value``).

The edit is a per-call hook (:func:`feature_hooks`), at every position or at the ones given, so it composes
with ``model.run_with_hooks`` and ``with model.hooks(...)`` and leaves nothing behind.

Example:
    >>> from model import MiniGPT
    >>> from interp.features.sae import SAE
    >>> model, sae = MiniGPT.from_pretrained("minigpt-text"), SAE.from_pretrained("minigpt-text-resid-post-1")
    >>> effect = feature_intervention(model, "the value of the", sae=sae, feature=0, mode="steer", value=8.0)
    >>> len(effect) == model.cfg.d_vocab, abs(float(effect.prob_intervened.sum()) - 1) < 1e-5
    (True, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor

from interp.common.checks import check_int, check_model, check_seed
from interp.features.common import _check_feature, _check_sae, _write_point
from interp.features.sae import SAE
from model.network.hooks import HookFn, HookPoint
from model.network.token_ids import token_labels

MODES = ("ablate", "steer", "clamp")


def _check_mode(mode: object, value: object) -> float:
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {list(MODES)}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise TypeError(f"value must be a finite number (the activation to steer by or clamp to), got {value!r}")
    return float(value)


def _positions(positions: Sequence[int] | None) -> list[int] | None:
    if positions is None:
        return None
    if isinstance(positions, int):
        positions = [positions]
    return [check_int(p, "position") for p in positions]


def feature_hooks(
    sae: SAE, feature: int, mode: str = "ablate", value: float = 0.0, positions: Sequence[int] | None = None
) -> list[tuple[str, HookFn]]:
    """The ``(hook name, fn)`` pairs that apply the edit (see the module docstring); new closures on every call.

    Example:
        >>> import torch
        >>> from model import MiniGPT
        >>> model, sae = MiniGPT.from_pretrained("minigpt-text"), SAE.from_pretrained("minigpt-text-resid-post-0")
        >>> hooks = feature_hooks(sae, 3, "steer", value=5.0, positions=[-1])
        >>> [name for name, _ in hooks]
        ['blocks.0.hook_resid_post']
        >>> bool(torch.equal(model.run_with_hooks("hi", hooks)[:, :-1], model("hi")[:, :-1]))
        True
    """
    if not isinstance(sae, SAE):
        raise TypeError(f"sae must be an SAE, got {type(sae).__name__}")
    return _hooks(sae, _check_feature(sae, feature), mode, _check_mode(mode, value), _positions(positions))


def _hooks(sae: SAE, feature: int, mode: str, value: float, positions: list[int] | None) -> list[tuple[str, HookFn]]:
    read, write = sae.cfg.hook_name, _write_point(sae)
    inputs: dict[str, Tensor] = {}

    def read_hook(x: Tensor, hook: HookPoint) -> None:
        inputs["x"] = x

    def write_hook(y: Tensor, hook: HookPoint) -> Tensor:
        x = inputs.pop("x") if read != write else y
        direction = sae.W_dec[feature].to(y)
        if mode == "steer":
            shift = torch.full(y.shape[:-1], value, dtype=y.dtype, device=y.device)
        else:
            act = sae._encode(x.to(sae.device))[..., feature].to(y)
            shift = -act if mode == "ablate" else value - act
        if positions is not None:
            keep = torch.zeros(y.shape[-2], dtype=torch.bool, device=y.device)
            keep[positions] = True
            shift = shift * keep
        return y + shift[..., None] * direction

    return ([(read, read_hook)] if read != write else []) + [(write, write_hook)]


@torch.no_grad()
def feature_intervention(
    model: object,
    tokens: Int[Tensor, "batch pos"],
    *,
    sae: SAE,
    feature: int,
    mode: str = "ablate",
    value: float = 0.0,
    pos: int = -1,
) -> pd.DataFrame:
    """The next-token distribution after ``pos`` with and without the edit, for every token of the vocabulary.

    Columns: batch, pos, target, target_str, prob_clean, prob_intervened, prob_delta (= intervened - clean);
    rows by batch, then prob_delta, largest rise first.
    """
    model = check_model(model)
    sae = _check_sae(model, sae)
    feature, value = _check_feature(sae, feature), _check_mode(mode, value)
    tokens = model.check_tokens(tokens)
    pos = check_int(pos, "pos")
    if not -tokens.shape[1] <= pos < tokens.shape[1]:
        raise IndexError(f"pos {pos} is out of range for {tokens.shape[1]} positions")
    clean = model(tokens)[:, pos].softmax(-1).double().cpu()
    edited = model.run_with_hooks(tokens, _hooks(sae, feature, mode, value, None))[:, pos].softmax(-1).double().cpu()
    n_batch, n_vocab = clean.shape
    frame = pd.DataFrame(
        {
            "batch": np.repeat(np.arange(n_batch), n_vocab),
            "pos": pos % tokens.shape[1],
            "target": np.tile(np.arange(n_vocab), n_batch),
            "target_str": token_labels(model.tokenizer, range(n_vocab)) * n_batch,
            "prob_clean": clean.flatten().numpy(),
            "prob_intervened": edited.flatten().numpy(),
            "prob_delta": (edited - clean).flatten().numpy(),
        }
    )
    return frame.sort_values(["batch", "prob_delta"], ascending=[True, False], ignore_index=True)


def generate_steered(
    model: object,
    prompt: str,
    *,
    sae: SAE,
    feature: int,
    value: float,
    mode: str = "steer",
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    seed: int = 0,
) -> str:
    """``model.generate(prompt, ...)`` with the edit applied at every position of every step (the prompt's and the
    continuation's); the same seed without the edit (``value=0`` with ``"steer"``) gives the plain continuation.

    Example:
        >>> from model import MiniGPT
        >>> model, sae = MiniGPT.from_pretrained("minigpt-text"), SAE.from_pretrained("minigpt-text-resid-post-1")
        >>> plain = model.generate("the ", max_new_tokens=8, temperature=0.8, seed=1)
        >>> generate_steered(model, "the ", sae=sae, feature=0, value=0.0, max_new_tokens=8, temperature=0.8,
        ...                  seed=1) == plain
        True
    """
    model = check_model(model)
    sae = _check_sae(model, sae)
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    hooks = _hooks(sae, _check_feature(sae, feature), mode, _check_mode(mode, value), None)
    with model.hooks(hooks):
        return model.generate(prompt, check_int(max_new_tokens, "max_new_tokens", minimum=1), temperature=temperature,
                              seed=check_seed(seed))  # fmt: skip
