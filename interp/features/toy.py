"""Ground truth by construction: activations made of known sparse features (toy models of superposition).

After Elhage et al. 2022, "Toy Models of Superposition": ``n_features`` features live in ``d`` dimensions
(``n_features > d``: in superposition), each along a fixed random unit direction. In every sample each feature
is active with probability ``p``, with a magnitude uniform in ``[0, 1]``; the activation is the sum of the
active features' directions times their magnitudes. An SAE trained on such activations should find the
directions again: :func:`planted_feature_recovery` scores each true direction by its best cosine with a
learned decoder direction, and the mean of those maxima is the recovery score.

Example:
    >>> toy = toy_features(n_features=16, d=8, p=0.1, n=1000, seed=0)
    >>> toy.activations.shape, toy.directions.shape, round(float(toy.active.float().mean()), 2)
    (torch.Size([1000, 8]), torch.Size([16, 8]), 0.1)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.common.checks import check_int, check_seed
from interp.features.sae import SAE


@dataclass(frozen=True)
class ToyFeatures:
    """Synthetic activations and the features they were made of."""

    activations: Float[Tensor, "n d"]
    directions: Float[Tensor, "n_features d"]  # unit rows: the planted feature directions
    magnitudes: Float[Tensor, "n n_features"]  # 0 where a feature is off
    active: Bool[Tensor, "n n_features"]

    def __post_init__(self) -> None:
        for name in ("activations", "directions", "magnitudes", "active"):
            value = getattr(self, name)
            if not isinstance(value, Tensor) or value.ndim != 2:
                raise TypeError(f"ToyFeatures.{name} must be a 2-D tensor, got {type(value).__name__}")
        n, (n_features, d) = len(self.activations), self.directions.shape
        expected = {"activations": (n, d), "magnitudes": (n, n_features), "active": (n, n_features)}
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"ToyFeatures.{name} has shape {tuple(getattr(self, name).shape)}, expected {shape}")

    @property
    def l0(self) -> float:
        """Mean number of active features per sample (``n_features * p`` in expectation)."""
        return float(self.active.sum(-1).float().mean())


def toy_features(n_features: int = 64, d: int = 32, p: float = 0.03, n: int = 100_000, seed: int = 0) -> ToyFeatures:
    """``n`` samples of ``n_features`` sparse features in ``d`` dimensions (see the module docstring).

    Example:
        >>> toy_features(n_features=4, d=8, p=1.5)
        Traceback (most recent call last):
        ...
        ValueError: p must be a probability in (0, 1], got 1.5
    """
    n_features, d, n = (check_int(v, name, minimum=1) for v, name in ((n_features, "n_features"), (d, "d"), (n, "n")))
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= 1:
        raise ValueError(f"p must be a probability in (0, 1], got {p!r}")
    gen = torch.Generator().manual_seed(check_seed(seed))
    directions = torch.randn(n_features, d, generator=gen)
    directions /= directions.norm(dim=-1, keepdim=True)
    active = torch.rand(n, n_features, generator=gen) < p
    magnitudes = torch.rand(n, n_features, generator=gen) * active
    return ToyFeatures(magnitudes @ directions, directions, magnitudes, active)


@torch.no_grad()
def planted_feature_recovery(sae: SAE, directions: Float[Tensor, "n_features d"]) -> pd.DataFrame:
    """For each planted direction, the learned decoder direction closest to it and their cosine.

    Columns: ``true_feature`` (index of the planted feature), ``feature`` (the SAE latent whose decoder row is
    closest), ``cosine`` (their cosine similarity). ``frame.cosine.mean()`` is the mean max cosine similarity.

    Example:
        >>> from interp.features.config import SAEConfig
        >>> toy = toy_features(n_features=6, d=4, n=10)
        >>> sae = SAE(SAEConfig("standard", d_in=4, d_sae=6, hook_name="toy"))
        >>> with torch.no_grad():
        ...     _ = sae.W_dec.copy_(toy.directions.flip(0))  # the planted directions, in reverse order
        >>> planted_feature_recovery(sae, toy.directions).feature.tolist()
        [5, 4, 3, 2, 1, 0]
    """
    if not isinstance(sae, SAE):
        raise TypeError(f"sae must be an SAE, got {type(sae).__name__}")
    if not isinstance(directions, Tensor) or directions.ndim != 2 or not directions.is_floating_point():
        raise TypeError("directions must be a float tensor [n_features, d] (e.g. toy_features(...).directions)")
    if directions.shape[1] != sae.cfg.d_out:
        raise ValueError(f"directions have {directions.shape[1]} dimensions, the SAE's decoder writes {sae.cfg.d_out}")
    true = directions / directions.norm(dim=-1, keepdim=True)
    learned = sae.W_dec.detach().float().cpu()
    learned = learned / learned.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cosines = true.float().cpu() @ learned.T  # n_features d_sae
    best, which = cosines.max(dim=1)
    return pd.DataFrame(
        {
            "true_feature": np.arange(len(true)),
            "feature": which.numpy().astype(np.int64),
            "cosine": best.double().numpy(),
        }
    )
