"""How every parameter of a MiniGPT starts: weight matrices drawn from ``N(0, init_std^2)``, biases at zero; or, inside
:func:`uninitialized` (a model about to receive loaded weights), left unwritten, so that they cost neither time nor
resident memory before the loaded tensors replace them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import nn

_EMPTY: ContextVar[bool] = ContextVar("minigpt_uninitialized_parameters", default=False)


@contextmanager
def uninitialized() -> Iterator[None]:
    """Parameters made in the body are ``torch.empty``: for a model whose weights are loaded next (with
    ``load_state_dict(..., assign=True)``), never for one that is used as it is."""
    token = _EMPTY.set(True)
    try:
        yield
    finally:
        _EMPTY.reset(token)


def normal_weight(*shape: int, std: float) -> nn.Parameter:
    """A weight of ``shape`` drawn from ``N(0, std^2)`` (the global torch generator: ``MiniGPT(seed=...)`` seeds it)."""
    return nn.Parameter(torch.empty(*shape) if _EMPTY.get() else torch.randn(*shape) * std)


def zero_bias(*shape: int) -> nn.Parameter:
    """A bias of ``shape``, all zeros."""
    return nn.Parameter(torch.empty(*shape) if _EMPTY.get() else torch.zeros(*shape))
