"""The parts of a MiniGPT: embeddings, LayerNorm, attention, MLP and the block.

Axis names (used in every shape comment and jaxtyping signature of the package):
    batch   sequences in a batch            pos     token positions (q_pos, k_pos in attention)
    d_model residual-stream width           head    attention heads, d_head the width of one
    d_mlp   MLP hidden width (cfg.d_ff)     d_vocab vocabulary size          layer   block index

Every activation passes through a :class:`~model.network.hooks.HookPoint` named after its module path.
The arithmetic on the hot path uses plain ``F.linear``/``matmul`` on flattened weights (no
einsum parsing) so that hook points nobody asked for cost nothing.

Parameters are transposed with ``.t()`` and sliced with ``.narrow()``, never ``.T`` or ``[...]``: with
torch 2.13 those two hold the GIL while they take the parameter's autograd lock, and deadlock against
another thread whose forward records a graph with the same parameter (tests/test_concurrency.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from model.network.config import ModelConfig
from model.network.hooks import HookPoint


def _weight(*shape: int, std: float) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape) * std)


def _zeros(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.zeros(*shape))


class Embed(nn.Module):
    """Token embedding ``W_E [d_vocab, d_model]``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_E = _weight(cfg.d_vocab, cfg.d_model, std=cfg.init_std)

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        return F.embedding(tokens, self.W_E)


def sinusoidal_table(n_ctx: int, d_model: int) -> Float[Tensor, "pos d_model"]:
    """The fixed sin/cos position table of Vaswani et al. (2017)."""
    pos = torch.arange(n_ctx, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10_000.0) / d_model))
    table = torch.zeros(n_ctx, d_model)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    return table


class PosEmbed(nn.Module):
    """Position embedding ``W_pos [n_ctx, d_model]``: learned, or a fixed sinusoidal buffer."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.positional == "learned":
            self.W_pos = _weight(cfg.n_ctx, cfg.d_model, std=cfg.init_std)
        else:
            self.register_buffer("W_pos", sinusoidal_table(cfg.n_ctx, cfg.d_model), persistent=False)

    def forward(
        self, tokens: Int[Tensor, "batch pos"], position_ids: Int[Tensor, "batch pos"] | None = None
    ) -> Float[Tensor, "batch pos d_model"]:
        batch, pos = tokens.shape
        if position_ids is not None:  # padded batches: positions counted from each sequence's first real token
            return F.embedding(position_ids, self.W_pos)
        return self.W_pos.narrow(0, 0, pos).expand(batch, pos, -1)


class LayerNorm(nn.Module):
    """LayerNorm with hooks on the scale ``[batch, pos, 1]`` and the output ``[batch, pos, d_model]``.

    ``scale = sqrt(mean((x - mean x)^2) + eps)``; output ``(x - mean x) / scale * w + b``.
    The fused kernel runs unless a hook changes the scale, so caching the scale changes nothing.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.eps = cfg.ln_eps
        self.w = nn.Parameter(torch.ones(cfg.d_model))
        self.b = _zeros(cfg.d_model) if cfg.bias else None
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        if not self.hook_scale.is_active():
            return self.hook_normalized(F.layer_norm(x, self.w.shape, self.w, self.b, self.eps))
        out, _, rstd = torch.native_layer_norm(x, self.w.shape, self.w, self.b, self.eps)
        scale = rstd.reciprocal()
        if not self.hook_scale.is_hooked():  # only cached: the fused result stands
            self.hook_scale(scale)
            return self.hook_normalized(out)
        hooked = self.hook_scale(scale.clone())
        if not torch.equal(hooked, scale):  # a hook changed the scale: apply it exactly
            out = (x - x.mean(-1, keepdim=True)) / hooked * self.w
            out = out if self.b is None else out + self.b
        return self.hook_normalized(out)


def rotary_tables(cfg: ModelConfig) -> tuple[Tensor, Tensor]:
    """cos and sin tables ``[n_ctx, d_head]`` for rotary embeddings (rotate-half layout)."""
    inv_freq = cfg.rotary_base ** (-torch.arange(0, cfg.d_head, 2, dtype=torch.float32) / cfg.d_head)
    angles = torch.arange(cfg.n_ctx, dtype=torch.float32)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


