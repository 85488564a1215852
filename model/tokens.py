"""Token ids coming in: any list, array or tensor of ids checked and turned into ``[batch, pos]`` integers.

``MiniGPT.check_tokens`` (and so every entry point that takes tokens) calls :func:`check_token_ids`; the
errors name what was wrong and what to do.

Example:
    >>> check_token_ids([1, 5, 9], d_vocab=64, n_ctx=32)
    tensor([[1, 5, 9]])
    >>> check_token_ids([[1, 70]], d_vocab=64, n_ctx=32)
    Traceback (most recent call last):
    ...
    ValueError: token ids [70] are outside the vocabulary [0, 64)
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor


def check_token_ids(tokens: Any, d_vocab: int, n_ctx: int) -> Int[Tensor, "batch pos"]:
    """``tokens`` as an integer ``[batch, pos]`` tensor (``[pos]`` gains a batch axis); ValueError if it is empty,
    longer than ``n_ctx`` or holds ids outside ``[0, d_vocab)``. Device and dtype are left to the caller."""
    tokens = as_id_tensor(tokens)
    if tokens.numel() == 0:
        raise ValueError(f"tokens are empty (shape {tuple(tokens.shape)}); give at least one token")
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2:
        raise ValueError(f"tokens must have shape [batch, pos] or [pos], got {tuple(tokens.shape)}")
    batch, pos = tokens.shape
    if batch == 0 or pos == 0:
        raise ValueError(f"tokens are empty (shape {tuple(tokens.shape)}); give at least one token")
    if pos > n_ctx:
        raise ValueError(f"{pos} tokens is longer than the context n_ctx={n_ctx}; crop them, e.g. tokens[:, -{n_ctx}:]")
    lo, hi = torch.aminmax(tokens)
    if lo < 0 or hi >= d_vocab:
        bad = tokens[(tokens < 0) | (tokens >= d_vocab)].unique().tolist()[:5]
        raise ValueError(f"token ids {bad} are outside the vocabulary [0, {d_vocab})")
    return tokens


def as_id_tensor(tokens: Any) -> Tensor:
    """``tokens`` as an integer tensor (not yet shape-checked); ValueError naming what was wrong."""
    if not isinstance(tokens, Tensor):
        try:
            tokens = torch.as_tensor(tokens)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(
                f"tokens must be a tensor or list of integer ids, got {type(tokens).__name__}: {err}"
            ) from None
    bad_dtype = tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool
    if bad_dtype and tokens.numel():  # an empty list becomes a float tensor: the caller says "empty"
        raise ValueError(
            f"tokens must be integer ids, got dtype {tokens.dtype}; use model.to_tokens(text) or tokens.long()"
        )
    if tokens.device.type == "meta":
        raise ValueError("tokens are on the meta device and hold no values; make them on a real device (e.g. cpu)")
    return tokens
