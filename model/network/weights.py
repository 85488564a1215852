"""The weights of a MiniGPT as TransformerLens names them, stacked over layers, and the read-only view a cache keeps.

:class:`WeightMethods` (a mixin of :class:`~model.network.minigpt.MiniGPT`) gives ``W_E W_pos W_U b_U`` and the
stacked ``W_Q W_K W_V [layer, head, d_model, d_head]``, ``W_O [layer, head, d_head, d_model]``, ``b_Q b_K b_V
[layer, head, d_head]``, ``b_O [layer, d_model]``, ``W_in [layer, d_model, d_mlp]``, ``W_out [layer, d_mlp,
d_model]``, ``b_in [layer, d_mlp]``, ``b_out [layer, d_model]``, ``QK`` and ``OV`` (factored ``[layer, head,
d_model, d_model]``). As in TransformerLens, a bias the model does not have reads as zeros (``b_U`` of a tied
model, every bias of ``bias=False``); stacked weights are new tensors (``torch.stack``) that keep the gradient.

:class:`CacheWeights` is what ``run_with_cache`` attaches to its cache so that the cache's decomposition methods
(``decompose_resid``, ``stack_head_results``, ``logit_attrs`` ...) work without the cache holding the model: the
config, the tokenizer and *detached views* of the few weights they read (``W_O``, ``b_O``, ``W_out``, ``b_out``,
the final LayerNorm, ``W_U``, ``b_U``). A view shares storage with the parameter (no copy), so it follows later
in-place updates of the weights, and it holds no module, no hook and no gradient.

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> model.W_Q.shape, model.b_U.abs().sum().item(), model.OV.shape
    (torch.Size([2, 4, 64, 16]), 0.0, (2, 4, 64, 64))
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from model.network.config import ModelConfig
from model.network.factored_matrix import FactoredMatrix, composition_scores
from model.network.labels import component_label
from model.network.token_ids import char_id, check_token_ids
from model.network.tokenizer import Tokenizer


def _attn(model: Any, name: str) -> list[Tensor]:
    blocks = model.blocks
    shape = {"b_O": (model.cfg.d_model,)}.get(name, (model.cfg.n_heads, model.cfg.d_head))
    return [getattr(b.attn, name) if getattr(b.attn, name) is not None else model.W_E.new_zeros(shape) for b in blocks]


def _mlp(model: Any, name: str) -> list[Tensor]:
    if model.cfg.attn_only:
        raise ValueError(f"{name} needs MLPs, but this model is attention-only (cfg.attn_only=True)")
    shape = (model.cfg.d_ff,) if name == "b_in" else (model.cfg.d_model,)
    return [
        getattr(b.mlp, name) if getattr(b.mlp, name) is not None else model.W_E.new_zeros(shape) for b in model.blocks
    ]


class WeightMethods:
    """TransformerLens's weight properties (see the module docstring); mixed into MiniGPT."""

    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return self.embed.W_E

    @property
    def W_pos(self) -> Float[Tensor, "pos d_model"] | None:
        return None if self.pos_embed is None else self.pos_embed.W_pos

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        """Unembedding; the transpose of ``W_E`` when tied."""
        # .t(), not .T: the .T property holds the GIL while it locks W_E's autograd mutex, which deadlocks
        # against a thread running a forward with gradients (torch 2.13; see tests/model/test_concurrency.py)
        return self.unembed.W_U  # tied: W_E.T (Unembed reads it so)

    @property
    def b_U(self) -> Float[Tensor, " d_vocab"]:
        """Unembedding bias; zeros when the model has none (tied, or ``bias=False``), as TransformerLens reads it
        (``model.unembed.has_bias`` tells which)."""
        return self.unembed.b_U

    W_Q = property(lambda self: torch.stack([b.attn.W_Q for b in self.blocks]), doc="[layer, head, d_model, d_head]")
    W_K = property(lambda self: torch.stack([b.attn.W_K for b in self.blocks]), doc="[layer, head, d_model, d_head]")
    W_V = property(lambda self: torch.stack([b.attn.W_V for b in self.blocks]), doc="[layer, head, d_model, d_head]")
    W_O = property(lambda self: torch.stack([b.attn.W_O for b in self.blocks]), doc="[layer, head, d_head, d_model]")
    b_Q = property(lambda self: torch.stack(_attn(self, "b_Q")), doc="[layer, head, d_head]; zeros without bias")
    b_K = property(lambda self: torch.stack(_attn(self, "b_K")), doc="[layer, head, d_head]; zeros without bias")
    b_V = property(lambda self: torch.stack(_attn(self, "b_V")), doc="[layer, head, d_head]; zeros without bias")
    b_O = property(lambda self: torch.stack(_attn(self, "b_O")), doc="[layer, d_model]; zeros without bias")
    W_in = property(
        lambda self: torch.stack([b.mlp.W_in for b in self.blocks] if not self.cfg.attn_only else _mlp(self, "W_in")),
        doc="[layer, d_model, d_mlp]",
    )
    W_out = property(
        lambda self: torch.stack([b.mlp.W_out for b in self.blocks] if not self.cfg.attn_only else _mlp(self, "W_out")),
        doc="[layer, d_mlp, d_model]",
    )
    b_in = property(lambda self: torch.stack(_mlp(self, "b_in")), doc="[layer, d_mlp]; zeros without bias")
    b_out = property(lambda self: torch.stack(_mlp(self, "b_out")), doc="[layer, d_model]; zeros without bias")

    @property
    def QK(self) -> FactoredMatrix:
        """``W_Q @ W_K^T`` of every head, factored: ``[layer, head, d_model, d_model]`` (query side on the left)."""
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self) -> FactoredMatrix:
        """``W_V @ W_O`` of every head, factored: ``[layer, head, d_model, d_model]`` (the residual row reads)."""
        return FactoredMatrix(self.W_V, self.W_O)

    def all_composition_scores(self, mode: str) -> Float[Tensor, "layer head layer head"]:
        """TransformerLens's ``all_composition_scores``: how much each head's output feeds each later head's query
        (``mode="Q"``), key (``"K"``) or value (``"V"``), as :func:`~model.network.factored_matrix.composition_scores`;
        0 where the second head is not in a later layer. :func:`interp.weights.composition.composition_scores`
        gives the same as a frame, with a baseline.

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> MiniGPT(ModelConfig(), seed=0).all_composition_scores("K").shape
            torch.Size([2, 4, 2, 4])
        """
        right = {"Q": self.QK, "K": self.QK.T, "V": self.OV}.get(mode)
        if right is None:
            raise ValueError(f"mode must be 'Q', 'K' or 'V' (the composition's reading side), got {mode!r}")
        scores = composition_scores(self.OV, right)
        layers = torch.arange(self.cfg.n_layers, device=scores.device)
        return scores * (layers[:, None, None, None] < layers[None, None, :, None])

    def all_head_labels(self) -> list[str]:
        """``["L0H0", "L0H1", ...]``: every head, layer by layer (TransformerLens's ``all_head_labels``).

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> MiniGPT(ModelConfig(), seed=0).all_head_labels()[:5]
            ['L0H0', 'L0H1', 'L0H2', 'L0H3', 'L1H0']
        """
        layers, heads = range(self.cfg.n_layers), range(self.cfg.n_heads)
        return [component_label("head", layer, head) for layer in layers for head in heads]

    def tokens_to_residual_directions(self, tokens: str | int | Int[Tensor, "..."]) -> Float[Tensor, "... d_model"]:
        """The unembedding direction ``W_U[:, t]`` of each token: ``[d_model]`` for one token (a str, an int or a
        one-element tensor), ``[..., d_model]`` for a tensor of ids, as in TransformerLens.

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> model = MiniGPT(ModelConfig(), seed=0)
            >>> model.tokens_to_residual_directions("a").shape, model.tokens_to_residual_directions(torch.ones(2, 3,
            ...     dtype=torch.long)).shape
            (torch.Size([64]), torch.Size([2, 3, 64]))
        """
        return _residual_directions(self.W_U, self.cfg.d_vocab, self.tokenizer, tokens)

    def accumulated_bias(self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True) -> Tensor:
        """Sum of the output biases (``b_O``, and ``b_out`` unless ``include_mlp_biases=False``) of the blocks below
        ``layer``, plus block ``layer``'s ``b_O`` when ``mlp_input`` (TransformerLens's ``accumulated_bias``).

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> MiniGPT(ModelConfig(), seed=0).accumulated_bias(2).shape
            torch.Size([64])
        """
        return CacheWeights.of(self).accumulated_bias(layer, mlp_input, include_mlp_biases)

    blocks: Any
    embed: Any
    pos_embed: Any
    unembed: Any
    cfg: ModelConfig
    tokenizer: Tokenizer | None