class Attention(nn.Module):
    """Causal multi-head attention.

    Weights: ``W_Q, W_K, W_V [head, d_model, d_head]``, ``W_O [head, d_head, d_model]``, biases
    ``b_Q, b_K, b_V [head, d_head]`` and ``b_O [d_model]``. Scores are ``q . k / sqrt(d_head)``
    with future keys set to ``-inf``. Each head's write ``hook_result [batch, pos, head, d_model]``
    is computed only when a hook or a cache asks for it; otherwise ``z`` meets ``W_O`` in one matmul.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        h, d, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.cfg = cfg
        self.W_Q = _weight(h, d, dh, std=cfg.init_std)
        self.W_K = _weight(h, d, dh, std=cfg.init_std)
        self.W_V = _weight(h, d, dh, std=cfg.init_std)
        self.W_O = _weight(h, dh, d, std=cfg.init_std)
        if cfg.bias:
            self.b_Q, self.b_K, self.b_V = _zeros(h, dh), _zeros(h, dh), _zeros(h, dh)
            self.b_O = _zeros(d)
        else:
            self.b_Q = self.b_K = self.b_V = self.b_O = None
        future = torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool).triu(1)
        self.register_buffer(
            "mask", torch.zeros(cfg.n_ctx, cfg.n_ctx).masked_fill(future, float("-inf")), persistent=False
        )
        self.scale = 1 / math.sqrt(cfg.d_head)
        self._qkv_cache: tuple | None = None  # (weight versions, stacked W_QKV, stacked b_QKV); see stacked_qkv_weights
        self.hook_q = HookPoint()  # [batch, pos, head, d_head]
        self.hook_k = HookPoint()  # [batch, pos, head, d_head]
        self.hook_v = HookPoint()  # [batch, pos, head, d_head]
        if cfg.positional == "rotary":
            cos, sin = rotary_tables(cfg)
            self.register_buffer("rot_cos", cos, persistent=False)
            self.register_buffer("rot_sin", sin, persistent=False)
            self.hook_rot_q = HookPoint()  # [batch, pos, head, d_head]
            self.hook_rot_k = HookPoint()  # [batch, pos, head, d_head]
        self.hook_attn_scores = HookPoint()  # [batch, head, q_pos, k_pos]
        self.hook_pattern = HookPoint()  # [batch, head, q_pos, k_pos]
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]
        self.hook_result = HookPoint()  # [batch, pos, head, d_model]

    def stacked_qkv_weights(self) -> tuple[Float[Tensor, "qkv d_model"], Float[Tensor, " qkv"] | None]:
        """``W_Q, W_K, W_V`` stacked as one ``[3 * head * d_head, d_model]`` matrix (and the biases).

        With gradients off the stack is kept and rebuilt only when a weight changes (a new tensor or
        an in-place update bumps its version), so inference pays no copy per call; with gradients on
        it is built each call so that autograd reaches the three parameters. Same values either way.
        """
        params = (self.W_Q, self.W_K, self.W_V, self.b_Q, self.b_K, self.b_V)
        if torch.is_grad_enabled() and self.W_Q.requires_grad:
            return self._stack_qkv()
        key = tuple((p.data_ptr(), p._version) for p in params if p is not None)
        cached = self._qkv_cache
        if cached is None or cached[0] != key:
            # normal tensors even when built under inference mode: a later call with gradients may save them
            with torch.inference_mode(False), torch.no_grad():
                cached = self._qkv_cache = (key, *self._stack_qkv())
        return cached[1], cached[2]

    def _stack_qkv(self) -> tuple[Tensor, Tensor | None]:
        h, d, dh = self.cfg.n_heads, self.cfg.d_model, self.cfg.d_head
        weight = torch.cat([self.W_Q, self.W_K, self.W_V]).transpose(1, 2).reshape(3 * h * dh, d)
        bias = None if self.b_Q is None else torch.cat([self.b_Q, self.b_K, self.b_V]).view(-1)
        return weight, bias

    def qkv(self, x: Float[Tensor, "batch pos d_model"]) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v ``[batch, pos, head, d_head]`` in one matmul against the stacked weights."""
        weight, bias = self.stacked_qkv_weights()
        qkv = F.linear(x, weight, bias).unflatten(-1, (3, self.cfg.n_heads, self.cfg.d_head))
        return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]

    def rotate(self, x: Float[Tensor, "batch pos head d_head"]) -> Float[Tensor, "batch pos head d_head"]:
        pos = x.shape[1]
        cos, sin = self.rot_cos[:pos, None, :], self.rot_sin[:pos, None, :]
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def forward(
        self, x: Float[Tensor, "batch pos d_model"], key_mask: Tensor | None = None
    ) -> Float[Tensor, "batch pos d_model"]:
        """``key_mask [batch, k_pos]`` (0 on padding) hides those keys too; a row with no key left attends to
        nothing (its pattern is 0), as in TransformerLens."""
        batch, pos, _ = x.shape
        q, k, v = self.qkv(x)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        if self.cfg.positional == "rotary":
            q, k = self.hook_rot_q(self.rotate(q)), self.hook_rot_k(self.rotate(k))
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # batch head pos d_head
        # scores = q . k / sqrt(d_head) + mask (0 on and below the diagonal, -inf above), in one kernel
        scores = torch.baddbmm(
            self.mask[:pos, :pos], q.flatten(0, 1), k.flatten(0, 1).transpose(1, 2), alpha=self.scale
        )
        scores = scores.view(batch, -1, pos, pos)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask.bool()[:, None, None, :], float("-inf"))
        scores = self.hook_attn_scores(scores)
        pattern = scores.softmax(dim=-1)
        pattern = self.hook_pattern(pattern if key_mask is None else pattern.nan_to_num(0.0))
        z = self.hook_z((pattern @ v).transpose(1, 2))  # batch pos head d_head
        if self.hook_result.is_hooked():  # a hook may edit one head's write: sum the (hooked) heads
            out = self.hook_result(torch.einsum("bphe,hed->bphd", z, self.W_O)).sum(dim=2)
            return out if self.b_O is None else out + self.b_O
        if self.hook_result.is_active():  # only cached: the fused output below stands, bit-identical
            self.hook_result(torch.einsum("bphe,hed->bphd", z, self.W_O))
        return F.linear(z.reshape(batch, pos, -1), self.W_O.flatten(0, 1).t(), self.b_O)


ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
}


