"""The QK and OV matrices of a head, read from the weights alone, and copying scores.

``qk_matrix`` / ``ov_matrix`` are a head's maps in the residual stream (``d_model x d_model``); ``full_qk`` /
``full_ov`` the same between tokens, through the embedding and the unembedding (what ARENA calls the full QK and
OV circuits; "circuit" here means a discovered subgraph, :mod:`interp.discover`). Each map is returned as a
:class:`~model.network.factored_matrix.FactoredMatrix` (``A @ B`` kept as two factors), so a ``d_vocab x d_vocab``
matrix (50257^2 floats for GPT-2) is only built on ``.full()``.

Conventions (row vectors, as in the model: ``write = x @ W_V @ W_O``):

- ``full_qk(model, l, h)``: ``[d_vocab (query token), d_vocab (key token)]`` attention score
  contribution ``W_E W_Q W_K^T W_E^T`` (token embeddings only: positions and rotary are left out).
- ``full_ov(model, l, h)``: ``[d_vocab (attended token), d_vocab (output logit)]`` =
  ``W_E W_V W_O W_U``: what attending to a token does to the logits directly.
- LayerNorm: for ``norm="pre"`` the LayerNorm in front of the head (and ``ln_final`` in front of
  ``W_U``) is folded in, its centring and weight, not its input-dependent scale. ``norm="post"``
  models use the raw weights (their LayerNorms sit after the sublayers); ``norm="none"`` is exact.

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> ov = full_ov(model, layer=1, head=0)
    >>> ov.shape, ov.inner
    ((64, 64), 16)
    >>> bool(torch.allclose(ov.norm(), ov.full().norm(), rtol=1e-4))
    True
"""

from __future__ import annotations

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from interp.common.checks import check_index, check_int, check_model, require_finite
from model.network.factored_matrix import FactoredMatrix
from model.network.labels import component_label
from model.network.minigpt import MiniGPT


def _checked(model: MiniGPT, layer: int, head: int | None) -> tuple[int, int | None]:
    """The public functions' boundary: the model, the layer and the head (None: all heads) checked once."""
    layer = check_index(layer, check_model(model).cfg.n_layers, "layer")
    return layer, None if head is None else check_index(head, model.cfg.n_heads, "head")


def _fold_ln(ln, weight: Tensor) -> Tensor:
    """``C diag(w) W`` for a LayerNorm in front of ``weight [..., d_model, k]`` (C centres over d_model)."""
    if ln is None:
        return weight
    folded = ln.w.detach()[:, None] * weight
    return folded - folded.mean(-2, keepdim=True)


def _head_weights(model: MiniGPT, layer: int, head: int | None) -> dict[str, Tensor]:
    """W_Q, W_K, W_V (LayerNorm folded, pre-norm only) and W_O of one head, or of all heads (batched)."""
    block = model.blocks[layer]
    ln = block.ln1 if model.cfg.norm == "pre" else None
    pick = slice(None) if head is None else head
    attn = block.attn
    out = {name: _fold_ln(ln, getattr(attn, name).detach()[pick]) for name in ("W_Q", "W_K", "W_V")}
    out["W_O"] = attn.W_O.detach()[pick]
    for weight in out.values():
        require_finite(weight, f"QK / OV of layer {layer}", model)
    return out


def _unembed(model: MiniGPT) -> Float[Tensor, "d_model d_vocab"]:
    unembed = _fold_ln(model.ln_final if model.cfg.norm == "pre" else None, model.W_U.detach())
    require_finite(unembed, "QK / OV (unembedding)", model)
    return unembed


def _embed(model: MiniGPT) -> Float[Tensor, "d_vocab d_model"]:
    require_finite(model.W_E, "QK / OV (embedding)", model)
    return model.W_E.detach()


def qk_matrix(model: MiniGPT, layer: int, head: int | None = None) -> FactoredMatrix:
    """``W_Q W_K^T`` ``[d_model, d_model]`` of one head (``head=None``: all heads, ``[head, d_model, d_model]``).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> qk_matrix(MiniGPT(ModelConfig(), seed=0), 0).shape
        (4, 64, 64)
    """
    return _qk(model, *_checked(model, layer, head))


def _qk(model: MiniGPT, layer: int, head: int | None) -> FactoredMatrix:
    w = _head_weights(model, layer, head)
    return FactoredMatrix(w["W_Q"], w["W_K"].mT)


