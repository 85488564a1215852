"""MiniGPT: a small GPT whose every activation can be seen, hooked and cached.

Axis names: batch, pos (q_pos, k_pos), d_model, head, d_head, d_mlp, d_vocab, layer
(see :mod:`model.network.layers`).

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

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from model.network.cache import ActivationCache, check_cache_size, check_device, hook_shapes
from model.network.config import ModelConfig
from model.network.hooks import HookFn, HookPoint, NameOrPredicate, build_hooks, hook_context, resolve_names
from model.network.layers import Block, Embed, LayerNorm, PosEmbed, Unembed
from model.network.logits import next_token_loss, sample_tokens
from model.network.token_ids import as_id_tensor, char_id, check_token_ids, prompt_ids, token_labels
from model.network.tokenizer import Tokenizer

RETURN_TYPES = ("logits", "loss", "both", None)
TokensLike = Int[Tensor, "batch pos"] | Int[Tensor, " pos"] | Sequence[int] | str


class MiniGPT(nn.Module):
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

    ``model.hook_names`` lists the ones this config has (rotary adds ``attn.hook_rot_q/k``;
    learned and sinusoidal positions have ``hook_pos_embed``; attention-only blocks have no
    ``hook_resid_mid``/``hook_mlp_out``; only ``norm="pre"`` has ``ln_final``).
    """

    def __init__(
        self, cfg: ModelConfig | None = None, tokenizer: Tokenizer | None = None, *, seed: int | None = None
    ) -> None:
        super().__init__()
        self.cfg = cfg = cfg if cfg is not None else ModelConfig()
        if not isinstance(cfg, ModelConfig):
            raise TypeError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
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

    # ------------------------------------------------------------------ weights
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
        # against a thread running a forward with gradients (torch 2.13; see tests/test_concurrency.py)
        return self.unembed.W_U if "W_U" in self.unembed._parameters else self.embed.W_E.t()

    @property
    def b_U(self) -> Float[Tensor, " d_vocab"] | None:
        return self.unembed.b_U

    @property
    def device(self) -> torch.device:
        return self.embed.W_E.device

    def parameter_inventory(self) -> pd.DataFrame:
        """One row per parameter tensor: ``tensor, shape, count``; ``count`` sums to ``cfg.n_params``."""
        rows = [(name, tuple(p.shape), p.numel()) for name, p in self.named_parameters()]
        return pd.DataFrame(rows, columns=["tensor", "shape", "count"])

    # ------------------------------------------------------------------ tokens
    def to_tokens(self, text: str | Sequence[str], *, unknown: str = "error") -> Int[Tensor, "batch pos"]:
        """``[1, pos]`` token ids of ``text``, ``<bos>`` first; equal-length texts give ``[batch, pos]``.

        Example:
            >>> model = MiniGPT(ModelConfig(), seed=0)
            >>> model.to_tokens("Hi!").tolist(), model.to_str_tokens("Hi!")
            ([[0, 22, 23, 45]], ['<bos>', 'h', 'i', '!'])
        """
        tokenizer = self._require_tokenizer()
        texts = [text] if isinstance(text, str) else text
        if not isinstance(texts, list | tuple) or not all(isinstance(t, str) for t in texts):
            raise TypeError(
                f"to_tokens expects a str or a list of str, got {type(text).__name__}; "
                "token ids need no conversion (model.check_tokens validates them)"
            )
        if not texts:
            raise ValueError("to_tokens got an empty list of texts; give at least one")
        ids = [
            prompt_ids(tokenizer, t, self.cfg.n_ctx, what="the text", unknown=unknown, allow_empty=True) for t in texts
        ]
        if len({len(i) for i in ids}) > 1:
            raise ValueError(
                f"texts encode to different lengths {[len(i) for i in ids]}; pass them one at a time or make them equal"
            )
        return torch.tensor(ids, dtype=torch.long, device=self.device)

    def to_string(self, tokens: Int[Tensor, "... pos"] | Sequence[int]) -> str | list[str]:
        """Text of ``tokens`` (``[pos]`` or ``[1, pos]`` -> str, ``[batch, pos]`` -> list of str)."""
        tokenizer = self._require_tokenizer()
        t = as_id_tensor(tokens)
        if t.ndim > 2:
            raise ValueError(f"to_string takes tokens [pos] or [batch, pos], got shape {tuple(t.shape)}")
        if t.ndim == 2 and t.shape[0] != 1:
            return [tokenizer.decode(row.tolist()) for row in t]
        return tokenizer.decode(t.reshape(-1).tolist())

    def to_str_tokens(self, text_or_tokens: TokensLike) -> list[str]:
        """The string of every token of one sequence (a text gets its ``<bos>`` first); ids as text without a
        tokenizer. This is the one id -> label map of the package: every ``*_str`` column comes from it."""
        tokens = self.check_tokens(text_or_tokens)
        if tokens.shape[0] != 1:
            raise ValueError(f"to_str_tokens takes one sequence, got a batch of {tokens.shape[0]}; pass tokens[i]")
        return token_labels(self.tokenizer, tokens[0].tolist())

    def to_single_token(self, symbol: str) -> int:
        """The id of one symbol: a character (``"a"``) or a special's name (``"<bos>"``)."""
        return char_id(self._require_tokenizer(), symbol)

    def _require_tokenizer(self) -> Tokenizer:
        if self.tokenizer is None:
            raise ValueError(
                f"this model has no tokenizer (d_vocab={self.cfg.d_vocab} is not the 64-symbol character "
                "vocabulary); pass token ids instead of text"
            )
        return self.tokenizer

    def check_tokens(self, tokens: TokensLike) -> Int[Tensor, "batch pos"]:
        """Validate tokens and return them as a ``[batch, pos]`` long tensor on the model's device."""
        if isinstance(tokens, str):
            return self.to_tokens(tokens)
        tokens = check_token_ids(tokens, self.cfg.d_vocab, self.cfg.n_ctx)
        return tokens.to(device=self.device, dtype=torch.long)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        tokens: TokensLike,
        return_type: str | None = "logits",
        *,
        loss_per_token: bool = False,
    ) -> Any:
        """Logits ``[batch, pos, d_vocab]``, the next-token loss, both (a tuple), or None.

        The loss is the mean cross-entropy of predicting ``tokens[:, 1:]``; with
        ``loss_per_token=True`` it is ``[batch, pos - 1]``. The forward does not look for NaN or inf:
        a non-finite weight, or a hook that writes one, propagates to the logits (the analyses in
        :mod:`interp` and :meth:`generate` refuse them, naming the first non-finite parameter).
        """
        if return_type not in RETURN_TYPES:
            raise ValueError(f"return_type={return_type!r} is not one of {list(RETURN_TYPES)}")
        tokens = self.check_tokens(tokens)
        x = self.hook_embed(self.embed(tokens))
        if self.pos_embed is not None:
            x = x + self.hook_pos_embed(self.pos_embed(tokens))
        for block in self.blocks:
            x = block(x)
        if self.ln_final is not None:
            x = self.ln_final(x)
        logits = self.unembed(x)
        if return_type == "logits":
            return logits
        if return_type is None:
            return None
        loss = next_token_loss(logits, tokens, per_token=loss_per_token)
        return loss if return_type == "loss" else (logits, loss)

    # ------------------------------------------------------------------ hooks
    def resolve_hooks(self, fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]]) -> dict[str, tuple[HookFn, ...]]:
        """``{hook name: (fn, ...)}`` for ``[(name_or_predicate, fn)]``; unknown names -> KeyError with suggestions."""
        return build_hooks(fwd_hooks, self.hook_names)

    @contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]] = ()) -> Iterator[MiniGPT]:
        """Hooks active for every forward of *this thread* inside the ``with`` block, and gone after it."""
        with hook_context(self._hook_owner, self.resolve_hooks(fwd_hooks)):
            yield self

    def run_with_hooks(
        self, tokens: TokensLike, fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]] = (), **kwargs: Any
    ) -> Any:
        """``forward(tokens, **kwargs)`` with ``fwd_hooks = [(name_or_predicate, fn), ...]`` active."""
        with self.hooks(fwd_hooks):
            return self(tokens, **kwargs)

    def run_with_cache(
        self,
        tokens: TokensLike,
        names_filter: NameOrPredicate | Iterable[str] | None = None,
        device: str | torch.device | None = None,
        *,
        fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]] = (),
        **kwargs: Any,
    ) -> tuple[Any, ActivationCache]:
        """``(forward output, ActivationCache)``.

        ``names_filter``: None (every hook except ``attn.hook_result``, which is recorded only
        when named), a name, a list of names, or a predicate. ``device`` moves the cache.
        A cache larger than ``model.max_cache_bytes`` (default 4 GiB; set it per model, ``float("inf")``
        turns the guard off) is refused before anything runs, with a ValueError naming the estimate;
        ``model.hook_shapes(batch, pos)`` tells what each activation costs.
        """
        if names_filter is None:
            names = [n for n in self.hook_names if not n.endswith("hook_result")]
        else:
            names = resolve_names(names_filter, self.hook_names)
        tokens = self.check_tokens(tokens)
        shapes, size = self.hook_shapes(*tokens.shape), self.W_E.element_size()
        check_cache_size(shapes, names, size, self.max_cache_bytes, tuple(tokens.shape))  # the memory guard
        store: dict[str, Tensor] = {}
        cache_spec = (frozenset(names), store, None if device is None else check_device(device))
        with hook_context(self._hook_owner, self.resolve_hooks(fwd_hooks), cache_spec):
            out = self(tokens, **kwargs)
        return out, ActivationCache({n: store[n] for n in self.hook_names if n in store})

    def hook_shapes(self, batch: int, pos: int) -> dict[str, tuple[int, ...]]:
        """Shape of every hook's activation for a ``[batch, pos]`` input, without running the model."""
        return hook_shapes(self.cfg, self.hook_names, batch, pos)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate(
        self,
        text_or_tokens: TokensLike,
        max_new_tokens: int = 32,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> str | Int[Tensor, "batch pos"]:
        """Continue a prompt by sampling; ``temperature=0`` is greedy.

        Returns the whole text (prompt + continuation, specials left out) for a str prompt,
        else the token tensor. Beyond ``n_ctx`` tokens the model sees only the last ``n_ctx``.
        """
        is_text = isinstance(text_or_tokens, str)
        tokens = sample_tokens(self._last_logits, self.check_tokens(text_or_tokens), max_new_tokens,
                               temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)  # fmt: skip
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