class MLP(nn.Module):
    """``W_out act(W_in x + b_in) + b_out`` with ``W_in [d_model, d_mlp]``, ``W_out [d_mlp, d_model]``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_in = _weight(cfg.d_model, cfg.d_ff, std=cfg.init_std)
        self.W_out = _weight(cfg.d_ff, cfg.d_model, std=cfg.init_std)
        self.b_in = _zeros(cfg.d_ff) if cfg.bias else None
        self.b_out = _zeros(cfg.d_model) if cfg.bias else None
        self.act = ACTIVATIONS[cfg.act]
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        pre = self.hook_pre(F.linear(x, self.W_in.t(), self.b_in))
        post = self.hook_post(self.act(pre))
        return F.linear(post, self.W_out.t(), self.b_out)


class Block(nn.Module):
    """One transformer block; with ``norm="pre"``::

    resid_mid  = resid_pre + attn(ln1(resid_pre))
    resid_post = resid_mid + mlp(ln2(resid_mid))

    ``norm="post"`` normalises after each addition (``resid_mid = ln1(resid_pre + attn(resid_pre))``);
    ``norm="none"`` has no LayerNorm. Attention-only blocks have no MLP (and so no
    ``hook_resid_mid`` or ``hook_mlp_out``: ``resid_post = resid_pre + attn_out``).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # registered in forward order, so model.hook_names and caches list activations as they happen
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.ln1 = LayerNorm(cfg) if cfg.has_ln else None
        self.attn = Attention(cfg)
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        self.ln2: LayerNorm | None = None
        self.mlp: MLP | None = None
        if not cfg.attn_only:
            self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
            self.ln2 = LayerNorm(cfg) if cfg.has_ln else None
            self.mlp = MLP(cfg)
            self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]

    def forward(
        self, resid_pre: Float[Tensor, "batch pos d_model"], key_mask: Tensor | None = None
    ) -> Float[Tensor, "batch pos d_model"]:
        resid_pre = self.hook_resid_pre(resid_pre)
        post_norm = self.cfg.norm == "post"
        attn_in = resid_pre if self.ln1 is None or post_norm else self.ln1(resid_pre)
        resid_mid = resid_pre + self.hook_attn_out(self.attn(attn_in, key_mask))
        if post_norm:
            resid_mid = self.ln1(resid_mid)
        if self.mlp is None:
            return self.hook_resid_post(resid_mid)
        resid_mid = self.hook_resid_mid(resid_mid)
        mlp_in = resid_mid if self.ln2 is None or post_norm else self.ln2(resid_mid)
        resid_post = resid_mid + self.hook_mlp_out(self.mlp(mlp_in))
        if post_norm:
            resid_post = self.ln2(resid_post)
        return self.hook_resid_post(resid_post)


class Unembed(nn.Module):
    """``logits = x @ W_U + b_U``; with a tied embedding ``W_U`` is ``W_E.T`` and there is no ``b_U``."""

    def __init__(self, cfg: ModelConfig, embed: Embed) -> None:
        super().__init__()
        self._embed = [embed]  # a list, so the tied embedding is not registered twice
        if not cfg.tied_embed:
            self.W_U = nn.Parameter(torch.randn(cfg.d_model, cfg.d_vocab) * cfg.init_std)
            self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab)) if cfg.bias else None
        else:
            self.b_U = None

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_vocab"]:
        if "W_U" in self._parameters:
            return F.linear(x, self.W_U.t(), self.b_U)
        return F.linear(x, self._embed[0].W_E)