def ov_matrix(model: MiniGPT, layer: int, head: int | None = None) -> FactoredMatrix:
    """``W_V W_O`` ``[d_model, d_model]`` of one head (``head=None``: all heads, ``[head, d_model, d_model]``).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> ov_matrix(MiniGPT(ModelConfig(), seed=0), 1, 2)
        FactoredMatrix(shape=(64, 64), inner=16)
    """
    return _ov(model, *_checked(model, layer, head))


def _ov(model: MiniGPT, layer: int, head: int | None) -> FactoredMatrix:
    w = _head_weights(model, layer, head)
    return FactoredMatrix(w["W_V"], w["W_O"])


@torch.no_grad()
def full_qk(model: MiniGPT, layer: int, head: int | None = None) -> FactoredMatrix:
    """Full QK matrix ``W_E W_Q W_K^T W_E^T``: ``[d_vocab (query), d_vocab (key)]`` as factors.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> full_qk(MiniGPT(ModelConfig(), seed=0), 0, 3)
        FactoredMatrix(shape=(64, 64), inner=16)
    """
    qk = _qk(model, *_checked(model, layer, head))
    W_E = _embed(model)
    return FactoredMatrix(W_E @ qk.A, qk.B @ W_E.T)


@torch.no_grad()
def full_ov(model: MiniGPT, layer: int, head: int | None = None) -> FactoredMatrix:
    """Full OV matrix ``W_E W_V W_O W_U``: ``[d_vocab (attended token), d_vocab (logit)]`` as factors.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> full_ov(MiniGPT(ModelConfig(), seed=0), 1, None).shape
        (4, 64, 64)
    """
    return _full_ov(model, *_checked(model, layer, head))


def _full_ov(model: MiniGPT, layer: int, head: int | None) -> FactoredMatrix:
    ov = _ov(model, layer, head)
    return FactoredMatrix(_embed(model) @ ov.A, ov.B @ _unembed(model))


@torch.no_grad()
def copying_scores(model: MiniGPT, token_ids: list[int] | None = None, chunk: int = 2048) -> pd.DataFrame:
    """Diagonal top-1 rate of each head's full OV matrix: how often attending to ``t`` most raises logit ``t``.

    ``copying_score = mean over t in token_ids of [argmax_j OV[t, j] == t]`` (argmax over the whole
    vocabulary; ``token_ids=None`` means every token). Rows are built ``chunk`` at a time, never the
    whole ``d_vocab x d_vocab`` product. Chance level is ``1 / d_vocab``.

    Columns: layer, head (int); component (str, ``L{l}H{h}``); copying_score (float in [0, 1]).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> copying_scores(MiniGPT(ModelConfig(), seed=0)).shape
        (8, 4)
    """
    d_vocab, chunk = check_model(model).cfg.d_vocab, check_int(chunk, "chunk", minimum=1)
    ids = torch.arange(d_vocab) if token_ids is None else torch.as_tensor(_int_list(token_ids, "token_ids"))
    if ids.ndim != 1 or ids.numel() == 0 or ids.min() < 0 or ids.max() >= d_vocab:
        raise ValueError(f"token_ids must be a non-empty list of ids in [0, {d_vocab}), got {token_ids!r}")
    rows = []
    for layer in range(model.cfg.n_layers):
        ov = _full_ov(model, layer, None)  # head d_vocab d_vocab, as factors
        hits = torch.zeros(model.cfg.n_heads)
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk].to(ov.A.device)
            top = (ov.A[:, part] @ ov.B).argmax(-1)  # head part
            hits += (top == part).sum(-1).cpu()
        rows += [
            (layer, h, component_label("head", layer, h), (hits[h] / len(ids)).item()) for h in range(model.cfg.n_heads)
        ]
    return pd.DataFrame(rows, columns=["layer", "head", "component", "copying_score"])


def _int_list(values: object, name: str) -> list[int]:
    """A list of ints from a list, range or 1-d integer tensor (TypeError naming ``name`` otherwise)."""
    if isinstance(values, Tensor):
        if values.is_floating_point() or values.dtype == torch.bool or values.ndim != 1:
            raise TypeError(
                f"{name} must be a 1-d integer tensor or a list of ints, got {values.dtype} {tuple(values.shape)}"
            )
        return values.tolist()
    if isinstance(values, str) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a list of ints, got {type(values).__name__}")
    return [check_int(v, f"every entry of {name}") for v in values]
