"""How every parameter of a MiniGPT starts: weight matrices drawn from ``N(0, init_std^2)``, biases at zero."""

from __future__ import annotations

import torch
from torch import nn


def normal_weight(*shape: int, std: float) -> nn.Parameter:
    """A weight of ``shape`` drawn from ``N(0, std^2)`` (the global torch generator: ``MiniGPT(seed=...)`` seeds it)."""
    return nn.Parameter(torch.randn(*shape) * std)


def zero_bias(*shape: int) -> nn.Parameter:
    """A bias of ``shape``, all zeros."""
    return nn.Parameter(torch.zeros(*shape))
