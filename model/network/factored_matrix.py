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
        >>> fm.shape, bool(torch.allclose(fm.S, torch.linalg.svdvals(A @ B)[:3], rtol=1e-4))
        ((100, 200), True)
        >>> heads = FactoredMatrix(torch.randn(2, 4, 8, 3), torch.randn(2, 4, 3, 8))
        >>> heads[1, 2].shape, heads[:, 0].shape, heads.ndim, (heads @ heads).AB.shape
        ((8, 8), (2, 8, 8), 4, torch.Size([2, 4, 8, 8]))
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
        """Compact SVD as TransformerLens returns it: ``U [..., m, k], S [..., k], Vh [..., n, k]`` with
        ``U @ S.diag_embed() @ Vh.mT == A @ B`` (note the transpose: TransformerLens's ``Vh`` is ``V``), ``k =
        min(m, n, r)``, computed via QR of the factors."""
        Qa, Ra = torch.linalg.qr(self.A)
        Qb, Rb = torch.linalg.qr(self.B.mT)
        U, S, Vh = torch.linalg.svd(Ra @ Rb.mT, full_matrices=False)
        return Qa @ U, S, Qb @ Vh.mT

    @property
    def U(self) -> Float[Tensor, "... m k"]:
        return self.svd()[0]

    @property
    def S(self) -> Float[Tensor, "... k"]:
        """Singular values, largest first."""
        return self.svd()[1]

    @property
    def Vh(self) -> Float[Tensor, "... n k"]:
        """TransformerLens's ``Vh`` (``V``, ``[..., n, k]``: ``U @ diag(S) @ Vh.mT`` is the matrix)."""
        return self.svd()[2]

    @property
    def AB(self) -> Float[Tensor, "... m n"]:
        """The product ``A @ B`` (TransformerLens's name for :meth:`full`)."""
        return self.full()

    @property
    def BA(self) -> Float[Tensor, "... r r"]:
        """The small product ``B @ A`` (``m == n`` only), whose eigenvalues are those of ``A @ B``."""
        self._require_square("BA")
        return self.B @ self.A

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, index: object) -> FactoredMatrix:
        """Index the leading (batch) axes, as TransformerLens does: ``model.OV[1, 2]`` is head 2 of layer 1,
        ``model.OV[:, 0]`` head 0 of every layer. One or two indices more pick rows, then columns, of the matrix
        (lists, tensors or slices: ``full_OV[tokens, tokens]`` is ARENA's), still factored."""
        index = index if isinstance(index, tuple) else (index,)
        lead = torch.broadcast_shapes(self.A.shape[:-2], self.B.shape[:-2])
        if len(index) > len(lead) + 2:
            raise IndexError(f"a FactoredMatrix {self.shape} has {len(lead) + 2} axes, got {len(index)} indices")
        head, rows, cols = index[: len(lead)], index[len(lead) : len(lead) + 1], index[len(lead) + 1 :]
        if any(isinstance(i, int) for i in (*rows, *cols)):
            raise IndexError(
                "index the matrix axes of a FactoredMatrix with a list, tensor or slice (rows [i], not i), so it "
                "stays a matrix; .AB[..., i, j] gives single entries"
            )
        A = self.A.expand(*lead, *self.A.shape[-2:])[head]
        B = self.B.expand(*lead, *self.B.shape[-2:])[head]
        if rows:
            A = A[(..., _axis_index(rows[0], A.device), slice(None))]
        if cols:
            B = B[(..., _axis_index(cols[0], B.device))]
        return FactoredMatrix(A, B)

    def _require_square(self, what: str) -> None:
        if self.shape[-1] != self.shape[-2]:
            raise ValueError(f"{what} needs a square matrix, this one is {self.shape}")

    def diag(self) -> Float[Tensor, "... m"]:
        """The diagonal of the product (square matrices only)."""
        self._require_square("diag")
        return (self.A * self.B.mT).sum(-1)

    # TransformerLens's remaining surface
    ldim = property(lambda self: self.A.shape[-2], doc="``m``, the rows of the product")
    mdim = property(lambda self: self.A.shape[-1], doc="``r``, the shared dimension (as :attr:`inner`)")
    rdim = property(lambda self: self.B.shape[-1], doc="``n``, the columns of the product")
    pair = property(lambda self: (self.A, self.B), doc="``(A, B)``")

    def __mul__(self, scalar: float | Tensor) -> FactoredMatrix:
        """The product times a number (or a tensor of the leading shape): ``A`` is scaled."""
        if isinstance(scalar, Tensor) and scalar.ndim:
            scalar = scalar[..., None, None]
        elif not isinstance(scalar, int | float | Tensor):
            return NotImplemented
        return FactoredMatrix(self.A * scalar, self.B)

    __rmul__ = __mul__

    def unsqueeze(self, k: int) -> FactoredMatrix:
        """A new leading axis at ``k`` (``k`` counts the leading axes; the matrix axes stay last)."""
        lead = self.shape[:-2]
        if not -len(lead) - 1 <= k <= len(lead):
            raise IndexError(f"unsqueeze({k}): this FactoredMatrix has {len(lead)} leading axes")
        k = k if k >= 0 else len(lead) + 1 + k
        A = self.A.expand(*lead, *self.A.shape[-2:])
        B = self.B.expand(*lead, *self.B.shape[-2:])
        return FactoredMatrix(A.unsqueeze(k), B.unsqueeze(k))

    def collapse_l(self) -> Float[Tensor, "... k n"]:
        """``diag(S) @ V^T``: the product with its left orthogonal factor ``U`` taken off."""
        return self.S[..., :, None] * self.Vh.mT

    def collapse_r(self) -> Float[Tensor, "... m k"]:
        """``U @ diag(S)``: the product with its right orthogonal factor taken off."""
        return self.U * self.S[..., None, :]

    def make_even(self) -> FactoredMatrix:
        """The same product as ``(U sqrt(S)) @ (sqrt(S) V^T)``: factors of equal singular values."""
        U, S, V = self.svd()
        return FactoredMatrix(U * S.sqrt()[..., None, :], S.sqrt()[..., :, None] * V.mT)

    def get_corner(self, k: int = 3) -> Float[Tensor, "... k k"]:
        """The top-left ``k x k`` of the product (of every leading entry), from ``k`` rows and columns only."""
        return self.A[..., :k, :] @ self.B[..., :, :k]

    @property
    def eigenvalues(self) -> Tensor:
        """The ``r`` eigenvalues of ``B @ A``: the non-zero eigenvalues of ``A @ B`` (complex, square only; a
        property, as in TransformerLens)."""
        self._require_square("eigenvalues")
        return torch.linalg.eigvals(self.B @ self.A)


