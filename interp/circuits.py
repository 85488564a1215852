"""QK and OV circuits kept as factor pairs, copying scores and composition scores.

A head's bilinear maps are low rank: ``W_QK = W_Q W_K^T`` and ``W_OV = W_V W_O`` are ``d_model x
d_model`` of rank ``<= d_head``; through the embedding and unembedding they become ``d_vocab x
d_vocab`` (50257^2 floats for GPT-2). :class:`FactoredMatrix` keeps ``A @ B`` as its two factors and
answers norms, SVDs, eigenvalues and row blocks from them, so the big product is only built on
``.full()``.

Conventions (row vectors, as in the model: ``write = x @ W_V @ W_O``):

- ``qk_circuit(model, l, h)``: ``[d_vocab (query token), d_vocab (key token)]`` attention score
  contribution ``W_E W_Q W_K^T W_E^T`` (token embeddings only: positions and rotary are left out).
- ``ov_circuit(model, l, h)``: ``[d_vocab (attended token), d_vocab (output logit)]`` =
  ``W_E W_V W_O W_U``: what attending to a token does to the logits directly.
- LayerNorm: for ``norm="pre"`` the LayerNorm in front of the head (and ``ln_final`` in front of
  ``W_U``) is folded in, its centring and weight, not its input-dependent scale. ``norm="post"``
  models use the raw weights (their LayerNorms sit after the sublayers); ``norm="none"`` is exact.

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> ov = ov_circuit(model, layer=1, head=0)
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

from interp.checks import check_index, check_int, check_model, check_seed, require_finite
from model.minigpt import MiniGPT


class FactoredMatrix:
    """The matrix ``A @ B`` kept as ``A [..., m, r]`` and ``B [..., r, n]`` (leading axes batch over heads).

    Example:
        >>> A, B = torch.randn(100, 3), torch.randn(3, 200)
        >>> fm = FactoredMatrix(A, B)
        >>> fm.shape, bool(torch.allclose(fm.svd()[1], torch.linalg.svdvals(A @ B)[:3], rtol=1e-4))
        ((100, 200), True)
    """

    def __init__(self, A: Float[Tensor, "... m r"], B: Float[Tensor, "... r n"]) -> None:
        if not isinstance(A, Tensor) or not isinstance(B, Tensor):
            raise TypeError(f"FactoredMatrix needs two tensors, got {type(A).__name__} and {type(B).__name__}")
        if A.ndim < 2 or B.ndim < 2 or A.shape[-1] != B.shape[-2]:
            raise ValueError(
                f"factors {tuple(A.shape)} @ {tuple(B.shape)} do not chain: need A [..., m, r], B [..., r, n]"
            )
        if not A.is_floating_point() or A.dtype != B.dtype:
            raise TypeError(f"factors must share one floating-point dtype, got {A.dtype} and {B.dtype}")
        try:
            torch.broadcast_shapes(A.shape[:-2], B.shape[:-2])
        except RuntimeError:
            raise ValueError(
                f"the leading (batch) axes of the factors {tuple(A.shape)} and {tuple(B.shape)} do not broadcast"
            ) from None
        self.A, self.B = A, B

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the full matrix ``[..., m, n]`` (never built to answer this)."""
        batch = torch.broadcast_shapes(self.A.shape[:-2], self.B.shape[:-2])
        return (*batch, self.A.shape[-2], self.B.shape[-1])

    @property
    def inner(self) -> int:
        """The shared dimension ``r``: a bound on the rank."""
        return self.A.shape[-1]

    def __repr__(self) -> str:
        return f"FactoredMatrix(shape={self.shape}, inner={self.inner})"

    @property
    def T(self) -> FactoredMatrix:
        return FactoredMatrix(self.B.mT, self.A.mT)

    def full(self) -> Float[Tensor, "... m n"]:
        """The product itself (``m x n`` floats per batch entry: mind the size)."""
        return self.A @ self.B

    def rows(self, start: int, stop: int) -> Float[Tensor, "... rows n"]:
        """Rows ``start:stop`` of the product, without building the rest."""
        return self.A[..., start:stop, :] @ self.B

    def _check_chain(self, left: tuple[int, ...], right: tuple[int, ...]) -> None:
        if len(left) < 2 or len(right) < 2 or left[-1] != right[-2]:
            raise ValueError(f"cannot multiply {left} @ {right}: the inner dimensions differ")

    def __matmul__(self, other: FactoredMatrix | Tensor) -> FactoredMatrix:
        if isinstance(other, FactoredMatrix | Tensor):
            self._check_chain(self.shape, tuple(other.shape))
        if isinstance(other, FactoredMatrix):
            middle = self.B @ other.A  # r1 x r2: keep the smaller inner dimension
            if self.inner <= other.inner:
                return FactoredMatrix(self.A, middle @ other.B)
            return FactoredMatrix(self.A @ middle, other.B)
        if isinstance(other, Tensor):
            return FactoredMatrix(self.A, self.B @ other)
        return NotImplemented

    def __rmatmul__(self, other: Tensor) -> FactoredMatrix:
        if isinstance(other, Tensor):
            self._check_chain(tuple(other.shape), self.shape)
            return FactoredMatrix(other @ self.A, self.B)
        return NotImplemented

    def norm(self) -> Float[Tensor, "..."]:
        """Frobenius norm from the ``r x r`` Gram matrices: ``||AB||^2 = tr((A^T A)(B B^T))``."""
        squared = ((self.A.mT @ self.A) * (self.B @ self.B.mT)).sum((-1, -2))
        return squared.clamp_min(0).sqrt()

    def svd(self) -> tuple[Tensor, Tensor, Tensor]:
        """Compact SVD ``U [..., m, k], S [..., k], Vh [..., k, n]`` (``k = min(m, n, r)``) via QR of the factors."""
        Qa, Ra = torch.linalg.qr(self.A)
        Qb, Rb = torch.linalg.qr(self.B.mT)
        U, S, Vh = torch.linalg.svd(Ra @ Rb.mT, full_matrices=False)
        return Qa @ U, S, Vh @ Qb.mT

    def _require_square(self, what: str) -> None:
        if self.shape[-1] != self.shape[-2]:
            raise ValueError(f"{what} needs a square matrix, this one is {self.shape}")

    def diag(self) -> Float[Tensor, "... m"]:
        """The diagonal of the product (square matrices only)."""
        self._require_square("diag")
        return (self.A * self.B.mT).sum(-1)

    def eigenvalues(self) -> Tensor:
        """The ``r`` eigenvalues of ``B @ A``: the non-zero eigenvalues of ``A @ B`` (complex, square only)."""
        self._require_square("eigenvalues")
        return torch.linalg.eigvals(self.B @ self.A)


