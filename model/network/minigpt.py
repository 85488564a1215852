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

from collections.abc import Iterable
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from model.network.cache import ActivationCache, check_cache_size, check_device, hook_shapes
from model.network.config import ModelConfig
from model.network.hook_methods import HookMethods
from model.network.hooks import HookFn, HookPoint, NameOrPredicate, build_hooks, hook_context, resolve_names
from model.network.layers import Block, Embed, LayerNorm, PosEmbed, Unembed
from model.network.logits import next_token_loss, sample_tokens
from model.network.splice import SAESplicing
from model.network.token_methods import TokenMethods, TokensLike
from model.network.tokenizer import Tokenizer
from model.network.weights import CacheWeights, WeightMethods

RETURN_TYPES = ("logits", "loss", "both", None)


class MiniGPT(TokenMethods, WeightMethods, HookMethods, SAESplicing, nn.Module):
    """A hookable decoder-only transformer (see :class:`~model.network.config.ModelConfig`).

    Hook points (shapes in brackets)::

        hook_embed, hook_pos_embed                              [batch, pos, d_model]
        blocks.{l}.hook_resid_pre / hook_attn_out / hook_resid_mid / hook_mlp_out / hook_resid_post
        blocks.{l}.ln1.hook_scale [batch, pos, 1]   blocks.{l}.ln1.hook_normalized [batch, pos, d_model]
        blocks.{l}.attn.hook_q / hook_k / hook_v / hook_z       [batch, pos, head, d_head]
        blocks.{l}.attn.hook_attn_scores / hook_pattern         [batch, head, q_pos, k_pos]
        blocks.{l}.attn.hook_result                             [batch, pos, head, d_model]
        blocks.{l}.ln2.hook_scale / hook_normalized, blocks.{l}.mlp.hook_pre / hook_post [batch, pos, d_mlp]
        ln_final.hook_scale, ln_final.hook_normalized

    ``model.hook_names`` lists the ones this config has (rotary adds ``attn.hook_rot_q/k``; learned and
    sinusoidal positions have ``hook_pos_embed``; attention-only blocks have no ``hook_resid_mid``/``hook_mlp_out``;
    only ``norm="pre"`` has ``ln_final``). ``run_with_saes``/``run_with_cache_with_saes``: :mod:`model.network.splice`.
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
        if tokenizer is None and cfg.d_vocab == len(Tokenizer()):
            tokenizer = Tokenizer()
        if tokenizer is not None and len(tokenizer) != cfg.d_vocab:
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

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_pretrained(cls, name_or_path: str, device: str | torch.device | None = None, step: int | None = None):
        """A shipped checkpoint by name (``"induction-2l"``) or path; ``step``: that snapshot of its run (``Run``).

        Example:
            >>> model = MiniGPT.from_pretrained("induction-2l")
            >>> model.cfg.attn_only, MiniGPT.from_pretrained("induction-2l", step=3000).provenance["steps"]
            (True, 3000)
        """
        from model.storage.runs import load_step

        ckpt = load_step(name_or_path, step)
        model = cls(ckpt.cfg, Tokenizer.from_dict(ckpt.tokenizer) if ckpt.tokenizer else None)
        model.load_state_dict(ckpt.state_dict)
        model.provenance = dict(ckpt.provenance)
        return model.to(device) if device is not None else model

    def save_pretrained(self, path: str, provenance: dict[str, Any] | None = None) -> None:
        """Write ``path`` (``.safetensors``) and the JSON beside it, atomically."""
        from model.storage.checkpoint import save_checkpoint

        tokenizer = self.tokenizer.to_dict() if self.tokenizer is not None else None
        save_checkpoint(path, self.cfg, self.state_dict(), tokenizer, provenance or self.provenance)

    @classmethod
    def from_hf_gpt2(cls, model_or_state_dict: Any, config: Any = None) -> MiniGPT:
        """A MiniGPT with the weights of a HuggingFace GPT-2.

        ``model_or_state_dict``: a ``GPT2LMHeadModel`` / ``GPT2Model``, or a state dict with its ``GPT2Config``.
        """
        from model.storage.hf_gpt2 import hf_gpt2_to_minigpt

        cfg, state = hf_gpt2_to_minigpt(model_or_state_dict, config)
        model = cls(cfg)
        model.load_state_dict(state)
        return model

    def to_hf_gpt2_state_dict(self) -> dict[str, Tensor]:
        """This model's weights in HuggingFace GPT-2 layout (``transformer.h.{l}.attn.c_attn.weight`` ...)."""
        from model.storage.hf_gpt2 import minigpt_to_hf_gpt2

        return minigpt_to_hf_gpt2(self.cfg, self.state_dict())

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
        tokens, mask = self._input(input, prepend_bos, padding_side, attention_mask)
        blocks = self.blocks if stop_at_layer is None else self.blocks[: self._stop_layer(stop_at_layer)]
        positions = None if mask is None else (mask.cumsum(-1) - 1).clamp_min(0)
        x = self.hook_embed(self.embed(tokens))
        if self.pos_embed is not None:
            x = x + self.hook_pos_embed(self.pos_embed(tokens, positions))
        for block in blocks:
            x = block(x) if mask is None else block(x, mask)
        if stop_at_layer is not None:
            return x
        if self.ln_final is not None:
            x = self.ln_final(x)
        logits = self.unembed(x)
        if return_type == "logits":
            return logits
        if return_type is None:
            return None
        loss = next_token_loss(logits, tokens, per_token=loss_per_token, attention_mask=mask)
        return loss if return_type == "loss" else (logits, loss)

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

    # ------------------------------------------------------------------ hooks
    def resolve_hooks(self, fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]]) -> dict[str, tuple[HookFn, ...]]:
        """``{hook name: (fn, ...)}`` for ``[(name_or_predicate, fn)]``; unknown names -> KeyError with suggestions."""
        return build_hooks(fwd_hooks, self.hook_names)

    def run_with_hooks(
        self, input: Any, fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]] = (), **kwargs: Any
    ) -> Any:
        """``forward(input, **kwargs)`` with ``fwd_hooks = [(name_or_predicate, fn), ...]`` active for this call only
        (``bwd_hooks``, ``reset_hooks_end`` and ``clear_contexts`` are TransformerLens's and accepted as such)."""
        hook_args = {k: kwargs.pop(k) for k in ("bwd_hooks", "reset_hooks_end", "clear_contexts") if k in kwargs}
        with self.hooks(fwd_hooks, **hook_args):
            return self(input, **kwargs)

    def run_with_cache(
        self,
        input: Any,
        names_filter: NameOrPredicate | Iterable[str] | None = None,
        device: str | torch.device | None = None,
        *,
        fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]] = (),
        remove_batch_dim: bool = False,
        return_cache_object: bool = True,
        **kwargs: Any,
    ) -> tuple[Any, ActivationCache]:
        """``(forward output, ActivationCache)``.

        ``names_filter``: None (every hook except ``attn.hook_result``, which is recorded only when named or
        after ``set_use_attn_result(True)``), a name, a list of names, or a predicate. ``device`` moves the cache.
        ``remove_batch_dim=True`` (batch 1 only) drops the batch axis, as TransformerLens does: then
        ``cache["pattern", 0][h]`` is head ``h`` (without it, that indexes the batch). ``return_cache_object=False``
        gives a plain dict. Other keywords (``stop_at_layer``, ``attention_mask``, ...) go to :meth:`forward`.
        A cache larger than ``model.max_cache_bytes`` (default 4 GiB; set it per model, ``float("inf")``
        turns the guard off) is refused before anything runs, with a ValueError naming the estimate;
        ``model.hook_shapes(batch, pos)`` tells what each activation costs.
        """
        if names_filter is None:
            names = [n for n in self.hook_names if self.use_attn_result or not n.endswith("hook_result")]
        else:
            names = resolve_names(names_filter, self.hook_names)
        for name in ("remove_batch_dim", "return_cache_object"):
            if not isinstance(locals()[name], bool):
                raise TypeError(f"{name} must be True or False, got {locals()[name]!r}")
        mask = kwargs.pop("attention_mask", None)
        prepend_bos, padding_side = kwargs.pop("prepend_bos", True), kwargs.pop("padding_side", None)
        tokens, mask = self._input(input, prepend_bos, padding_side, mask)
        if remove_batch_dim and tokens.shape[0] != 1:
            raise ValueError(f"remove_batch_dim=True needs a batch of 1, got {tokens.shape[0]} sequences")
        shapes, size = self.hook_shapes(*tokens.shape), self.W_E.element_size()
        check_cache_size(shapes, names, size, self.max_cache_bytes, tuple(tokens.shape))  # the memory guard
        store: dict[str, Tensor] = {}
        cache_spec = (frozenset(names), store, None if device is None else check_device(device))
        with hook_context(self._hook_owner, self.resolve_hooks(fwd_hooks), cache_spec):
            out = self(tokens, attention_mask=mask, **kwargs)
        weights = CacheWeights.of(self)
        cache = ActivationCache({n: store[n] for n in self.hook_names if n in store}, weights)
        cache = cache.to(device) if device is not None else cache
        if remove_batch_dim:
            cache.remove_batch_dim()
        return out, cache if return_cache_object else dict(cache.items())

    def hook_shapes(self, batch: int, pos: int) -> dict[str, tuple[int, ...]]:
        """Shape of every hook's activation for a ``[batch, pos]`` input, without running the model."""
        return hook_shapes(self.cfg, self.hook_names, batch, pos)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate(
        self,
        input: TokensLike = "",
        max_new_tokens: int = 32,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        *,
        stop_at_eos: bool = True,
        eos_token_id: int | None = None,
        do_sample: bool = True,
        verbose: bool = False,
        prepend_bos: bool = True,
    ) -> str | Int[Tensor, "batch pos"]:
        """Continue a prompt by sampling; ``temperature=0`` (or ``do_sample=False``) is greedy.

        Returns the whole text (prompt + continuation, specials left out) for a str prompt,
        else the token tensor. Beyond ``n_ctx`` tokens the model sees only the last ``n_ctx``.
        ``stop_at_eos`` (TransformerLens's default) stops a sequence at ``eos_token_id`` (default the tokenizer's
        ``eos_token_id``, which is ``<bos>``: the character tokenizer has no other end-of-text symbol) and pads it with
        that from then on; ``verbose`` shows a progress bar (off by default here, on in TransformerLens).
        """
        for name, flag in (("stop_at_eos", stop_at_eos), ("do_sample", do_sample), ("verbose", verbose)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        is_text = isinstance(input, str)
        tokens = self.to_tokens(input, prepend_bos) if is_text else self.check_tokens(input)
        stop = None
        if stop_at_eos:
            stop = eos_token_id if eos_token_id is not None else self._bos_id()
            if isinstance(stop, bool) or not isinstance(stop, int) or not 0 <= stop < self.cfg.d_vocab:
                raise ValueError(f"eos_token_id must be a token id in [0, {self.cfg.d_vocab}), got {stop!r}")
        tokens = sample_tokens(
            self._last_logits,
            tokens,
            max_new_tokens,
            temperature=temperature if do_sample else 0,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            stop_token=stop,
            progress=verbose,
        )
        if is_text:
            return self._require_tokenizer().decode(tokens[0].tolist(), skip_special=True)
        return tokens

    def _last_logits(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch d_vocab"]:
        """Logits after the last token, seeing at most ``n_ctx`` tokens (the step :meth:`generate` samples from)."""
        logits = self(tokens[:, -self.cfg.n_ctx :])[:, -1]
        if not bool(torch.isfinite(logits).all()):
            raise self._nonfinite_error("generate cannot sample from NaN/inf logits")
        return logits

    def _nonfinite_error(self, problem: str) -> ValueError:
        """A ValueError for non-finite outputs naming the first non-finite parameter, if any."""
        bad = next((name for name, p in self.named_parameters() if not bool(torch.isfinite(p).all())), None)
        if bad is not None:
            return ValueError(f"{problem}: parameter '{bad}' holds NaN/inf; reload the weights")
        return ValueError(f"{problem}: every parameter is finite, so an active hook or the input wrote NaN/inf")
