"""Models whose circuit is known by construction: weights set by hand, not trained.

Both use the 64-symbol character vocabulary, no LayerNorm (``norm="none"``), an untied unembedding and a
residual stream cut into orthogonal **subspaces** (blocks of coordinates): a component *writes* a subspace
when its output matrix (``W_E``, ``W_pos``, ``W_O``, ``W_out``) is zero outside those coordinates, and
*reads* one when its input matrix (``W_Q``, ``W_K``, ``W_V``, ``W_in``, ``W_U``) is zero on every other
coordinate. Each model has a **distractor** in every slot the circuit leaves free, with random weights
that read anything and write only the junk subspace ``J``.

**Lemma (distractors cannot matter).** Nothing in the circuit, and not ``W_U``, reads ``J``; every
distractor writes only ``J``. So the logits are the same function of the circuit's own inputs whatever
the distractors compute, on every input and under every patch: an edge out of a distractor, into a
distractor, or from a node to an input that does not read the subspace the node writes changes the metric
by exactly 0 (up to float rounding). The circuits below are therefore the only edges that can matter; the
positional ones carry the same value on every prompt of the task (positions do not change when tokens
are corrupted), so a token corruption sees only the rest (:attr:`~interp.discover.tasks.KnownCircuit.circuit`
versus ``.mechanism``).

Attention is made hard with a margin: the wanted key scores ``MARGIN`` = 24 above every other key, so at a
query with ``n <= 32`` keys the others share at most ``31 e^-24 < 1.2e-9`` of the weight. Such a
saturated softmax has (almost) no gradient, which is what EAP trips on (see the tests).

Example:
    >>> model = planted_induction()
    >>> model.cfg.d_model, model.cfg.n_heads, model.cfg.attn_only
    (256, 2, True)
    >>> tokens = model.to_tokens("abcdefgabcdefg")
    >>> model.to_string(model(tokens)[0, 8:].argmax(-1))  # from the second 'a' on: the token after each earlier copy
    'bcdefga'
"""

from __future__ import annotations

import math

import torch

from interp.common.checks import check_seed
from model.network.config import ModelConfig
from model.network.minigpt import MiniGPT

MARGIN = 24.0  # attention score of the wanted key above every other one
LOGIT_SCALE = 12.0  # logit of the predicted token above every other one
N_VOCAB, N_CTX = 64, 32


def _blocks(sizes: dict[str, int]) -> dict[str, slice]:
    out, start = {}, 0
    for name, size in sizes.items():
        out[name] = slice(start, start + size)
        start += size
    return out