def _check_index(model: MiniGPT, layer: int, head: int | None) -> tuple[int, int | None]:
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
    layer, head = _check_index(model, layer, head)
    block = model.blocks[layer]
    ln = block.ln1 if model.cfg.norm == "pre" else None
    pick = slice(None) if head is None else head
    attn = block.attn
    out = {name: _fold_ln(ln, getattr(attn, name).detach()[pick]) for name in ("W_Q", "W_K", "W_V")}
    out["W_O"] = attn.W_O.detach()[pick]
    for weight in out.values():
        require_finite(weight, f"circuit analysis of layer {layer}", model)
    return out


def _unembed(model: MiniGPT) -> Float[Tensor, "d_model d_vocab"]:
    unembed = _fold_ln(model.ln_final if model.cfg.norm == "pre" else None, model.W_U.detach())
    require_finite(unembed, "circuit analysis (unembedding)", model)
    return unembed


def _embed(model: MiniGPT) -> Float[Tensor, "d_vocab d_model"]:
    require_finite(model.W_E, "circuit analysis (embedding)", model)
    return model.W_E.detach()


def qk_matrix(model: MiniGPT, layer: int, head: int | None = None) -> FactoredMatrix:
    """``W_Q W_K^T`` ``[d_model, d_model]`` of one head (``head=None``: all heads, ``[head, d_model, d_model]``).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> qk_matrix(MiniGPT(ModelConfig(), seed=0), 0).shape
        (4, 64, 64)
    """
    w = _head_weights(model, layer, head)
    return FactoredMatrix(w["W_Q"], w["W_K"].mT)


