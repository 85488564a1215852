"""Input checks shared by the analyses: models, caches, indices, seeds and finite values.

Every public function of :mod:`interp` validates its arguments where they come in and raises a typed
error (TypeError, ValueError, IndexError, KeyError) whose message says what was wrong and what was
expected; these helpers keep those messages the same everywhere.

Non-finite values: ``MiniGPT.forward`` does not look for NaN or inf (it is the hot path), so a
broken weight, or a hook that writes NaN, propagates to the logits. The analyses that turn
activations into numbers (residual decomposition, DLA, logit lens, head scores, circuits, ablation,
sweeps) check what they computed and raise a ValueError naming the first non-finite parameter (in
``model.named_parameters()`` order) or, when every parameter is finite, the first non-finite
activation in forward order. The building blocks they use (``head_writes``, ``final_logits``,
``long_frame``, ``resolve_target``, :mod:`interp.intervene.engine`) propagate, like the forward.

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> check_index(1, model.cfg.n_layers, "layer")
    1
    >>> check_index(2, model.cfg.n_layers, "layer")
    Traceback (most recent call last):
    ...
    IndexError: layer 2 is out of range: the model has 2 layers (valid 0..1)
    >>> with torch.no_grad():
    ...     model.blocks[1].attn.W_Q[0, 0, 0] = float("nan")
    >>> require_finite(model(model.to_tokens("hi")), "the example", model)
    Traceback (most recent call last):
    ...
    ValueError: the example needs finite values, but parameter 'blocks.1.attn.W_Q' holds 1 NaN/inf of 4096 \
entries; the weights are broken: reload them, or find the training step that diverged
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping

import torch
from jaxtyping import Int, Shaped
from torch import Tensor

from model.network.cache import ActivationCache
from model.network.minigpt import MiniGPT


def check_model(model: object) -> MiniGPT:
    """``model`` itself, or a TypeError when it is not a :class:`~model.network.minigpt.MiniGPT`.

    Example:
        >>> check_model("gpt2")
        Traceback (most recent call last):
        ...
        TypeError: model must be a MiniGPT (e.g. MiniGPT.from_pretrained(...)), got str
    """
    if not isinstance(model, MiniGPT):
        raise TypeError(f"model must be a MiniGPT (e.g. MiniGPT.from_pretrained(...)), got {type(model).__name__}")
    return model


def check_cache(cache: object) -> ActivationCache:
    """``cache`` itself, or a TypeError when it is not an :class:`~model.network.cache.ActivationCache`.

    Example:
        >>> check_cache({"hook_embed": torch.zeros(1)})
        Traceback (most recent call last):
        ...
        TypeError: cache must be an ActivationCache from model.run_with_cache, got dict
    """
    if not isinstance(cache, ActivationCache):
        raise TypeError(f"cache must be an ActivationCache from model.run_with_cache, got {type(cache).__name__}")
    return cache


def prepare(
    model: object, tokens: object, cache: object = None, *, names_filter: object = None, what: str = "this analysis"
) -> tuple[MiniGPT, Int[Tensor, "batch pos"], ActivationCache]:
    """The boundary of every analysis that reads activations: ``(model, tokens, cache)`` checked once.

    Checks the model, turns ``tokens`` (ids or a text) into checked ``[batch, pos]`` ids, runs the model once
    when ``cache`` is None (recording ``names_filter``, default everything but ``hook_result``), and checks that
    the cache was recorded on these tokens. The tokens come back on the cache's device. Every analysis takes
    ``(model, tokens, cache=None, ...)`` in that order; a cache passed where the tokens go gets a message saying so.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> _, tokens, cache = prepare(model, "hi")
        >>> tokens.tolist(), "blocks.1.attn.hook_pattern" in cache
        ([[0, 22, 23]], True)
        >>> prepare(model, cache, tokens)
        Traceback (most recent call last):
        ...
        TypeError: this analysis takes (model, tokens, cache=None): the cache was passed where the tokens go; \
