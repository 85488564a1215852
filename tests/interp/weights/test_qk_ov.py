"""FactoredMatrix against dense maths; QK/OV circuits, copying and composition scores on built models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import make_model

from interp import composition_score, composition_scores, copying_scores, full_ov, full_qk, ov_matrix, qk_matrix
from model import FactoredMatrix


@pytest.fixture
def factors():
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(3, 40, 5, generator=gen, dtype=torch.float64)
    return A, torch.randn(3, 5, 40, generator=gen, dtype=torch.float64)


def test_factored_matrix_matches_dense(factors):
    """full, norm, T, rows, diag, eigenvalues and matmul agree with the dense product (batched)."""
    A, B = factors
    fm, dense = FactoredMatrix(A, B), A @ B
    assert fm.shape == (3, 40, 40) and fm.inner == 5
    assert torch.allclose(fm.full(), dense)
    assert torch.allclose(fm.norm(), dense.norm(dim=(-2, -1))), "Gram-matrix Frobenius norm is wrong"
    assert torch.allclose(fm.T.full(), dense.mT)
    assert torch.allclose(fm.rows(3, 9), dense[:, 3:9])
    assert torch.allclose(fm.diag(), torch.diagonal(dense, dim1=-2, dim2=-1))
    M = torch.randn(40, 7, dtype=torch.float64)
    assert torch.allclose((fm @ M).full(), dense @ M) and torch.allclose((M.T @ fm).full(), M.T @ dense)
    other = FactoredMatrix(torch.randn(40, 2, dtype=torch.float64), torch.randn(2, 40, dtype=torch.float64))
    assert torch.allclose((fm @ other).full(), dense @ other.full()) and (fm @ other).inner == 2
    top = torch.linalg.eigvals(dense[0]).abs().sort(descending=True).values[:5]
    assert torch.allclose(fm.eigenvalues[0].abs().sort(descending=True).values, top, atol=1e-8)


def test_factored_svd_reconstructs(factors):
    """Compact SVD from the factors reconstructs the product and gives its singular values."""
    A, B = factors
    U, S, Vh = FactoredMatrix(A, B).svd()  # TransformerLens's convention: Vh is V, [..., n, k]
    assert U.shape == (3, 40, 5) and S.shape == (3, 5) and Vh.shape == (3, 40, 5)
    assert torch.allclose(U @ torch.diag_embed(S) @ Vh.mT, A @ B), "SVD does not reconstruct A @ B"
    assert torch.allclose(S, torch.linalg.svdvals(A @ B)[:, :5])


def test_factored_matrix_bad_input():
    """Non-chaining factors -> ValueError; non-tensors -> TypeError; diag of a non-square -> ValueError."""
    with pytest.raises(ValueError, match="do not chain"):
        FactoredMatrix(torch.ones(3, 4), torch.ones(5, 3))
    with pytest.raises(TypeError):
        FactoredMatrix([[1.0]], torch.ones(1, 1))
    with pytest.raises(ValueError, match="square"):
        FactoredMatrix(torch.ones(3, 2), torch.ones(2, 4)).diag()


def test_circuits_without_layernorm_are_the_plain_products():
    """With norm='none' the full circuits are exactly W_E W_Q W_K^T W_E^T and W_E W_V W_O W_U."""
    model = make_model(norm="none", tied_embed=False)
    attn, W_E, W_U = model.blocks[1].attn, model.W_E.detach(), model.W_U.detach()
    qk = W_E @ attn.W_Q[2] @ attn.W_K[2].T @ W_E.T
    ov = W_E @ attn.W_V[2] @ attn.W_O[2] @ W_U
    assert torch.allclose(full_qk(model, 1, 2).full(), qk.detach(), atol=1e-6)
    assert torch.allclose(full_ov(model, 1, 2).full(), ov.detach(), atol=1e-6)
    assert torch.allclose(full_ov(model, 1).full()[2], ov.detach(), atol=1e-6), "head=None must batch heads"


def test_layernorm_folding_is_exact_up_to_the_scale(tiny_model):
    """Pre-norm: W_E @ OV(folded) equals (ln1(W_E) - b) * scale(W_E) @ W_V W_O for every token row."""
    ln, attn = tiny_model.blocks[0].ln1, tiny_model.blocks[0].attn
    W_E = tiny_model.W_E.detach()
    with torch.no_grad():
        scale = (W_E.var(-1, unbiased=False, keepdim=True) + ln.eps).sqrt()
        linear_part = (F.layer_norm(W_E, ln.w.shape, ln.w, ln.b, ln.eps) - ln.b) * scale
        expected = linear_part @ attn.W_V[1] @ attn.W_O[1]
        expected_qk = linear_part @ attn.W_Q[1] @ attn.W_K[1].T @ linear_part.T
    assert torch.allclose(W_E @ ov_matrix(tiny_model, 0, 1).full(), expected, atol=1e-5), "LN centring/weight fold"
    assert torch.allclose(W_E @ qk_matrix(tiny_model, 0, 1).full() @ W_E.T, expected_qk, atol=1e-5)


def identity_copier(sign: float):
    """1 layer, 1 head, d_model = d_head = d_vocab = 64: W_E = I and OV = sign * I."""
    model = make_model(d_model=64, n_heads=1, n_layers=1, norm="none", attn_only=True, bias=False)
    with torch.no_grad():
        model.embed.W_E.copy_(torch.eye(64))
        model.blocks[0].attn.W_V.copy_(torch.eye(64)[None])
        model.blocks[0].attn.W_O.copy_(sign * torch.eye(64)[None])
    return model


def test_copying_score_known_answers():
    """An identity OV circuit copies every token (score 1); its negation copies none (score 0)."""
    assert copying_scores(identity_copier(1.0)).copying_score.tolist() == [1.0], "identity OV must score 1"
    assert copying_scores(identity_copier(-1.0), chunk=7).copying_score.tolist() == [0.0], "negated OV must score 0"
    df = copying_scores(identity_copier(1.0), token_ids=[3, 4, 5])
    assert list(df.columns) == ["layer", "head", "component", "copying_score"] and df.copying_score[0] == 1.0
    with pytest.raises(ValueError, match="token_ids"):
        copying_scores(identity_copier(1.0), token_ids=[64])


def test_composition_scores_match_dense_formula(tiny_model):
    """Each score equals ||W_A W_B||_F / (||W_A||_F ||W_B||_F) computed on dense d_model x d_model matrices."""
    df = composition_scores(tiny_model).set_index(["composition", "src_head", "dst_head"])
    ov0, qk1, ov1 = ov_matrix(tiny_model, 0).full(), qk_matrix(tiny_model, 1).full(), ov_matrix(tiny_model, 1).full()

    def dense(a, b):
        return ((a @ b).norm() / (a.norm() * b.norm())).item()

    for s, d in [(0, 0), (1, 3), (3, 2)]:
        assert abs(df.score[("Q", s, d)] - dense(ov0[s], qk1[d])) < 1e-5, "Q-composition formula"
        assert abs(df.score[("K", s, d)] - dense(ov0[s], qk1[d].T)) < 1e-5, "K-composition formula"
        assert abs(df.score[("V", s, d)] - dense(ov0[s], ov1[d])) < 1e-5, "V-composition formula"
    assert len(df) == 3 * 16, "3 kinds x 4 src heads x 4 dst heads"


def test_composition_baseline_and_constructed_k_composition():
    """Random weights score about the baseline; a key reading the source's output space scores far above it."""
    model = make_model(norm="none", attn_only=True, d_model=64, n_heads=4)
    df = composition_scores(model, seed=3)
    ratio = df.groupby("composition").ratio.mean()
    assert ((ratio > 0.8) & (ratio < 1.25)).all(), f"random heads should score about the baseline, got {ratio}"
    assert df.baseline.min() > 0 and df.baseline.max() < 1, "baseline must be a score in (0, 1)"
    with torch.no_grad():  # dst head 0 keys read (and queries share) exactly what src head 2 writes
        W_O = model.blocks[0].attn.W_O[2]
        model.blocks[1].attn.W_K[0] = W_O.T
        model.blocks[1].attn.W_Q[0] = W_O.T
        model.blocks[0].attn.W_V[2] = W_O.T
    built = composition_scores(model, seed=3).set_index(["composition", "src_head", "dst_head"])
    assert built.ratio[("K", 2, 0)] > 2, "aligned OV and key weights must compose far above the baseline"
    assert composition_scores(model, seed=3).baseline.equals(df.baseline), "baseline must depend only on the seed"


def test_composition_score_is_scale_free():
    """Scaling either matrix leaves the composition score unchanged."""
    gen = torch.Generator().manual_seed(1)
    a = FactoredMatrix(torch.randn(8, 2, generator=gen), torch.randn(2, 8, generator=gen))
    b = FactoredMatrix(torch.randn(8, 2, generator=gen), torch.randn(2, 8, generator=gen))
    scaled = FactoredMatrix(a.A * 10, a.B)
    assert torch.allclose(composition_score(a, b), composition_score(scaled, b))


def test_bad_layer_or_head_raises(tiny_model):
    """Out-of-range layer or head -> IndexError naming the valid range."""
    with pytest.raises(IndexError, match="layer"):
        full_qk(tiny_model, 2, 0)
    with pytest.raises(IndexError, match="head"):
        full_ov(tiny_model, 0, 4)
    with pytest.raises(ValueError, match="n_draws"):
        composition_scores(tiny_model, n_draws=0)
