"""Sampling a continuation: ``MiniGPT.generate`` (a mixin of :class:`~model.network.minigpt.MiniGPT`).

The sampling distribution itself (temperature, top-k, top-p) is :func:`model.network.logits.sampling_probs`.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from model.network.logits import sample_tokens
from model.network.token_methods import TokensLike


class GenerationMethods:
    """``generate`` and the checks of its logits."""

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
        use_past_kv_cache: bool = True,
        return_type: str = "input",
    ) -> str | list[str] | Int[Tensor, "batch pos"]:
        """Continue a prompt by sampling; ``temperature=0`` (or ``do_sample=False``) is greedy.

        Returns the whole text (prompt + continuation, specials left out) for a str prompt,
        else the token tensor. Beyond ``n_ctx`` tokens the model sees only the last ``n_ctx``.
        ``stop_at_eos`` (TransformerLens's default) stops a sequence at ``eos_token_id`` (default the tokenizer's
        ``eos_token_id``, which is ``<bos>``: the character tokenizer has no other end-of-text symbol) and pads it with
        that from then on; ``verbose`` shows a progress bar (off by default here, on in TransformerLens).
        ``return_type`` is TransformerLens's: ``"input"`` (the kind given), ``"str"`` or ``"tokens"``.
        ``use_past_kv_cache`` is accepted and changes nothing (each step runs the window again: the same tokens).
        """
        if return_type not in ("input", "str", "tokens"):
            raise ValueError(f"return_type must be 'input', 'str' or 'tokens', got {return_type!r}")
        if not isinstance(use_past_kv_cache, bool):
            raise TypeError(f"use_past_kv_cache must be True or False, got {use_past_kv_cache!r}")
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
        if return_type == "str" or (return_type == "input" and is_text):
            texts = [self._require_tokenizer().decode(row.tolist(), skip_special=True) for row in tokens]
            return texts[0] if len(texts) == 1 else texts
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