def _residual_directions(W_U: Tensor, d_vocab: int, tokenizer: Tokenizer | None, tokens: Any) -> Tensor:
    if isinstance(tokens, str):
        if tokenizer is None:
            raise ValueError(f"token {tokens!r} is a string but this model has no tokenizer; pass a token id")
        tokens = char_id(tokenizer, tokens)
    if isinstance(tokens, bool) or not isinstance(tokens, int | Tensor):
        raise TypeError(f"tokens must be a str, an int or a tensor of token ids, got {type(tokens).__name__}")
    ids = torch.as_tensor(tokens)
    if ids.numel() == 0:
        raise ValueError("tokens are empty; give at least one token id")
    check_token_ids(ids.reshape(1, -1), d_vocab, ids.numel())
    ids = ids.to(W_U.device)
    if ids.numel() == 1 and not (isinstance(tokens, Tensor) and tokens.ndim > 0 and tokens.numel() > 1):
        return W_U.t().index_select(0, ids.reshape(1))[0]
    return W_U.t().index_select(0, ids.reshape(-1)).reshape(*ids.shape, W_U.shape[0])


@dataclass(frozen=True)
class CacheWeights:
    """The config, tokenizer and detached weight views a cache's decomposition methods read (module docstring)."""

    cfg: ModelConfig
    tokenizer: Tokenizer | None
    W_O: tuple[Tensor, ...]  # per layer [head, d_head, d_model]
    b_O: tuple[Tensor, ...]  # per layer [d_model] (zeros without bias)
    W_out: tuple[Tensor, ...]  # per layer [d_mlp, d_model]; empty when attention-only
    b_out: tuple[Tensor, ...]  # per layer [d_model]
    ln_final: tuple[Tensor, Tensor | None] | None  # (w, b) of the final LayerNorm; None without one
    W_U: Tensor
    b_U: Tensor

    @classmethod
    def of(cls, model: Any) -> CacheWeights:
        """The view of ``model``'s weights (no copy: detached tensors sharing the parameters' storage)."""
        with torch.no_grad():
            zeros = model.W_E.new_zeros(model.cfg.d_model)
            mlps = [] if model.cfg.attn_only else [b.mlp for b in model.blocks]
            W_out = tuple(m.W_out.detach() for m in mlps)
            b_out = tuple(zeros if m.b_out is None else m.b_out.detach() for m in mlps)
            ln = None if model.ln_final is None else (model.ln_final.w.detach(), _detach(model.ln_final.b))
            return cls(
                cfg=model.cfg,
                tokenizer=model.tokenizer,
                W_O=tuple(b.attn.W_O.detach() for b in model.blocks),
                b_O=tuple(zeros if b.attn.b_O is None else b.attn.b_O.detach() for b in model.blocks),
                W_out=W_out,
                b_out=b_out,
                ln_final=ln,
                W_U=model.W_U.detach(),
                b_U=model.b_U.detach(),
            )

    def to(self, device: torch.device) -> CacheWeights:
        """The same view with every tensor on ``device`` (a copy when the device differs)."""
        move = lambda ts: tuple(t.to(device) for t in ts)  # noqa: E731
        ln = None if self.ln_final is None else (self.ln_final[0].to(device), _to(self.ln_final[1], device))
        return replace(
            self,
            W_O=move(self.W_O),
            b_O=move(self.b_O),
            W_out=move(self.W_out),
            b_out=move(self.b_out),
            ln_final=ln,
            W_U=self.W_U.to(device),
            b_U=self.b_U.to(device),
        )

    def tokens_to_residual_directions(self, tokens: str | int | Tensor) -> Tensor:
        return _residual_directions(self.W_U, self.cfg.d_vocab, self.tokenizer, tokens)

    def accumulated_bias(self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True) -> Tensor:
        n = self.cfg.n_layers
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= n:
            raise IndexError(f"layer must be an int in 0..{n} (n_layers counts the whole model), got {layer!r}")
        if mlp_input and layer >= n:
            raise IndexError(f"mlp_input=True needs a block below the top: layer must be < {n}, got {layer}")
        total = torch.zeros_like(self.W_U[:, 0])
        for i in range(layer):
            total = total + self.b_O[i]
            if include_mlp_biases and self.b_out:
                total = total + self.b_out[i]
        return total + self.b_O[layer] if mlp_input else total


def _detach(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach()


def _to(t: Tensor | None, device: torch.device) -> Tensor | None:
    return None if t is None else t.to(device)
