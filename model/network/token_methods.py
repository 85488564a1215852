"""The token methods of a MiniGPT: text to ids and back, with TransformerLens's names and arguments.

:class:`TokenMethods` is a mixin of :class:`~model.network.minigpt.MiniGPT` (the model file stays one concept).
What TransformerLens does, and so what these do:

- ``to_tokens(text, prepend_bos=True, padding_side=None)``: ``<bos>`` first unless ``prepend_bos=False``; a list of
  texts of unequal lengths is padded with ``<pad>`` on ``padding_side`` (default ``model.tokenizer.padding_side``,
  ``"right"``). Pass the mask of :meth:`TokenMethods.attention_mask` (or the texts themselves with
  ``padding_side="left"``) to the forward so that padding is not attended to, as in TransformerLens.
- ``to_str_tokens`` maps a list of texts to a list of lists; ``to_single_token``; ``get_token_position``.
- :meth:`TokenMethods.random_tokens`: random ids that leave out the three specials by default (``torch.randint(0,
  d_vocab, ...)`` draws ``<bos>``, ``<pad>`` and ``<unk>`` too, and silently changes every loss measured on them).

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> model.to_tokens(["ab", "abcd"]).tolist()
    [[0, 15, 16, 1, 1], [0, 15, 16, 17, 18]]
    >>> model.to_tokens("ab", prepend_bos=False).tolist(), model.get_token_position("b", "abab", mode="last")
    ([[15, 16]], 4)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from model.network.token_ids import as_id_tensor, char_id, check_token_ids, prompt_ids, token_labels
from model.network.tokenizer import Tokenizer

TokensLike = Int[Tensor, "batch pos"] | Int[Tensor, " pos"] | Sequence[int] | str
PADDING_SIDES = ("left", "right")


class TokenMethods:
    """Text <-> token ids for a model with ``cfg``, ``tokenizer`` and ``device`` (mixed into MiniGPT)."""

    def to_tokens(
        self,
        input: str | Sequence[str],
        prepend_bos: bool = True,
        padding_side: str | None = None,
        move_to_device: bool = True,
        truncate: bool = True,
        *,
        unknown: str = "error",
    ) -> Int[Tensor, "batch pos"]:
        """``[1, pos]`` token ids of a text, ``<bos>`` first unless ``prepend_bos=False``; a list of texts gives
        ``[batch, pos]``, the shorter ones padded with ``<pad>`` on ``padding_side`` (default
        ``model.tokenizer.padding_side``). ``truncate`` is accepted for TransformerLens code; a text longer than
        ``n_ctx`` is refused either way (the message says by how much).

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> model = MiniGPT(ModelConfig(), seed=0)
            >>> model.to_tokens("Hi!").tolist(), model.to_str_tokens("Hi!")
            ([[0, 22, 23, 45]], ['<bos>', 'h', 'i', '!'])
        """
        tokenizer = self._require_tokenizer()
        texts = [input] if isinstance(input, str) else input
        if not isinstance(texts, list | tuple) or not all(isinstance(t, str) for t in texts):
            raise TypeError(
                f"to_tokens expects a str or a list of str, got {type(input).__name__}; "
                "token ids need no conversion (model.check_tokens validates them)"
            )
        if not texts:
            raise ValueError("to_tokens got an empty list of texts; give at least one")
        for name, flag in (("prepend_bos", prepend_bos), ("move_to_device", move_to_device), ("truncate", truncate)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        side = self._padding_side(padding_side)
        ids = [self._text_ids(tokenizer, t, prepend_bos, unknown) for t in texts]
        width = max(len(i) for i in ids)
        pad = [tokenizer.pad_id]
        rows = [(pad * (width - len(i)) + i) if side == "left" else (i + pad * (width - len(i))) for i in ids]
        tokens = torch.tensor(rows, dtype=torch.long)
        return tokens.to(self.device) if move_to_device else tokens

    def _text_ids(self, tokenizer: Tokenizer, text: str, prepend_bos: bool, unknown: str) -> list[int]:
        ids = prompt_ids(
            tokenizer, text, self.cfg.n_ctx + (not prepend_bos), what="the text", unknown=unknown, allow_empty=True
        )
        return ids if prepend_bos else ids[1:]

    def _padding_side(self, padding_side: str | None) -> str:
        side = self._require_tokenizer().padding_side if padding_side is None else padding_side
        if side not in PADDING_SIDES:
            raise ValueError(f"padding_side={side!r} is not one of {list(PADDING_SIDES)} (or None: the tokenizer's)")
        return side

    def attention_mask(self, tokens: Int[Tensor, "batch pos"], padding_side: str | None = None) -> Tensor:
        """``[batch, pos]`` long mask, 0 on the padding of ``tokens`` (the leading ``<pad>`` run with
        ``padding_side="left"``, the trailing run with ``"right"``), 1 elsewhere: TransformerLens's rule.

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> model = MiniGPT(ModelConfig(), seed=0)
            >>> model.attention_mask(model.to_tokens(["a", "abc"], padding_side="left"), "left").tolist()
            [[0, 0, 1, 1], [1, 1, 1, 1]]
        """
        side, tokens = self._padding_side(padding_side), self.check_tokens(tokens)
        real = tokens.ne(self._require_tokenizer().pad_id).long()
        seen = real.cumsum(-1) if side == "left" else real.flip(-1).cumsum(-1).flip(-1)
        return (seen > 0).long()

    def to_string(self, tokens: Int[Tensor, "... pos"] | Sequence[int]) -> str | list[str]:
        """Text of ``tokens`` (``[pos]`` or ``[1, pos]`` -> str, ``[batch, pos]`` -> list of str).

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> MiniGPT(ModelConfig(), seed=0).to_string([0, 22, 23])
            '<bos>hi'
        """
        tokenizer = self._require_tokenizer()
        t = as_id_tensor(tokens)
        if t.ndim > 2:
            raise ValueError(f"to_string takes tokens [pos] or [batch, pos], got shape {tuple(t.shape)}")
        if t.ndim == 2 and t.shape[0] != 1:
            return [tokenizer.decode(row.tolist()) for row in t]
        return tokenizer.decode(t.reshape(-1).tolist())

    def to_str_tokens(
        self, input: TokensLike | list[str], prepend_bos: bool = True, padding_side: str | None = None
    ) -> list[str] | list[list[str]]:
        """The string of every token of one sequence (a text gets its ``<bos>`` first unless ``prepend_bos=False``);
        a list of texts gives a list of lists, as in TransformerLens. Ids come back as text without a tokenizer.
        This is the one id -> label map of the package: every ``*_str`` column comes from it.

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> MiniGPT(ModelConfig(), seed=0).to_str_tokens(["ab", "c"], prepend_bos=False)
            [['a', 'b'], ['c']]
        """
        if isinstance(input, list | tuple) and input and all(isinstance(t, str) for t in input):
            return [self.to_str_tokens(t, prepend_bos, padding_side) for t in input]
        if isinstance(input, str):
            tokens = self.to_tokens(input, prepend_bos=prepend_bos, padding_side=padding_side)
        else:
            tokens = self.check_tokens(input)
        if tokens.shape[0] != 1:
            raise ValueError(f"to_str_tokens takes one sequence, got a batch of {tokens.shape[0]}; pass tokens[i]")
        return token_labels(self.tokenizer, tokens[0].tolist())

    def to_single_token(self, string: str) -> int:
        """The id of one symbol: a character (``"a"``) or a special's name (``"<bos>"``).

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> MiniGPT(ModelConfig(), seed=0).to_single_token("a")
            15
        """
        return char_id(self._require_tokenizer(), string)

    def get_token_position(
        self,
        single_token: str | int | Tensor,
        input: str | Tensor,
        mode: str = "first",
        prepend_bos: bool = True,
        padding_side: str | None = None,
    ) -> int:
        """Position of ``single_token`` in ``input`` (a text, or ids ``[pos]`` / ``[1, pos]``): its ``"first"`` or
        ``"last"`` occurrence; a ValueError when it does not occur. Positions count ``<bos>`` when it is prepended.

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> MiniGPT(ModelConfig(), seed=0).get_token_position("b", "abcb")
            2
        """
        if mode not in ("first", "last"):
            raise ValueError(f"mode must be 'first' or 'last', not {mode!r}")
        if isinstance(input, str):
            tokens = self.to_tokens(input, prepend_bos=prepend_bos, padding_side=padding_side)
        else:
            tokens = self.check_tokens(input)
        if tokens.shape[0] != 1:
            raise ValueError(f"get_token_position takes one sequence ([pos] or [1, pos]), got {tuple(tokens.shape)}")
        if isinstance(single_token, str):
            token = self.to_single_token(single_token)
        else:
            token = int(check_token_ids(torch.as_tensor(single_token).reshape(1), self.cfg.d_vocab, 1)[0, 0])
        where = (tokens[0] == token).nonzero().flatten().tolist()
        if not where:
            raise ValueError(f"token {token_labels(self.tokenizer, [token])[0]!r} does not occur in the input")
        return where[0] if mode == "first" else where[-1]

    def random_tokens(
        self,
        batch: int,
        pos: int,
        *,
        exclude_special: bool = True,
        prepend_bos: bool = False,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Int[Tensor, "batch pos"]:
        """``[batch, pos]`` uniformly random token ids on the model's device, never a special (``<bos>``, ``<pad>``,
        ``<unk>``) unless ``exclude_special=False``; ``prepend_bos`` puts ``<bos>`` in front (``pos + 1`` columns).
        Use it instead of ``torch.randint(0, model.cfg.d_vocab, ...)``, which draws the specials too.

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> model = MiniGPT(ModelConfig(), seed=0)
            >>> r = model.random_tokens(4, 10, seed=0)
            >>> r.shape, bool((r >= 3).all())
            (torch.Size([4, 10]), True)
        """
        for name, value in (("batch", batch), ("pos", pos)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"random_tokens needs a positive int {name}, got {value!r}")
        if pos + prepend_bos > self.cfg.n_ctx:
            raise ValueError(f"{pos + prepend_bos} tokens is longer than the context n_ctx={self.cfg.n_ctx}")
        if seed is not None and generator is not None:
            raise ValueError("give seed or generator, not both")
        allowed = self._ordinary_ids() if exclude_special else torch.arange(self.cfg.d_vocab)
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, ()).item()))
        ids = allowed[torch.randint(0, len(allowed), (batch, pos), generator=generator)]
        if prepend_bos:
            ids = torch.cat([torch.full((batch, 1), self._bos_id(), dtype=torch.long), ids], dim=1)
        return ids.to(self.device)

    def _input(
        self, input: Any, prepend_bos: bool, padding_side: str | None, attention_mask: Any
    ) -> tuple[Int[Tensor, "batch pos"], Tensor | None]:
        """Checked ``(tokens, attention mask or None)`` of a forward's input (see :meth:`forward`)."""
        is_text = isinstance(input, str) or (isinstance(input, list | tuple) and input and isinstance(input[0], str))
        tokens = self.to_tokens(input, prepend_bos, padding_side) if is_text else self.check_tokens(input)
        if attention_mask is None:
            left = self.tokenizer is not None and self._padding_side(padding_side if is_text else None) == "left"
            return tokens, self.attention_mask(tokens, "left") if left else None
        mask = torch.as_tensor(attention_mask, device=tokens.device)
        if tuple(mask.shape) != tuple(tokens.shape) or mask.dtype.is_floating_point:
            raise ValueError(
                f"attention_mask must be 0/1 integers or bools of the tokens' shape {tuple(tokens.shape)}"
                f", got {mask.dtype} {tuple(mask.shape)}"
            )
        return tokens, mask.long()

    def _stop_layer(self, stop_at_layer: object) -> int:
        n = self.cfg.n_layers
        if isinstance(stop_at_layer, bool) or not isinstance(stop_at_layer, int) or not -n <= stop_at_layer <= n:
            raise ValueError(
                f"stop_at_layer must be an int in -{n}..{n} (blocks[:stop_at_layer] run), got {stop_at_layer!r}"
            )
        return stop_at_layer

    def _ordinary_ids(self) -> Tensor:
        special = set(self.tokenizer.special_ids) if self.tokenizer is not None else set()
        return torch.tensor([i for i in range(self.cfg.d_vocab) if i not in special], dtype=torch.long)

    def _bos_id(self) -> int:
        return self.tokenizer.bos_id if self.tokenizer is not None else 0

    def _require_tokenizer(self) -> Tokenizer:
        if self.tokenizer is None:
            raise ValueError(
                f"this model has no tokenizer (d_vocab={self.cfg.d_vocab} is not the 64-symbol character "
                "vocabulary); pass token ids instead of text"
            )
        return self.tokenizer

    def set_tokenizer(self, tokenizer: Tokenizer, default_padding_side: str = "right") -> None:
        """TransformerLens's ``set_tokenizer``: read and write text with ``tokenizer`` (its vocabulary must be the
        model's ``d_vocab``), padding batches on ``default_padding_side``."""
        if not callable(getattr(tokenizer, "encode", None)) or not callable(getattr(tokenizer, "decode", None)):
            raise TypeError(f"tokenizer must have encode and decode methods, got {type(tokenizer).__name__}")
        if len(tokenizer) != self.cfg.d_vocab:
            raise ValueError(
                f"the tokenizer has {len(tokenizer)} tokens but this model's d_vocab is {self.cfg.d_vocab}"
            )
        if default_padding_side not in ("left", "right"):
            raise ValueError(f"default_padding_side must be 'left' or 'right', got {default_padding_side!r}")
        tokenizer.padding_side = default_padding_side
        self.tokenizer = tokenizer

    def check_tokens(self, tokens: TokensLike) -> Int[Tensor, "batch pos"]:
        """Validate tokens and return them as a ``[batch, pos]`` long tensor on the model's device.

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> MiniGPT(ModelConfig(), seed=0).check_tokens([1, 2]).tolist()
            [[1, 2]]
        """
        if isinstance(tokens, str):
            return self.to_tokens(tokens)
        tokens = check_token_ids(tokens, self.cfg.d_vocab, self.cfg.n_ctx)
        return tokens.to(device=self.device, dtype=torch.long)

    cfg: Any
    tokenizer: Tokenizer | None
    device: torch.device
