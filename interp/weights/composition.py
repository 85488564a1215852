"""Composition scores: how much one head's output lands in a later head's queries, keys or values.

Elhage et al. (2021): with ``OV = W_V W_O`` of the source head and ``QK = W_Q W_K^T`` / ``OV'`` of the
destination head (``d_model x d_model``, LayerNorm folded as in :mod:`interp.weights.qk_ov`), the score is a
ratio of Frobenius norms in [0, 1], compared against random factors of the same shapes.

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> df = composition_scores(MiniGPT(ModelConfig(), seed=0))
    >>> df.shape, sorted(set(df.composition))
    ((48, 8), ['K', 'Q', 'V'])
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import Tensor

from interp.common.checks import check_model, check_seed
from interp.weights.qk_ov import _ov, _qk
from model.network.factored_matrix import FactoredMatrix
from model.network.factored_matrix import composition_scores as factored_composition_scores
from model.network.minigpt import MiniGPT


def composition_score(first: FactoredMatrix, second: FactoredMatrix) -> Tensor:
    """Elhage et al. (2021): ``||W_1 W_2||_F / (||W_1||_F ||W_2||_F)`` in [0, 1] (broadcast over leading axes).

    Example:
        >>> eye = FactoredMatrix(torch.eye(4), torch.eye(4))
        >>> composition_score(eye, eye).item()  # ||I|| / ||I||^2 = 1 / sqrt(4)
        0.5
    """
    if not isinstance(first, FactoredMatrix) or not isinstance(second, FactoredMatrix):
        raise TypeError(
            f"composition_score takes two FactoredMatrix (e.g. ov_matrix, qk_matrix), got {type(first).__name__} "
            f"and {type(second).__name__}"
        )
    return factored_composition_scores(first, second, broadcast_dims=False)


def _pairs(src: FactoredMatrix, dst: FactoredMatrix, composition: str) -> Tensor:
    """Scores ``[src_head, dst_head]`` of one composition (Q, K or V), all heads of two layers at once."""
    src = FactoredMatrix(src.A[:, None], src.B[:, None])
    dst = FactoredMatrix(dst.A[None], dst.B[None])
    return composition_score(src, dst.T if composition == "K" else dst)


def _random_factors(n: int, rows: int, inner: int, cols: int, gen: torch.Generator) -> FactoredMatrix:
    return FactoredMatrix(torch.randn(n, rows, inner, generator=gen), torch.randn(n, inner, cols, generator=gen))


@torch.no_grad()
def composition_scores(model: MiniGPT, seed: int = 0, n_draws: int = 16) -> pd.DataFrame:
    """Q-, K- and V-composition of every head with every head of a later layer, against a random baseline.

    With ``OV = W_V W_O`` of the source head and ``QK = W_Q W_K^T`` / ``OV'`` of the destination head
    (``d_model x d_model``, LayerNorm folded as in the module docstring)::

        Q: ||OV QK||   / (||OV|| ||QK||)      the source writes into the destination's queries
        K: ||OV QK^T|| / (||OV|| ||QK||)      ... into its keys (induction heads read a previous-token head here)
        V: ||OV OV'||  / (||OV|| ||OV'||)     ... into its values

    (Frobenius norms, Elhage et al. 2021). ``baseline`` is the same score for Gaussian random factors
    of the same shapes (``W_V``, ``W_O``, ``W_Q``, ``W_K^T``), averaged over ``n_draws`` draws seeded
    by ``seed``; all heads share a shape, so the baseline depends only on ``composition``.

    Columns (ordered by composition Q, K, V, then src and dst layer and head):
        composition (str, "Q" | "K" | "V"); src_layer, src_head, dst_layer, dst_head (int); score (float in
        [0, 1]); baseline (float); ratio (float, score / baseline).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> df = composition_scores(MiniGPT(ModelConfig(), seed=0))
        >>> df.shape, sorted(set(df.composition))
        ((48, 8), ['K', 'Q', 'V'])
    """
    if isinstance(n_draws, bool) or not isinstance(n_draws, int) or n_draws < 1:
        raise ValueError(f"n_draws must be a positive int, got {n_draws!r}")
    cfg = check_model(model).cfg
    gen = torch.Generator().manual_seed(check_seed(seed))
    rand_ov = _random_factors(n_draws, cfg.d_model, cfg.d_head, cfg.d_model, gen)
    rand_qk = _random_factors(n_draws, cfg.d_model, cfg.d_head, cfg.d_model, gen)
    rand_ov2 = _random_factors(n_draws, cfg.d_model, cfg.d_head, cfg.d_model, gen)
    baseline = {
        "Q": composition_score(rand_ov, rand_qk).mean().item(),
        "K": composition_score(rand_ov, rand_qk.T).mean().item(),
        "V": composition_score(rand_ov, rand_ov2).mean().item(),
    }
    rows = []
    for comp in ("Q", "K", "V"):
        for src_layer in range(cfg.n_layers):
            src = _ov(model, src_layer, None)
            for dst_layer in range(src_layer + 1, cfg.n_layers):
                dst = _ov(model, dst_layer, None) if comp == "V" else _qk(model, dst_layer, None)
                scores = _pairs(src, dst, comp)
                for s in range(cfg.n_heads):
                    for d in range(cfg.n_heads):
                        score = scores[s, d].item()
                        rows.append((comp, src_layer, s, dst_layer, d, score, baseline[comp], score / baseline[comp]))
    columns = ["composition", "src_layer", "src_head", "dst_layer", "dst_head", "score", "baseline", "ratio"]
    return pd.DataFrame(rows, columns=columns)