def _axis_index(index: object, device: torch.device) -> object:
    """A list or array index as a long tensor on ``device`` (a slice or tensor as it is)."""
    if isinstance(index, slice):
        return index
    return torch.as_tensor(index, dtype=torch.long, device=device)


def composition_scores(left: FactoredMatrix, right: FactoredMatrix, broadcast_dims: bool = True) -> Tensor:
    """``||L R||_F / (||L||_F ||R||_F)`` (Elhage et al. 2021) over every pair of ``left``'s and ``right``'s leading
    axes (``broadcast_dims``: ``[*left_lead, *right_lead]``; else the leading axes broadcast together), as
    TransformerLens's ``utils.composition_scores``.

    Example:
        >>> eye = FactoredMatrix(torch.eye(4).expand(3, 4, 4), torch.eye(4))
        >>> composition_scores(eye, eye).shape, float(composition_scores(eye, eye)[0, 0])  # 1 / sqrt(4)
        (torch.Size([3, 3]), 0.5)
    """
    if not isinstance(left, FactoredMatrix) or not isinstance(right, FactoredMatrix):
        raise TypeError(
            f"composition_scores takes two FactoredMatrix (e.g. model.OV[0], model.QK[1].T), got "
            f"{type(left).__name__} and {type(right).__name__}"
        )
    if broadcast_dims:
        lead_left, lead_right = left.ndim - 2, right.ndim - 2
        for _ in range(lead_right):
            left = left.unsqueeze(lead_left)
        for _ in range(lead_left):
            right = right.unsqueeze(0)
    return (left @ right).norm() / (left.norm() * right.norm())