call it as f(model, tokens, cache)
    """
    model = check_model(model)
    if isinstance(tokens, ActivationCache):
        raise TypeError(
            f"{what} takes (model, tokens, cache=None): the cache was passed where the tokens go; "
            "call it as f(model, tokens, cache)"
        )
    tokens = model.check_tokens(tokens)
    if cache is None:
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, names_filter=names_filter)
    check_cache(cache)
    name = next((n for n in cache if n in model.hook_dict), None)
    if name is None:
        return model, tokens, cache
    expected = model.hook_shapes(*tokens.shape)[name]
    if tuple(cache[name].shape) != expected:
        raise ValueError(
            f"tokens have shape {tuple(tokens.shape)} but the cache was recorded on other tokens ({name} has shape "
            f"{tuple(cache[name].shape)}, expected {expected}); pass the tokens the cache was recorded on"
        )
    return model, tokens.to(cache[name].device), cache


def check_index(value: object, size: int, name: str) -> int:
    """``value`` as an index in ``0..size-1``: TypeError unless an int (bools refused), IndexError out of range.

    Example:
        >>> check_index(1.0, 4, "head")
        Traceback (most recent call last):
        ...
        TypeError: head must be an int, got 1.0 (float)
    """
    index = check_int(value, name)
    if not 0 <= index < size:
        raise IndexError(f"{name} {index} is out of range: the model has {size} {name}s (valid 0..{size - 1})")
    return index


def check_int(value: object, name: str, minimum: int | None = None) -> int:
    """``value`` as an int (bools refused) that is at least ``minimum``.

    Example:
        >>> check_int(0, "chunk", minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: chunk must be >= 1, got 0
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r} (bool)")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    return number


def check_seed(seed: object) -> int:
    """A random seed: an int in ``[0, 2**63)``.

    Example:
        >>> check_seed(7), check_seed(-1)
        Traceback (most recent call last):
        ...
        ValueError: seed must be >= 0, got -1
    """
    seed = check_int(seed, "seed", minimum=0)
    if seed >= 2**63:
        raise ValueError(f"seed must be < 2**63, got {seed}")
    return seed


def _first_nonfinite(named: Iterable[tuple[str, Tensor]]) -> tuple[str, int, int] | None:
    """``(name, non-finite count, size)`` of the first tensor holding NaN or inf."""
    for name, tensor in named:
        if tensor.is_floating_point() or tensor.is_complex():
            tensor = tensor.detach()
            if name.endswith("hook_attn_scores"):  # the causal mask is -inf by design
                bad = int((tensor.isnan() | (tensor == torch.inf)).sum())
            else:
                bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                return name, bad, tensor.numel()
    return None


def nonfinite_error(
    what: str,
    model: MiniGPT,
    cache: Mapping[str, Tensor] | None = None,
    tokens: Int[Tensor, "batch pos"] | None = None,
    fwd_hooks: Iterable = (),
) -> ValueError:
    """The ValueError for NaN/inf found by ``what``: names the first non-finite parameter, else activation.

    Without a ``cache``, ``tokens`` are run once (with ``fwd_hooks`` and whatever hooks the caller's
    context holds) to find the activation. The ``-inf`` of the causal mask in ``hook_attn_scores`` is
    not counted (only NaN and ``+inf`` there).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> tokens = model.to_tokens("hi")
        >>> _, cache = model.run_with_cache(tokens, fwd_hooks=[("blocks.1.hook_mlp_out", lambda a, h: a / 0)])
        >>> print(nonfinite_error("my analysis", model, cache))  # doctest: +ELLIPSIS
        my analysis needs finite values, but activation 'blocks.1.hook_mlp_out' holds 192 NaN/inf of 192 entries ...
    """
    found = _first_nonfinite(check_model(model).named_parameters())
    if found is not None:
        name, bad, size = found
        return ValueError(
            f"{what} needs finite values, but parameter '{name}' holds {bad} NaN/inf of {size} entries; "
            "the weights are broken: reload them, or find the training step that diverged"
        )
    if cache is None and tokens is not None:
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, fwd_hooks=fwd_hooks)
    found = None if cache is None else _first_nonfinite(cache.items())
    if found is not None:
        name, bad, size = found
        return ValueError(
            f"{what} needs finite values, but activation '{name}' holds {bad} NaN/inf of {size} entries (the "
            "first non-finite activation in forward order; the weights are finite, so a hook or the input "
            "put it there)"
        )
    checked = "parameter and activation" if cache is not None else "parameter"
    return ValueError(
        f"{what} produced NaN/inf although every {checked} is finite; check the metric or targets "
        "(a metric returning NaN, or values too large for the dtype)"
    )


def require_finite(
    values: Shaped[Tensor, "..."],
    what: str,
    model: MiniGPT,
    *,
    cache: Mapping[str, Tensor] | None = None,
    tokens: Int[Tensor, "batch pos"] | None = None,
    fwd_hooks: Iterable = (),
) -> None:
    """Raise :func:`nonfinite_error` when ``values`` (what ``what`` computed) hold NaN or inf.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> require_finite(torch.ones(3), "my analysis", MiniGPT(ModelConfig(), seed=0)) is None
        True
    """
    if not bool(torch.isfinite(values).all()):
        raise nonfinite_error(what, model, cache, tokens, fwd_hooks)
