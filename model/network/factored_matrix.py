"""FactoredMatrix: a low-rank matrix ``A @ B`` kept as its two factors.

A head's bilinear maps are low rank: ``W_QK = W_Q W_K^T`` and ``W_OV = W_V W_O`` are ``d_model x d_model`` of
rank ``<= d_head``; through the embedding and unembedding they become ``d_vocab x d_vocab``. A FactoredMatrix
answers norms, SVDs, eigenvalues and row blocks from the factors, so the big product is only built on
``.full()``. It lives beside the network because the model's own ``OV`` / ``QK`` weights are returned as one;
the circuit analyses of :mod:`interp.weights` build on it.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


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