def _zeroed(cfg: ModelConfig) -> MiniGPT:
    model = MiniGPT(cfg, seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


def _qk_scale(d_head: int) -> float:
    """The entry ``c`` with ``c^2 / sqrt(d_head) = MARGIN``: a query and a key of ``c`` on one shared axis."""
    return math.sqrt(MARGIN * math.sqrt(d_head))


def _distract(attn, head: int, reads: slice, junk: slice, gen: torch.Generator) -> None:
    """Random query, key and value weights on ``reads``, output only into ``junk`` (a distractor head)."""
    for weight in (attn.W_Q, attn.W_K, attn.W_V):
        weight[head, reads] = torch.randn(weight[head, reads].shape, generator=gen) * 0.5
    attn.W_O[head, :, junk] = torch.randn(attn.W_O[head, :, junk].shape, generator=gen) * 0.5


def planted_induction(seed: int = 0) -> MiniGPT:
    """A 2-layer attention-only model with a previous-token head ``L0H0`` and an induction head ``L1H0``.

    Subspaces of ``d_model = 256``: ``TOK`` (64, the token one-hot), ``POS`` (32, the position one-hot),
    ``PREV`` (64), ``OUT`` (64), ``J`` (32). ``d_head = 128``.

    - ``embed`` writes ``TOK``: ``W_E[t] = e_TOK(t)``; ``pos_embed`` writes ``POS``: ``W_pos[p] = e_POS(p)``.
    - ``L0H0`` (previous token): query ``POS(p) -> c e_p``, key ``POS(p') -> c e_{p'+1}``, so the score is
      ``MARGIN`` exactly when ``p' = p - 1``; value ``TOK -> head``, output ``head -> PREV``. Hence
      ``PREV_p = e(t_{p-1})`` (within 1.2e-9) for ``p >= 1``.
    - ``L1H0`` (induction): query ``TOK(t) -> c e_t``, key ``PREV(t) -> c e_t``: score ``MARGIN`` at the keys
      ``p'`` whose previous token equals the current token ``t_p``; value ``TOK -> head``, output
      ``head -> OUT``. At a position of the second copy of ``r + r`` it attends to the token after the
      earlier copy and writes that token into ``OUT``.
    - ``W_U`` reads ``OUT`` only: ``logit_t = LOGIT_SCALE * OUT_t``; so the logits predict that token.
    - Distractors ``L0H1`` (reads ``TOK``, ``POS``) and ``L1H1`` (reads everything) write only ``J``.

    By the module's lemma the logits depend on the circuit alone; reading off the reads and writes above,
    the edges that matter are ``pos_embed -> L0H0.q``, ``pos_embed -> L0H0.k``, ``embed -> L0H0.v``,
    ``L0H0 -> L1H0.k``, ``embed -> L1H0.q``, ``embed -> L1H0.v`` and ``L1H0 -> logits``; every other edge,
    e.g. ``embed -> L1H0.k`` (the key reads ``PREV``, embed writes ``TOK``) or ``L0H0 -> L1H0.q``, changes
    nothing. ``seed`` draws the distractors' weights only.
    """
    gen = torch.Generator().manual_seed(check_seed(seed))
    cfg = ModelConfig(d_model=256, n_heads=2, n_layers=2, d_ff=4, d_vocab=N_VOCAB, n_ctx=N_CTX, norm="none",
                      attn_only=True, tied_embed=False, bias=False)  # fmt: skip
    s = _blocks({"TOK": N_VOCAB, "POS": N_CTX, "PREV": N_VOCAB, "OUT": N_VOCAB, "J": 32})
    model, c, eye = _zeroed(cfg), _qk_scale(cfg.d_head), torch.eye(N_VOCAB)
    with torch.no_grad():
        model.embed.W_E[:, s["TOK"]] = eye
        model.pos_embed.W_pos[:, s["POS"]] = torch.eye(N_CTX)
        prev, ind = model.blocks[0].attn, model.blocks[1].attn
        prev.W_Q[0, s["POS"], :N_CTX] = c * torch.eye(N_CTX)
        prev.W_K[0, s["POS"], 1 : N_CTX + 1] = c * torch.eye(N_CTX)
        prev.W_V[0, s["TOK"], :N_VOCAB] = eye
        prev.W_O[0, :N_VOCAB, s["PREV"]] = eye
        ind.W_Q[0, s["TOK"], :N_VOCAB] = c * eye
        ind.W_K[0, s["PREV"], :N_VOCAB] = c * eye
        ind.W_V[0, s["TOK"], :N_VOCAB] = eye
        ind.W_O[0, :N_VOCAB, s["OUT"]] = eye
        _distract(prev, 1, slice(0, s["PREV"].start), s["J"], gen)
        _distract(ind, 1, slice(0, cfg.d_model), s["J"], gen)
        model.unembed.W_U[s["OUT"]] = LOGIT_SCALE * eye
    model.provenance = {"planted": "interp.discover.planted.planted_induction", "seed": seed}
    return model.eval()


def _permutation(n: int) -> torch.Tensor:
    """The lookup table of :func:`planted_lookup`: ``t -> (5 t + 3) mod n`` (5 is prime to 64)."""
    return (5 * torch.arange(n) + 3) % n


def planted_lookup(seed: int = 0) -> MiniGPT:
    """A 2-layer model with MLPs that predicts, at every position, ``pi(first token)`` for a fixed permutation
    ``pi(t) = (5 t + 3) mod 64``, through a head, an MLP lookup and a second head (V-composition).

    Subspaces of ``d_model = 320``: ``TOK`` (64), ``POS`` (32), ``A`` (64), ``B`` (64), ``OUT`` (64), ``J``
    (32). ``d_head = 160``, ``d_mlp = 64``, ReLU.

    - ``L0H0`` (first-token head): query ``POS(p) -> c e_0`` for every ``p``, key ``POS(1) -> c e_0``: the key
      at position 1 scores ``MARGIN`` for every query ``p >= 1``; value ``TOK -> head``, output ``head -> A``.
      So ``A_p = e(t_1)``: the first token after ``<bos>``.
    - ``L0.mlp`` (lookup): ``W_in = A(t) -> neuron t``, ``b_in = -1/2``, ``W_out = neuron t -> 2 e_B(pi(t))``.
      With ``A = e(t_1)`` exactly one neuron is active (``relu(1 - 1/2) = 1/2``; the others are at
      ``relu(-1/2) = 0``, and the softmax leaves under 1.2e-9), so ``B_p = e(pi(t_1))``.
    - ``L1H0`` (mover): query ``POS(p) -> c e_p``, key ``POS(p') -> c e_{p'}``: it attends to its own
      position; value ``B -> head``, output ``head -> OUT``. ``W_U = LOGIT_SCALE`` on ``OUT``.
    - Distractors ``L0H1`` (reads ``TOK``, ``POS``), ``L1H1`` and ``L1.mlp`` (read everything) write only
      ``J`` (``L1.mlp``: random ``W_in``, ``b_in``, ``W_out`` and ``b_out`` into ``J``).

    By the module's lemma the edges that matter are ``pos_embed -> L0H0.q``, ``pos_embed -> L0H0.k``,
    ``embed -> L0H0.v``, ``L0H0 -> L0.mlp``, ``L0.mlp -> L1H0.v``, ``pos_embed -> L1H0.q``,
    ``pos_embed -> L1H0.k`` and ``L1H0 -> logits``; every other edge changes nothing. ``seed`` draws the
    distractors' weights only.
    """
    gen = torch.Generator().manual_seed(check_seed(seed))
    cfg = ModelConfig(d_model=320, n_heads=2, n_layers=2, d_ff=N_VOCAB, d_vocab=N_VOCAB, n_ctx=N_CTX,
                      norm="none", act="relu", tied_embed=False, bias=True)  # fmt: skip
    s = _blocks({"TOK": N_VOCAB, "POS": N_CTX, "A": N_VOCAB, "B": N_VOCAB, "OUT": N_VOCAB, "J": 32})
    model, c, eye = _zeroed(cfg), _qk_scale(cfg.d_head), torch.eye(N_VOCAB)
    with torch.no_grad():
        model.embed.W_E[:, s["TOK"]] = eye
        model.pos_embed.W_pos[:, s["POS"]] = torch.eye(N_CTX)
        first, mover = model.blocks[0].attn, model.blocks[1].attn
        first.W_Q[0, s["POS"], 0] = c
        first.W_K[0, s["POS"].start + 1, 0] = c
        first.W_V[0, s["TOK"], :N_VOCAB] = eye
        first.W_O[0, :N_VOCAB, s["A"]] = eye
        lookup = model.blocks[0].mlp
        lookup.W_in[s["A"], :] = eye
        lookup.b_in[:] = -0.5
        lookup.W_out[torch.arange(N_VOCAB), s["B"].start + _permutation(N_VOCAB)] = 2.0
        mover.W_Q[0, s["POS"], :N_CTX] = c * torch.eye(N_CTX)
        mover.W_K[0, s["POS"], :N_CTX] = c * torch.eye(N_CTX)
        mover.W_V[0, s["B"], :N_VOCAB] = eye
        mover.W_O[0, :N_VOCAB, s["OUT"]] = eye
        _distract(first, 1, slice(0, s["A"].start), s["J"], gen)
        _distract(mover, 1, slice(0, cfg.d_model), s["J"], gen)
        junk = model.blocks[1].mlp
        junk.W_in.copy_(torch.randn(junk.W_in.shape, generator=gen) * 0.5)
        junk.b_in.copy_(torch.randn(junk.b_in.shape, generator=gen) * 0.5)
        junk.W_out[:, s["J"]] = torch.randn(junk.W_out[:, s["J"]].shape, generator=gen) * 0.5
        junk.b_out[s["J"]] = torch.randn(junk.b_out[s["J"]].shape, generator=gen) * 0.5
        model.unembed.W_U[s["OUT"]] = LOGIT_SCALE * eye
    model.provenance = {"planted": "interp.discover.planted.planted_lookup", "seed": seed}
    return model.eval()