def ov_matrix(model: MiniGPT, layer: int, head: int | None = None) -> FactoredMatrix:
    """``W_V W_O`` ``[d_model, d_model]`` of one head (``head=None``: all heads, ``[head, d_model, d_model]``).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> ov_matrix(MiniGPT(ModelConfig(), seed=0), 1, 2)
        FactoredMatrix(shape=(64, 64), inner=16)
    """
    w = _head_weights(model, layer, head)
    return FactoredMatrix(w["W_V"], w["W_O"])


@torch.no_grad()
def qk_circuit(model: MiniGPT, layer: int, head: int | None = None) -> FactoredMatrix:
    """Full QK circuit ``W_E W_Q W_K^T W_E^T``: ``[d_vocab (query), d_vocab (key)]`` as factors.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> qk_circuit(MiniGPT(ModelConfig(), seed=0), 0, 3)
        FactoredMatrix(shape=(64, 64), inner=16)
    """
    qk = qk_matrix(model, layer, head)
    W_E = _embed(model)
    return FactoredMatrix(W_E @ qk.A, qk.B @ W_E.T)


@torch.no_grad()
def ov_circuit(model: MiniGPT, layer: int, head: int | None = None) -> FactoredMatrix:
    """Full OV circuit ``W_E W_V W_O W_U``: ``[d_vocab (attended token), d_vocab (logit)]`` as factors.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> ov_circuit(MiniGPT(ModelConfig(), seed=0), 1, None).shape
        (4, 64, 64)
    """
    ov = ov_matrix(model, layer, head)
    return FactoredMatrix(_embed(model) @ ov.A, ov.B @ _unembed(model))


@torch.no_grad()
def copying_scores(model: MiniGPT, token_ids: list[int] | None = None, chunk: int = 2048) -> pd.DataFrame:
    """Diagonal top-1 rate of each head's full OV circuit: how often attending to ``t`` most raises logit ``t``.

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
        ov = ov_circuit(model, layer)  # head d_vocab d_vocab, as factors
        hits = torch.zeros(model.cfg.n_heads)
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk].to(ov.A.device)
            top = (ov.A[:, part] @ ov.B).argmax(-1)  # head part
            hits += (top == part).sum(-1).cpu()
        rows += [(layer, h, f"L{layer}H{h}", (hits[h] / len(ids)).item()) for h in range(model.cfg.n_heads)]
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
    return (first @ second).norm() / (first.norm() * second.norm())


def _pairs(src: FactoredMatrix, dst: FactoredMatrix, kind: str) -> Tensor:
    """Scores ``[src_head, dst_head]`` of one kind, all heads of two layers at once."""
    src = FactoredMatrix(src.A[:, None], src.B[:, None])
    dst = FactoredMatrix(dst.A[None], dst.B[None])
    return composition_score(src, dst.T if kind == "K" else dst)


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
    by ``seed``; all heads share a shape, so the baseline depends only on ``kind``.

    Columns (ordered by kind Q, K, V, then src and dst layer and head):
        kind (str, "Q" | "K" | "V"); src_layer, src_head, dst_layer, dst_head (int); score (float in
        [0, 1]); baseline (float); ratio (float, score / baseline).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> df = composition_scores(MiniGPT(ModelConfig(), seed=0))
        >>> df.shape, sorted(set(df.kind))
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
    for kind in ("Q", "K", "V"):
        for src_layer in range(cfg.n_layers):
            src = ov_matrix(model, src_layer)
            for dst_layer in range(src_layer + 1, cfg.n_layers):
                dst = ov_matrix(model, dst_layer) if kind == "V" else qk_matrix(model, dst_layer)
                scores = _pairs(src, dst, kind)
                for s in range(cfg.n_heads):
                    for d in range(cfg.n_heads):
                        score = scores[s, d].item()
                        rows.append((kind, src_layer, s, dst_layer, d, score, baseline[kind], score / baseline[kind]))
    columns = ["kind", "src_layer", "src_head", "dst_layer", "dst_head", "score", "baseline", "ratio"]
    return pd.DataFrame(rows, columns=columns)
