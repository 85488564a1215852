"""The boundary of every feature analysis: the model, the tokens, the cache and the SAE checked once, and the
features computed from the cache.

Feature analyses follow the house signature ``(model, tokens, cache=None, *, sae, ...)``: the SAE is a keyword
(``top_activations(model, tokens, sae=sae, feature=3)``), so the cache keeps its place. The features are the
SAE's encoding of the activation at its read point, taken from the cache (or from one forward pass when no
cache is given).

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> from interp.features.config import SAEConfig
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> sae = SAE(SAEConfig("topk", d_in=64, d_sae=128, hook_name="blocks.0.hook_resid_post", k=4), seed=0)
    >>> _, tokens, cache, acts = _prepare_features(model, "hello", None, sae)
    >>> acts.shape, int((acts > 0).sum(-1).max())
    (torch.Size([1, 6, 128]), 4)
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.common.checks import check_index, check_model, prepare
from interp.features.sae import SAE
from model.network.cache import ActivationCache
from model.network.hook_selection import unknown_hook_error
from model.network.minigpt import MiniGPT

RESIDUAL_WRITES = ("hook_embed", "hook_pos_embed", "hook_resid_pre", "hook_resid_mid", "hook_resid_post",
                   "hook_attn_out", "hook_mlp_out")  # fmt: skip


def _check_sae(model: MiniGPT, sae: object) -> SAE:
    """``sae`` itself when it is an SAE whose hook points exist in ``model`` with the sizes it reads and writes.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> from interp.features.config import SAEConfig
        >>> _check_sae(MiniGPT(ModelConfig()), SAE(SAEConfig("standard", d_in=32, d_sae=8, hook_name="hook_embed")))
        Traceback (most recent call last):
        ...
        ValueError: the SAE reads 32 numbers at 'hook_embed', but the model's activation there has 64 (shape \
(1, 1, 64)); use an SAE trained on this model
    """
    if not isinstance(sae, SAE):
        extra = "; the SAE is a keyword: f(model, tokens, sae=sae)" if isinstance(sae, ActivationCache) else ""
        raise TypeError(f"sae must be an SAE (e.g. SAE.from_pretrained(name)), got {type(sae).__name__}{extra}")
    shapes = model.hook_shapes(1, 1)
    points = [(sae.cfg.hook_name, sae.cfg.d_in, "reads")]
    points += [(sae.cfg.hook_name_out, sae.cfg.d_out, "writes")] if sae.cfg.is_transcoder else []
    for name, size, verb in points:
        if name not in shapes:
            raise unknown_hook_error(name, model.hook_names)
        if len(shapes[name]) != 3 or shapes[name][-1] != size:
            raise ValueError(
                f"the SAE {verb} {size} numbers at {name!r}, but the model's activation there has {shapes[name][-1]} "
                f"(shape {shapes[name]}); use an SAE trained on this model"
            )
    if sae.device != model.device:
        raise ValueError(f"the SAE is on {sae.device} but the model on {model.device}; move one: sae.to(model.device)")
    return sae


def _write_point(sae: SAE) -> str:
    """Where the SAE's reconstruction goes: its read point, or a transcoder's ``hook_name_out``."""
    return sae.cfg.hook_name_out or sae.cfg.hook_name


def _check_feature(sae: SAE, feature: object) -> int:
    """A feature index of ``sae``: an int in ``0 .. d_sae - 1``.

    Example:
        >>> from interp.features.config import SAEConfig
        >>> _check_feature(SAE(SAEConfig("standard", d_in=4, d_sae=8, hook_name="x")), 8)
        Traceback (most recent call last):
        ...
        IndexError: feature 8 is out of range: the model has 8 features (valid 0..7)
    """
    return check_index(feature, sae.cfg.d_sae, "feature")


def _prepare_features(
    model: object,
    tokens: object,
    cache: object,
    sae: object,
    *,
    extra: tuple[str, ...] = (),
    what: str = "this analysis",
) -> tuple[MiniGPT, Int[Tensor, "batch pos"], ActivationCache, Float[Tensor, "batch pos d_sae"]]:
    """``(model, tokens, cache, features)`` checked once; the cache records the SAE's points and ``extra``."""
    model = check_model(model)
    sae = _check_sae(model, sae)
    names = list(dict.fromkeys([sae.cfg.hook_name, _write_point(sae), *extra]))
    model, tokens, cache = prepare(model, tokens, cache, names_filter=names, what=what)
    for name in names:
        if name not in cache:
            raise KeyError(f"{name!r} is not in this cache; {what} needs {names}: record them (names_filter) or "
                           "pass cache=None")  # fmt: skip
    with torch.no_grad():
        features = sae._encode(cache[sae.cfg.hook_name].to(sae.device))
    return model, tokens, cache, features
