"""MiniGPT: a small GPT whose every activation can be seen, hooked and cached.

Axis names: batch, pos (q_pos, k_pos), d_model, head, d_head, d_mlp, d_vocab, layer (see :mod:`model.network.layers`).

Example:
    >>> import torch
    >>> from model import MiniGPT, ModelConfig
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> tokens = model.to_tokens("hello world")
    >>> logits, cache = model.run_with_cache(tokens)
    >>> logits.shape, cache["pattern", 0].shape
    (torch.Size([1, 12, 64]), torch.Size([1, 4, 12, 12]))
    >>> def knock_out_head_0(z, hook):
    ...     z[:, :, 0] = 0.0
    >>> ablated = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_z", knock_out_head_0)])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from model.network.config import ModelConfig
from model.network.generation import GenerationMethods
from model.network.hook_methods import HookMethods
from model.network.hooks import HookPoint
from model.network.layers import STAGES, Block, Embed, LayerNorm, PosEmbed, Unembed
from model.network.loading import LoadingMethods
from model.network.logits import next_token_loss
from model.network.processing import WeightProcessing
from model.network.splice import SAESplicing
from model.network.token_methods import TokenMethods, TokensLike
from model.network.tokenizer import Tokenizer
from model.network.weights import WeightMethods

RETURN_TYPES = ("logits", "loss", "both", None)


class MiniGPT(
    TokenMethods,
    WeightMethods,
    WeightProcessing,
    HookMethods,
    SAESplicing,
    LoadingMethods,
    GenerationMethods,
    nn.Module,
):
    """A hookable decoder-only transformer (see :class:`~model.network.config.ModelConfig`).

    Hook points (shapes in brackets)::

        hook_embed, hook_pos_embed                              [batch, pos, d_model]
        blocks.{l}.hook_resid_pre / hook_attn_out / hook_resid_mid / hook_mlp_out / hook_resid_post
        blocks.{l}.ln1.hook_scale [batch, pos, 1]   blocks.{l}.ln1.hook_normalized [batch, pos, d_model]
        blocks.{l}.attn.hook_q / hook_k / hook_v / hook_z       [batch, pos, head, d_head]
        blocks.{l}.attn.hook_attn_scores / hook_pattern         [batch, head, q_pos, k_pos]
        blocks.{l}.attn.hook_result                             [batch, pos, head, d_model]
        blocks.{l}.hook_attn_in / hook_q_input / hook_k_input / hook_v_input  [batch, pos, head, d_model]
        blocks.{l}.hook_mlp_in                                  [batch, pos, d_model]
        blocks.{l}.ln2.hook_scale / hook_normalized, blocks.{l}.mlp.hook_pre / hook_post [batch, pos, d_mlp]
        ln_final.hook_scale, ln_final.hook_normalized

    ``model.hook_names`` lists the ones this config has (rotary adds ``attn.hook_rot_q/k``; learned and
    sinusoidal positions have ``hook_pos_embed``; attention-only blocks have no ``hook_resid_mid``/``hook_mlp_out``;
    only ``norm="pre"`` has ``ln_final``). ``attn.hook_result``, the per-head inputs and ``hook_mlp_in`` are made only
    when a hook or a cache asks for them. ``run_with_saes``/``run_with_cache_with_saes``: :mod:`model.network.splice`.
    """

    def __init__(
        self, cfg: ModelConfig | None = None, tokenizer: Tokenizer | None = None, *, seed: int | None = None
    ) -> None:
        super().__init__()
        cfg = cfg if cfg is not None else ModelConfig()
        if not isinstance(cfg, ModelConfig):
            raise TypeError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
        self.cfg = cfg = cfg.replace()  # this model's own copy: cfg.device / cfg.dtype follow this model
        self.use_attn_result = False  # set_use_attn_result: the default cache records attn.hook_result too
        self.use_attn_in = self.use_split_qkv_input = self.use_hook_mlp_in = False  # the same, for those inputs
        if tokenizer is None and cfg.d_vocab == len(Tokenizer()):
            tokenizer = Tokenizer()
        # a Hugging Face model's vocabulary may be padded beyond its tokenizer (Pythia's), never the other way
        padded_ok = not isinstance(tokenizer, Tokenizer) and tokenizer is not None and len(tokenizer) < cfg.d_vocab
        if tokenizer is not None and len(tokenizer) != cfg.d_vocab and not padded_ok:
            raise ValueError(f"the tokenizer has {len(tokenizer)} symbols but cfg.d_vocab={cfg.d_vocab}")
        self.tokenizer: Tokenizer | None = tokenizer  # None for vocabularies other than the 64 symbols
        self.provenance: dict[str, Any] = {}  # how a loaded checkpoint was made (see model.checkpoint)
        self.max_cache_bytes: float = 4 * 2**30  # run_with_cache refuses larger caches (memory guard)
        if seed is not None:
            torch.manual_seed(seed)
        self.embed = Embed(cfg)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.pos_embed = PosEmbed(cfg) if cfg.positional != "rotary" else None
        if self.pos_embed is not None:
            self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_final = LayerNorm(cfg) if cfg.norm == "pre" else None
        self.unembed = Unembed(cfg, self.embed)
        self._hook_owner = object()
        self.hook_dict: dict[str, HookPoint] = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name, module.owner = name, self._hook_owner
                self.hook_dict[name] = module
        self.hook_names: list[str] = list(self.hook_dict)

    # ------------------------------------------------------------------ placement
    @property
    def device(self) -> torch.device:
        return self.embed.W_E.device

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> MiniGPT:
        out = super()._apply(fn, *args, **kwargs)  # .to(), .cuda(), .half(): cfg.device and cfg.dtype follow
        self.cfg._place(self.embed.W_E.device, self.embed.W_E.dtype)
        return out

    def parameter_inventory(self) -> pd.DataFrame:
        """One row per parameter tensor: ``tensor, shape, count``; ``count`` sums to ``cfg.n_params``."""
        rows = [(name, tuple(p.shape), p.numel()) for name, p in self.named_parameters()]
        return pd.DataFrame(rows, columns=["tensor", "shape", "count"])

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input: TokensLike | list[str],
        return_type: str | None = "logits",
        loss_per_token: bool = False,
        prepend_bos: bool = True,
        padding_side: str | None = None,
        *,
        attention_mask: Int[Tensor, "batch pos"] | None = None,
        stop_at_layer: int | None = None,
    ) -> Any:
        """Logits ``[batch, pos, d_vocab]``, the next-token loss, both (a tuple), or None.

        The loss is the mean cross-entropy of predicting ``tokens[:, 1:]``; with
        ``loss_per_token=True`` it is ``[batch, pos - 1]``. ``input`` may be ids, a text or a list of texts
        (:meth:`to_tokens` with ``prepend_bos`` and ``padding_side``). ``attention_mask [batch, pos]`` (0 on
        padding) hides the padded keys, counts positions from each sequence's first real token and leaves the
        padding out of the loss; it is made from the tokens when the padding side is ``"left"``, as in
        TransformerLens. ``stop_at_layer=l`` returns the residual stream entering block ``l`` (``blocks[:l]`` run;
        negative counts from the top). The forward does not look for NaN or inf:
        a non-finite weight, or a hook that writes one, propagates to the logits (the analyses in
        :mod:`interp` and :meth:`generate` refuse them, naming the first non-finite parameter).
        """
        if return_type not in RETURN_TYPES:
            raise ValueError(f"return_type={return_type!r} is not one of {list(RETURN_TYPES)}")
        if not isinstance(loss_per_token, bool):
            raise TypeError(f"loss_per_token must be True or False, got {loss_per_token!r}")
        stop = None if stop_at_layer is None else self._stop_layer(stop_at_layer)
        stop = stop if stop is None or stop >= 0 else self.cfg.n_layers + stop
        x, tokens, _, mask = self.input_to_embed(input, prepend_bos, padding_side, attention_mask)
        x = self._blocks_from(x, 0, "resid_pre", None, mask, stop)
        if stop is not None:
            return x
        logits = self.read_out(x)
        if return_type == "logits":
            return logits
        if return_type is None:
            return None
        loss = next_token_loss(logits, tokens, per_token=loss_per_token, attention_mask=mask)
        return loss if return_type == "loss" else (logits, loss)

    # ------------------------------------------------------------------ partial runs
    def input_to_embed(
        self,
        input: TokensLike | list[str],
        prepend_bos: bool = True,
        padding_side: str | None = None,
        attention_mask: Int[Tensor, "batch pos"] | None = None,
    ) -> tuple[Float[Tensor, "batch pos d_model"], Int[Tensor, "batch pos"], None, Tensor | None]:
        """TransformerLens's ``input_to_embed``: ``(residual entering block 0, tokens, None, attention mask or
        None)`` for an input as :meth:`forward` reads it (the third, TransformerLens's shortformer position
        embedding, is never used here).

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> model = MiniGPT(ModelConfig(), seed=0)
            >>> residual, tokens, _, mask = model.input_to_embed(["hi", "hello"], padding_side="left")
            >>> residual.shape, mask.tolist()[0]
            (torch.Size([2, 6, 64]), [0, 0, 0, 1, 1, 1])
        """
        tokens, mask = self._input(input, prepend_bos, padding_side, attention_mask)
        positions = None if mask is None else (mask.cumsum(-1) - 1).clamp_min(0)
        return self._embed(tokens, positions), tokens, None, mask

    def embed_tokens(
        self, tokens: Int[Tensor, "batch pos"], position_ids: Int[Tensor, "batch pos"] | None = None
    ) -> Float[Tensor, "batch pos d_model"]:
        """The residual stream entering block 0: ``hook_embed`` plus ``hook_pos_embed`` (none for rotary).

        ``tokens``: ids (or a text, as :meth:`to_tokens` reads it); ``position_ids`` count positions from each
        sequence's first real token in a padded batch (:meth:`forward` makes them from the attention mask).

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> model = MiniGPT(ModelConfig(), seed=0)
            >>> model.embed_tokens("hi").shape
            torch.Size([1, 3, 64])
        """
        tokens = self.to_tokens(tokens) if isinstance(tokens, str) else self.check_tokens(tokens)
        return self._embed(tokens, position_ids)

    def _embed(self, tokens: Tensor, position_ids: Tensor | None) -> Float[Tensor, "batch pos d_model"]:
        x = self.hook_embed(self.embed(tokens))
        if self.pos_embed is not None:
            x = x + self.hook_pos_embed(self.pos_embed(tokens, position_ids))
        return x

    def forward_from(
        self,
        resid: Float[Tensor, "batch pos d_model"],
        layer: int = 0,
        stage: str = "resid_pre",
        rows: Sequence[int] | Int[Tensor, " rows"] | None = None,
        *,
        columns: Sequence[int] | Int[Tensor, " columns"] | None = None,
    ) -> Float[Tensor, "batch rows d_vocab"]:
        """Logits from the residual state ``resid`` at ``stage`` of block ``layer``: the rest of the network.

        ``stage`` is one of ``resid_pre``, ``attn_sum``, ``resid_mid``, ``mlp_sum``, ``resid_post``
        (:class:`~model.network.layers.Block` says what each holds; ``attn_sum`` and ``mlp_sum`` differ from
        ``resid_mid`` and ``resid_post`` only in a ``norm="post"`` model, where they come before the LayerNorm).
        Hooks fire as in the full forward, from the given state's own hook up. ``rows``: the logits at those
        positions only (the last block then computes those queries alone; its hooks see those rows);
        ``columns``: only those vocabulary entries. Equal to ``model(tokens)`` (to float rounding) when ``resid``
        is that run's state:

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> model = MiniGPT(ModelConfig(), seed=0)
            >>> logits, cache = model.run_with_cache("hello")
            >>> tail = model.forward_from(cache["resid_mid", 1], 1, "resid_mid", rows=[5], columns=[7, 8])
            >>> bool(torch.allclose(tail, logits[:, [5]][..., [7, 8]], atol=1e-6))
            True
        """
        n, pos = self.cfg.n_layers, self._check_resid(resid)
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise TypeError(f"layer must be an int (a block index), got {layer!r} ({type(layer).__name__})")
        if not -n <= layer < n:
            raise IndexError(f"layer {layer} is out of range: the model has {n} layers (valid 0..{n - 1})")
        if stage not in STAGES or (self.cfg.attn_only and stage in ("resid_mid", "mlp_sum")):
            allowed = [s for s in STAGES if not (self.cfg.attn_only and s in ("resid_mid", "mlp_sum"))]
            raise ValueError(f"stage={stage!r} is not a stage of this model's blocks; use one of {allowed}")
        rows = None if rows is None else self._check_ids(rows, pos, "rows", "position")
        columns = None if columns is None else self._check_ids(columns, self.cfg.d_vocab, "columns", "token id")
        return self.read_out(self._blocks_from(resid, layer % n, stage, rows), columns)

    def read_out(
        self, resid: Float[Tensor, "... d_model"], columns: Sequence[int] | Int[Tensor, " columns"] | None = None
    ) -> Float[Tensor, "... d_vocab"]:
        """The final residual (the last ``resid_post``) read out as logits: the final LayerNorm (pre-norm models),
        then the unembedding; ``columns``: only those vocabulary entries. The logit lens reads every layer this way.

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> model = MiniGPT(ModelConfig(), seed=0)
            >>> logits, cache = model.run_with_cache("hi")
            >>> bool(torch.equal(model.read_out(cache["resid_post", 1]), logits))
            True
        """
        if not isinstance(resid, Tensor) or resid.ndim < 1 or resid.shape[-1] != self.cfg.d_model:
            shape = tuple(resid.shape) if isinstance(resid, Tensor) else type(resid).__name__
            raise ValueError(f"resid must be a [..., d_model={self.cfg.d_model}] tensor, got {shape}")
        if columns is not None and not isinstance(columns, Tensor):
            columns = self._check_ids(columns, self.cfg.d_vocab, "columns", "token id")
        x = resid if self.ln_final is None else self.ln_final(resid)
        return self.unembed(x, columns)

    def _blocks_from(
        self,
        x: Tensor,
        layer: int,
        stage: str,
        rows: Tensor | None = None,
        key_mask: Tensor | None = None,
        stop: int | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """The residual after ``blocks[:stop]`` (all) from ``x`` at ``stage`` of ``layer``; checked arguments."""
        last = self.cfg.n_layers - 1 if stop is None else stop - 1
        for index in range(layer, last + 1):
            at = rows if index == last else None
            x = self.blocks[index](x, key_mask, at, stage if index == layer else "resid_pre")
        return x

    def _check_resid(self, resid: object) -> int:
        if not isinstance(resid, Tensor) or resid.ndim != 3 or resid.shape[-1] != self.cfg.d_model:
            shape = tuple(resid.shape) if isinstance(resid, Tensor) else type(resid).__name__
            raise ValueError(f"resid must be a [batch, pos, d_model={self.cfg.d_model}] tensor, got {shape}")
        if not 1 <= resid.shape[1] <= self.cfg.n_ctx:
            raise ValueError(f"resid has {resid.shape[1]} positions; this model takes 1 to n_ctx={self.cfg.n_ctx}")
        return resid.shape[1]

    def _check_ids(self, ids: object, size: int, what: str, unit: str) -> Tensor:
        """``ids`` (ints in ``0 .. size - 1``, distinct) as a long tensor on the model's device."""
        values = ids.tolist() if isinstance(ids, Tensor) else ids
        if isinstance(values, int | str) or not isinstance(values, Sequence | range):
            raise TypeError(f"{what} must be a list of ints, got {type(ids).__name__}")
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < size]
        if bad or not values or len(set(values)) != len(values):
            problem = f"{bad[0]!r} is out of 0..{size - 1}" if bad else "it is empty or lists one twice"
            raise ValueError(f"{what} must be distinct {unit}s in 0..{size - 1}; {problem}")
        return torch.tensor(values, dtype=torch.long, device=self.device)

    def loss_fn(
        self,
        logits: Float[Tensor, "batch pos d_vocab"],
        tokens: Int[Tensor, "batch pos"],
        attention_mask: Int[Tensor, "batch pos"] | None = None,
        per_token: bool = False,
    ) -> Tensor:
        """TransformerLens's ``loss_fn``: next-token cross-entropy, mean or ``[batch, pos - 1]`` with ``per_token``.

        Example:
            >>> model = MiniGPT(ModelConfig(), seed=0)
            >>> tokens = model.to_tokens("hello")
            >>> model.loss_fn(model(tokens), tokens, per_token=True).shape
            torch.Size([1, 5])
        """
        if not isinstance(per_token, bool):
            raise TypeError(f"per_token must be True or False, got {per_token!r}")
        if isinstance(tokens, Tensor) and isinstance(logits, Tensor):
            tokens = tokens.to(logits.device)
        return next_token_loss(logits, tokens, per_token=per_token, attention_mask=attention_mask)
