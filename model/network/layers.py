"""The parts of a MiniGPT: embeddings, LayerNorm, MLP, the block and the unembedding.

Attention has a room of its own, :mod:`model.network.attention`.

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

from model.network.attention import Attention
from model.network.config import ModelConfig
from model.network.hooks import HookPoint, any_wanted
from model.network.parameters import normal_weight, zero_bias


class Embed(nn.Module):
    """Token embedding ``W_E [d_vocab, d_model]``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_E = normal_weight(cfg.d_vocab, cfg.d_model, std=cfg.init_std)

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
            self.W_pos = normal_weight(cfg.n_ctx, cfg.d_model, std=cfg.init_std)
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
    The fused kernel runs unless a hook changes the scale or a gradient is wanted at it, so caching the scale
    changes nothing.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.eps = cfg.ln_eps
        self.w = nn.Parameter(torch.ones(cfg.d_model))
        self.b = zero_bias(cfg.d_model) if cfg.bias else None
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
        centred = x - x.mean(-1, keepdim=True)
        if self.hook_scale.grad_wanted():  # the scale on the output's path, so that its gradient reaches the hooks
            hooked = self.hook_scale((centred.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        else:
            hooked = self.hook_scale(scale.clone())
            if torch.equal(hooked, scale):  # the hooks read the scale and left it: the fused result stands
                return self.hook_normalized(out)
        out = centred / hooked * self.w  # a hook changed the scale: apply it exactly
        return self.hook_normalized(out if self.b is None else out + self.b)

    def standardize(self, x: Float[Tensor, "... d_model"]) -> tuple[Tensor, Tensor]:
        """``(xhat, rstd)``: ``x`` centred and divided by its scale (``[..., d_model]``), and ``1 / scale``
        (``[..., 1]``); the output is ``xhat * w + b``."""
        centred = x - x.mean(-1, keepdim=True)
        rstd = (centred.pow(2).mean(-1, keepdim=True) + self.eps).rsqrt()
        return centred * rstd, rstd

    def input_grad(self, grad: Float[Tensor, "... d_model"], x: Float[Tensor, "... d_model"]) -> Tensor:
        """The gradient with respect to the input ``x``, given ``grad`` with respect to the output at ``x``
        (``grad`` may have extra leading axes): ``rstd * (gw - mean(gw) - xhat * mean(gw * xhat))``, ``gw = grad * w``.
        What circuit discovery's attribution takes back through the norm by hand, one input at a time."""
        xhat, rstd = self.standardize(x)
        gw = grad * self.w
        return rstd * (gw - gw.mean(-1, keepdim=True) - xhat * (gw * xhat).mean(-1, keepdim=True))


ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
}


class MLP(nn.Module):
    """``W_out act(W_in x + b_in) + b_out`` with ``W_in [d_model, d_mlp]``, ``W_out [d_mlp, d_model]``, in public
    steps: :meth:`pre` (``hook_pre``), :attr:`act` (``hook_post``) and :meth:`write` (the MLP's output)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_in = normal_weight(cfg.d_model, cfg.d_ff, std=cfg.init_std)
        self.W_out = normal_weight(cfg.d_ff, cfg.d_model, std=cfg.init_std)
        self.b_in = zero_bias(cfg.d_ff) if cfg.bias else None
        self.b_out = zero_bias(cfg.d_model) if cfg.bias else None
        self.act = ACTIVATIONS[cfg.act]
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def pre(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_mlp"]:
        """The neurons' input ``W_in x + b_in``."""
        return F.linear(x, self.W_in.t(), self.b_in)

    def write(self, post: Float[Tensor, "... d_mlp"]) -> Float[Tensor, "... d_model"]:
        """The MLP's output from the neurons' activations: ``W_out post + b_out``."""
        return F.linear(post, self.W_out.t(), self.b_out)

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        return self.write(self.hook_post(self.act(self.hook_pre(self.pre(x)))))


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
        # TransformerLens's optional inputs: the residual copied for every head (attn_in), then for the query, key
        # and value of every head, before ln1; made only when a hook or cache asks for one (:meth:`attn_write`)
        self.hook_attn_in = HookPoint(copies=True)  # [batch, pos, head, d_model]
        self.hook_q_input = HookPoint(copies=True)  # [batch, pos, head, d_model]
        self.hook_k_input = HookPoint(copies=True)  # [batch, pos, head, d_model]
        self.hook_v_input = HookPoint(copies=True)  # [batch, pos, head, d_model]
        self.ln1 = LayerNorm(cfg) if cfg.has_ln else None
        self.attn = Attention(cfg)
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        self.ln2: LayerNorm | None = None
        self.mlp: MLP | None = None
        if not cfg.attn_only:
            self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
            self.hook_mlp_in = HookPoint(copies=True)  # [batch, pos, d_model]: the MLP's input, before ln2
            self.ln2 = LayerNorm(cfg) if cfg.has_ln else None
            self.mlp = MLP(cfg)
            self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]
        self._pre_norm = cfg.norm == "pre"

    def attn_input(self, resid_pre: Float[Tensor, "... pos d_model"]) -> Float[Tensor, "... pos d_model"]:
        """What the attention reads: ``ln1(resid_pre)`` in a pre-norm block, the residual itself otherwise."""
        return self.ln1(resid_pre) if self._pre_norm else resid_pre

    def mlp_input(self, resid_mid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """What the MLP reads: ``ln2(resid_mid)`` in a pre-norm block, the residual itself otherwise (through
        ``hook_mlp_in`` first, whose hook functions edit a copy: the residual itself stays)."""
        mlp_in = self.hook_mlp_in(resid_mid)
        return self.ln2(mlp_in) if self._pre_norm else mlp_in

    def attn_write(
        self, resid_pre: Float[Tensor, "batch pos d_model"], key_mask: Tensor | None = None, rows: Tensor | None = None
    ) -> Float[Tensor, "batch pos d_model"]:
        """``attn_out``: the attention's output from the residual it reads (at ``rows`` only, when given).

        TransformerLens's optional per-head inputs fire here when a hook or cache asks for one: ``hook_attn_in``
        (the residual copied for every head), then ``hook_q_input`` / ``hook_k_input`` / ``hook_v_input`` (from
        it). Where a hook changed one, or a gradient is wanted at one, every head reads its own input through
        ``ln1`` (whose hooks then fire for each of the three, as in TransformerLens); otherwise the fused
        attention runs, so caching them, or hooks that leave them, change no logit."""
        if not any_wanted(self._head_inputs):
            return self.attn(self.attn_input(resid_pre), key_mask, rows)
        base = resid_pre.unsqueeze(-2).expand(*resid_pre.shape[:-1], self.cfg.n_heads, resid_pre.shape[-1])
        attn_in = self.hook_attn_in(base)
        inputs = tuple(hook(attn_in) for hook in self._head_inputs[1:])
        if any(hook.grad_wanted() for hook in self._head_inputs) or not all(torch.equal(x, base) for x in inputs):
            return self.attn(tuple(self.attn_input(x) for x in inputs), key_mask, rows)
        return self.attn(self.attn_input(resid_pre), key_mask, rows)

    @property
    def _head_inputs(self) -> tuple[HookPoint, ...]:
        return self.hook_attn_in, self.hook_q_input, self.hook_k_input, self.hook_v_input

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
    """``logits = x @ W_U + b_U``; with a tied embedding ``W_U`` is ``W_E.T`` (and reads so).

    ``b_U`` is a parameter of an untied model with biases (:attr:`has_bias`); otherwise it reads as zeros, as
    TransformerLens's does (a buffer, in no checkpoint, that the logits never add)."""

    def __init__(self, cfg: ModelConfig, embed: Embed) -> None:
        super().__init__()
        self._embed = [embed]  # a list, so the tied embedding is not registered twice
        if not cfg.tied_embed:
            self.W_U = normal_weight(cfg.d_model, cfg.d_vocab, std=cfg.init_std)
        if not cfg.tied_embed and cfg.bias:
            self.b_U = zero_bias(cfg.d_vocab)
        else:
            self.register_buffer("b_U", torch.zeros(cfg.d_vocab), persistent=False)
        self.tied = cfg.tied_embed

    def __getattr__(self, name: str) -> Tensor:
        if name == "W_U" and self.__dict__.get("tied"):  # reads as the embedding, transposed (as in TL)
            return self._embed[0].W_E.t()
        return super().__getattr__(name)

    @property
    def has_bias(self) -> bool:
        """Whether ``b_U`` is a parameter of the model (untied, with biases), not the zeros it reads as otherwise."""
        return "b_U" in self._parameters

    def forward(
        self, x: Float[Tensor, "... d_model"], columns: Int[Tensor, " column"] | None = None
    ) -> Float[Tensor, "... d_vocab"]:
        """Logits; ``columns``: only those vocabulary entries (``[..., column]``), without touching the others."""
        untied = "W_U" in self._parameters
        weight = self.W_U.t() if untied else self._embed[0].W_E  # d_vocab d_model
        bias = self.b_U if self.has_bias else None
        if columns is None:
            return F.linear(x, weight, bias)
        # index_select, not weight[columns]: indexing a parameter from Python can deadlock against another thread
        # recording a graph with it (torch 2.13; tests/model/test_concurrency.py)
        bias = None if bias is None else bias.index_select(0, columns)
        return F.linear(x, weight.index_select(0, columns), bias)
