"""Causal multi-head attention, in public steps, and rotary position embeddings.

Axis names as in :mod:`model.network.layers` (``q_pos``, ``k_pos`` for the two sides of a pattern). Parameters are
sliced with ``.narrow()`` / ``index_select`` and transposed with ``.t()``, never ``[...]`` or ``.T`` (see
:mod:`model.network.layers` on the torch 2.13 deadlock).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from model.network.config import ModelConfig
from model.network.hooks import HookPoint
from model.network.parameters import normal_weight, zero_bias


def rotary_tables(cfg: ModelConfig) -> tuple[Tensor, Tensor]:
    """cos and sin tables ``[n_ctx, d_head]`` for rotary embeddings (rotate-half layout)."""
    inv_freq = cfg.rotary_base ** (-torch.arange(0, cfg.d_head, 2, dtype=torch.float32) / cfg.d_head)
    angles = torch.arange(cfg.n_ctx, dtype=torch.float32)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


class Attention(nn.Module):
    """Causal multi-head attention, in four public steps that :meth:`forward` chains with a hook after each.

    Weights: ``W_Q, W_K, W_V [head, d_model, d_head]``, ``W_O [head, d_head, d_model]``, biases
    ``b_Q, b_K, b_V [head, d_head]`` and ``b_O [d_model]``.

    ==================  ====================================================  ==============================
    step                computes                                              hook
    ==================  ====================================================  ==============================
    :meth:`qkv`         ``x W_Q + b_Q`` (``k``, ``v`` alike); rotary then     ``hook_q/k/v``, ``hook_rot_q/k``
                        turns ``q`` and ``k`` (:meth:`rotate`)
    :meth:`scores`      ``q . k / sqrt(d_head)``, future keys ``-inf``        ``hook_attn_scores``
    :meth:`pattern`     softmax over the keys                                 ``hook_pattern``
    :meth:`mix`         ``z = pattern @ v``                                   ``hook_z``
    :meth:`write`       ``z W_O + b_O`` (per head without ``b_O`` when asked) ``hook_result`` (per head)
    ==================  ====================================================  ==============================

    The steps take any leading axes, so a caller that runs many variants of one input stacks them in the batch.
    Two more entry points serve such callers: :meth:`qkv_split` (every head reads its own input, TransformerLens's
    split q/k/v input) and :meth:`head_project` / :meth:`head_write` (variant ``i`` through head ``heads[i]``
    alone). Each head's write ``hook_result`` is computed in :meth:`forward` only when a hook or a cache asks for
    it; otherwise ``z`` meets ``W_O`` in one matmul.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        h, d, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.cfg = cfg
        self.W_Q = normal_weight(h, d, dh, std=cfg.init_std)
        self.W_K = normal_weight(h, d, dh, std=cfg.init_std)
        self.W_V = normal_weight(h, d, dh, std=cfg.init_std)
        self.W_O = normal_weight(h, dh, d, std=cfg.init_std)
        if cfg.bias:
            self.b_Q, self.b_K, self.b_V = zero_bias(h, dh), zero_bias(h, dh), zero_bias(h, dh)
            self.b_O = zero_bias(d)
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

    # ------------------------------------------------------------------ the steps
    def qkv(self, x: Float[Tensor, "... pos d_model"]) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v ``[..., pos, head, d_head]`` in one matmul against the stacked weights (no rotary)."""
        weight, bias = self.stacked_qkv_weights()
        qkv = F.linear(x, weight, bias).unflatten(-1, (3, self.cfg.n_heads, self.cfg.d_head))
        return qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]

    def qkv_split(
        self, q_in: Float[Tensor, "... pos head d_model"], k_in: Tensor, v_in: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v ``[..., pos, head, d_head]`` when every head reads its own input (no rotary)."""
        out = []
        for x, W, b in ((q_in, self.W_Q, self.b_Q), (k_in, self.W_K, self.b_K), (v_in, self.W_V, self.b_V)):
            y = torch.einsum("...hd,hde->...he", x, W)
            out.append(y if b is None else y + b)
        return out[0], out[1], out[2]

    def head_project(
        self, x: Float[Tensor, "variant ... d_model"], slots: Int[Tensor, " variant"], heads: Int[Tensor, " variant"]
    ) -> Float[Tensor, "variant ... d_head"]:
        """Variant ``i`` of ``x`` through head ``heads[i]``'s query, key or value weights (``slots[i]`` = 0, 1, 2)."""
        weight, bias = self.stacked_qkv_weights()  # [(slot head d_head), d_model]
        index = slots * self.cfg.n_heads + heads
        weight = weight.view(3 * self.cfg.n_heads, self.cfg.d_head, -1).index_select(0, index)  # variant d_head d
        out = torch.einsum("v...d,ved->v...e", x, weight)
        if bias is None:
            return out
        bias = bias.view(3 * self.cfg.n_heads, -1).index_select(0, index)
        return out + bias.view(len(index), *([1] * (x.ndim - 2)), -1)

    def rotate(self, x: Float[Tensor, "... pos head d_head"]) -> Float[Tensor, "... pos head d_head"]:
        """Rotary embedding of q or k at positions ``0 .. pos - 1`` (rotate-half layout)."""
        pos = x.shape[-3]
        cos, sin = self.rot_cos[:pos, None, :], self.rot_sin[:pos, None, :]
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def scores(
        self,
        q: Float[Tensor, "batch q_pos head d_head"],
        k: Float[Tensor, "batch k_pos head d_head"],
        rows: Int[Tensor, " q_pos"] | None = None,
        key_mask: Int[Tensor, "batch k_pos"] | None = None,
    ) -> Float[Tensor, "batch head q_pos k_pos"]:
        """``q . k / sqrt(d_head)`` with future keys at ``-inf`` (and padded keys, ``key_mask`` 0). ``rows``: the
        positions of ``q``'s queries when it holds only some (all, in order, when None)."""
        batch, n_q, heads, _ = q.shape
        n_k = k.shape[1]
        mask = self.mask[:n_k, :n_k] if rows is None else self.mask.index_select(0, rows)[:, :n_k]
        # scores = q . k / sqrt(d_head) + mask (0 on and below the diagonal, -inf above), in one kernel
        scores = torch.baddbmm(
            mask, q.transpose(1, 2).flatten(0, 1), k.transpose(1, 2).flatten(0, 1).transpose(1, 2), alpha=self.scale
        ).view(batch, heads, n_q, n_k)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask.bool()[:, None, None, :], float("-inf"))
        return scores

    def pattern(
        self, scores: Float[Tensor, "batch head q_pos k_pos"], key_mask: Tensor | None = None
    ) -> Float[Tensor, "batch head q_pos k_pos"]:
        """Softmax over the keys; with ``key_mask``, a row with no key left attends to nothing (0), as in TL."""
        pattern = scores.softmax(dim=-1)
        return pattern if key_mask is None else pattern.nan_to_num(0.0)

    def mix(
        self, pattern: Float[Tensor, "batch head q_pos k_pos"], v: Float[Tensor, "batch k_pos head d_head"]
    ) -> Float[Tensor, "batch q_pos head d_head"]:
        """``z``: each query's pattern-weighted sum of the values."""
        return (pattern @ v.transpose(1, 2)).transpose(1, 2)

    def write(
        self, z: Float[Tensor, "... pos head d_head"], per_head: bool = False
    ) -> Float[Tensor, "... pos d_model"] | Float[Tensor, "... pos head d_model"]:
        """``z W_O + b_O`` summed over the heads; ``per_head=True``: each head's ``z_h W_O[h]`` (no ``b_O``)."""
        if per_head:
            return torch.einsum("...he,hed->...hd", z, self.W_O)
        return F.linear(z.flatten(-2), self.W_O.flatten(0, 1).t(), self.b_O)

    def head_write(
        self, z: Float[Tensor, "variant ... d_head"], heads: Int[Tensor, " variant"]
    ) -> Float[Tensor, "variant ... d_model"]:
        """Variant ``i`` of ``z`` through head ``heads[i]``'s ``W_O`` (no ``b_O``)."""
        return torch.einsum("v...e,ved->v...d", z, self.W_O.index_select(0, heads))

    def forward(
        self,
        x: Float[Tensor, "batch pos d_model"] | tuple[Tensor, Tensor, Tensor],
        key_mask: Int[Tensor, "batch pos"] | None = None,
        rows: Int[Tensor, " rows"] | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """``key_mask [batch, k_pos]`` (0 on padding) hides those keys too. ``rows``: compute the queries at those
        positions only (keys and values everywhere); the result is then ``[batch, rows, d_model]``, and the hooks
        from ``hook_attn_scores`` on see those rows only. ``x`` may be three per-head inputs ``[batch, pos, head,
        d_model]`` (query, key, value: :meth:`qkv_split`)."""
        q, k, v = self.qkv_split(*x) if isinstance(x, tuple) else self.qkv(x)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        if self.cfg.positional == "rotary":
            q, k = self.hook_rot_q(self.rotate(q)), self.hook_rot_k(self.rotate(k))
        if rows is not None:
            q = q.index_select(1, rows)
        pattern = self.hook_pattern(self.pattern(self.hook_attn_scores(self.scores(q, k, rows, key_mask)), key_mask))
        z = self.hook_z(self.mix(pattern, v))
        if self.hook_result.is_hooked():  # a hook may edit one head's write: sum the (hooked) heads
            out = self.hook_result(self.write(z, per_head=True)).sum(dim=-2)
            return out if self.b_O is None else out + self.b_O
        if self.hook_result.is_active():  # only cached: the fused output below stands, bit-identical
            self.hook_result(self.write(z, per_head=True))
        return self.write(z)
