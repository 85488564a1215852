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
another thread whose forward records a graph with the same parameter (tests/model/test_concurrency.py).
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
        x: Float[Tensor, "batch pos d_model"],
        key_mask: Int[Tensor, "batch pos"] | None = None,
        rows: Int[Tensor, " rows"] | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """``key_mask [batch, k_pos]`` (0 on padding) hides those keys too. ``rows``: compute the queries at those
        positions only (keys and values everywhere); the result is then ``[batch, rows, d_model]``, and the hooks
        from ``hook_attn_scores`` on see those rows only."""
        q, k, v = self.qkv(x)
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

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        pre = self.hook_pre(F.linear(x, self.W_in.t(), self.b_in))
        post = self.hook_post(self.act(pre))
        return F.linear(post, self.W_out.t(), self.b_out)


STAGES = ("resid_pre", "attn_sum", "resid_mid", "mlp_sum", "resid_post")


class Block(nn.Module):
    """One transformer block; with ``norm="pre"``::

    resid_mid  = resid_pre + attn(ln1(resid_pre))      the attention half
    resid_post = resid_mid + mlp(ln2(resid_mid))       the MLP half

    ``norm="post"`` normalises after each addition (``resid_mid = ln1(resid_pre + attn(resid_pre))``);
    ``norm="none"`` has no LayerNorm. Attention-only blocks have no MLP (and so no
    ``hook_resid_mid`` or ``hook_mlp_out``: ``resid_post = resid_pre + attn_out``).

    The pieces are public, so that everything that runs part of the network calls them:
    :meth:`attn_input` / :meth:`mlp_input` (what a sublayer reads: the residual through its LayerNorm, pre-norm
    only), :meth:`attn_write` / :meth:`mlp_write` (what it adds), :meth:`attn_half` / :meth:`mlp_half` (the
    residual after it, with its hooks), and :meth:`forward` from any of the :data:`STAGES` of the block:

    ==============  =================================================================================
    stage           the state given
    ==============  =================================================================================
    ``resid_pre``   the block's input (``hook_resid_pre``)
    ``attn_sum``    ``resid_pre + attn_out``: before ``ln1`` when ``norm="post"``, else ``resid_mid``
    ``resid_mid``   ``hook_resid_mid`` (blocks with an MLP)
    ``mlp_sum``     ``resid_mid + mlp_out``: before ``ln2`` when ``norm="post"``, else ``resid_post``
    ``resid_post``  ``hook_resid_post``
    ==============  =================================================================================

    The hooks fire as in the full forward: the given state's own hook (``hook_resid_pre``, ``hook_resid_mid``,
    ``hook_resid_post``; ``attn_sum`` and ``mlp_sum`` have none) and every hook after it.
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
        self._pre_norm = cfg.norm == "pre"

    def attn_input(self, resid_pre: Float[Tensor, "... pos d_model"]) -> Float[Tensor, "... pos d_model"]:
        """What the attention reads: ``ln1(resid_pre)`` in a pre-norm block, the residual itself otherwise."""
        return self.ln1(resid_pre) if self._pre_norm else resid_pre

    def mlp_input(self, resid_mid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """What the MLP reads: ``ln2(resid_mid)`` in a pre-norm block, the residual itself otherwise."""
        return self.ln2(resid_mid) if self._pre_norm else resid_mid

    def attn_write(
        self, resid_pre: Float[Tensor, "batch pos d_model"], key_mask: Tensor | None = None, rows: Tensor | None = None
    ) -> Float[Tensor, "batch pos d_model"]:
        """``attn_out``: the attention's output from the residual it reads (at ``rows`` only, when given)."""
        return self.attn(self.attn_input(resid_pre), key_mask, rows)

    def mlp_write(self, resid_mid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """``mlp_out``: the MLP's output from the residual it reads."""
        return self.mlp(self.mlp_input(resid_mid))

    def attn_half(
        self, resid_pre: Float[Tensor, "batch pos d_model"], key_mask: Tensor | None = None, rows: Tensor | None = None
    ) -> Float[Tensor, "batch pos d_model"]:
        """``resid_pre -> resid_mid`` (``resid_post`` in an attention-only block), firing the hooks from the
        attention's on (not ``hook_resid_pre``). ``rows``: the queries at those positions only, and the output."""
        attn_out = self.hook_attn_out(self.attn_write(resid_pre, key_mask, rows))
        resid_pre = resid_pre if rows is None else resid_pre.index_select(-2, rows)
        return self._after_attn(resid_pre + attn_out)

    def mlp_half(self, resid_mid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """``resid_mid -> resid_post``, firing the hooks from the MLP's on (not ``hook_resid_mid``); positions are
        independent here, so ``resid_mid`` may hold any of them."""
        if self.mlp is None:
            raise ValueError("this block is attention-only: it has no MLP half")
        return self._after_mlp(resid_mid + self.hook_mlp_out(self.mlp_write(resid_mid)))

    def _after_attn(self, attn_sum: Tensor) -> Tensor:
        x = self.ln1(attn_sum) if self.cfg.norm == "post" else attn_sum
        return self.hook_resid_post(x) if self.mlp is None else self.hook_resid_mid(x)

    def _after_mlp(self, mlp_sum: Tensor) -> Tensor:
        return self.hook_resid_post(self.ln2(mlp_sum) if self.cfg.norm == "post" else mlp_sum)

    def forward(
        self,
        x: Float[Tensor, "batch pos d_model"],
        key_mask: Tensor | None = None,
        rows: Tensor | None = None,
        stage: str = "resid_pre",
    ) -> Float[Tensor, "batch pos d_model"]:
        """``resid_post`` from the state ``x`` at ``stage`` (see the class docstring; a checked stage). ``rows``:
        only those positions come out (the attention computes those queries alone)."""
        if stage == "resid_pre":
            x = self.attn_half(self.hook_resid_pre(x), key_mask, rows)
            if self.mlp is None:
                return x
            return self.mlp_half(x)
        if rows is not None:  # every step from here is position by position
            x = x.index_select(-2, rows)
        if stage == "attn_sum":
            x = self._after_attn(x)
            return x if self.mlp is None else self.mlp_half(x)
        if stage == "resid_mid":
            return self.mlp_half(self.hook_resid_mid(x))
        if stage == "mlp_sum":
            return self._after_mlp(x)
        return self.hook_resid_post(x)


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

    def forward(
        self, x: Float[Tensor, "... d_model"], columns: Int[Tensor, " column"] | None = None
    ) -> Float[Tensor, "... d_vocab"]:
        """Logits; ``columns``: only those vocabulary entries (``[..., column]``), without touching the others."""
        untied = "W_U" in self._parameters
        weight = self.W_U.t() if untied else self._embed[0].W_E  # d_vocab d_model
        if columns is None:
            return F.linear(x, weight, self.b_U)
        # index_select, not weight[columns]: indexing a parameter from Python can deadlock against another thread
        # recording a graph with it (torch 2.13; tests/model/test_concurrency.py)
        bias = None if self.b_U is None else self.b_U.index_select(0, columns)
        return F.linear(x, weight.index_select(0, columns), bias)
