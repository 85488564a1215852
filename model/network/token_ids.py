"""Token ids in and out of the model: checking ids, a prompt to ids, one symbol to its id, ids to labels.

:mod:`model.network.tokenizer` is the symbol table (text <-> symbols). This module is what every entry point
does with ids, once, with the same rules and messages everywhere (the model, the CLI and the dashboard):

- :func:`check_token_ids`: any list, array or tensor of ids -> an integer ``[batch, pos]`` tensor, or a
  ValueError saying what was wrong (``MiniGPT.check_tokens`` calls it);
- :func:`prompt_ids`: a text -> ``<bos>`` + its ids, refusing an empty, unknown or too long prompt by name;
- :func:`char_id`: one symbol -> its id; a single character, or a symbol's name such as ``"<bos>"`` (one rule
  for the specials: they are symbols like any other);
- :func:`token_labels`: ids -> the strings shown beside them in every frame (``target_str``, ``q_str`` ...).

Example:
    >>> from model import Tokenizer
    >>> tok = Tokenizer()
    >>> check_token_ids([1, 5, 9], d_vocab=64, n_ctx=32)
    tensor([[1, 5, 9]])
    >>> check_token_ids([[1, 70]], d_vocab=64, n_ctx=32)
    Traceback (most recent call last):
    ...
    ValueError: token ids [70] are outside the vocabulary [0, 64)
    >>> prompt_ids(tok, "Hi!", n_ctx=32), char_id(tok, "<bos>"), token_labels(tok, [0, 22, 23])
    ([0, 22, 23, 45], 0, ['<bos>', 'h', 'i'])
    >>> prompt_ids(tok, "x" * 40, n_ctx=32, what="--prompt")
    Traceback (most recent call last):
    ...
    ValueError: --prompt has 40 characters but this model reads at most 31 (n_ctx=32, one position goes to <bos>); \
shorten it
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from model.network.tokenizer import Tokenizer


def check_token_ids(tokens: Any, d_vocab: int, n_ctx: int) -> Int[Tensor, "batch pos"]:
    """``tokens`` as an integer ``[batch, pos]`` tensor (``[pos]`` gains a batch axis); ValueError if it is empty,
    longer than ``n_ctx`` or holds ids outside ``[0, d_vocab)``. Device and dtype are left to the caller."""
    tokens = as_id_tensor(tokens)
    if tokens.numel() == 0:
        raise ValueError(f"tokens are empty (shape {tuple(tokens.shape)}); give at least one token")
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2:
        raise ValueError(f"tokens must have shape [batch, pos] or [pos], got {tuple(tokens.shape)}")
    batch, pos = tokens.shape
    if batch == 0 or pos == 0:
        raise ValueError(f"tokens are empty (shape {tuple(tokens.shape)}); give at least one token")
    if pos > n_ctx:
        raise ValueError(f"{pos} tokens is longer than the context n_ctx={n_ctx}; crop them, e.g. tokens[:, -{n_ctx}:]")
    lo, hi = torch.aminmax(tokens)
    if lo < 0 or hi >= d_vocab:
        bad = tokens[(tokens < 0) | (tokens >= d_vocab)].unique().tolist()[:5]
        raise ValueError(f"token ids {bad} are outside the vocabulary [0, {d_vocab})")
    return tokens


def as_id_tensor(tokens: Any) -> Tensor:
    """``tokens`` as an integer tensor (not yet shape-checked); ValueError naming what was wrong."""
    if not isinstance(tokens, Tensor):
        try:
            tokens = torch.as_tensor(tokens)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(
                f"tokens must be a tensor or list of integer ids, got {type(tokens).__name__}: {err}"
            ) from None
    bad_dtype = tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool
    if bad_dtype and tokens.numel():  # an empty list becomes a float tensor: the caller says "empty"
        raise ValueError(
            f"tokens must be integer ids, got dtype {tokens.dtype}; use model.to_tokens(text) or tokens.long()"
        )
    if tokens.device.type == "meta":
        raise ValueError("tokens are on the meta device and hold no values; make them on a real device (e.g. cpu)")
    return tokens


def prompt_ids(
    tokenizer: Tokenizer,
    text: str,
    n_ctx: int,
    *,
    what: str = "the prompt",
    unknown: str = "error",
    allow_empty: bool = False,
) -> list[int]:
    """``<bos>`` + the ids of ``text``; a ValueError naming ``what`` (``"--prompt"``, ``"the prompt"``) when the text
    is empty (unless ``allow_empty``), has characters the tokenizer does not know (``unknown="error"``; see
    :meth:`~model.network.tokenizer.Tokenizer.encode` for ``"replace"`` and ``"drop"``) or does not fit in ``n_ctx``.
    """
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str of text, got {type(text).__name__}; token ids need no conversion")
    if not text and not allow_empty:
        raise ValueError(f"{what} is empty; give at least one character")
    try:
        ids = tokenizer.encode(text, bos=True, unknown=unknown)
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None
    if len(ids) > n_ctx:
        unit = "characters" if isinstance(tokenizer, Tokenizer) else "tokens"
        raise ValueError(
            f"{what} has {len(ids) - 1} {unit} but this model reads at most {n_ctx - 1} "
            f"(n_ctx={n_ctx}, one position goes to <bos>); shorten it"
        )
    return ids


def char_id(tokenizer: Tokenizer, symbol: str, *, what: str = "the token") -> int:
    """The id of one symbol: a single character (normalised as text is, so ``"A"`` is ``"a"``) or a symbol's name
    (``"<bos>"``, ``"<pad>"``, ``"<unk>"``); a ValueError naming ``what`` for anything else."""
    if not isinstance(symbol, str):
        raise TypeError(f"{what} must be one character (a str) or a token id, got {type(symbol).__name__}")
    if symbol in tokenizer.symbols:
        return tokenizer.symbols.index(symbol)
    if len(tokenizer.normalize(symbol)) != 1:
        raise ValueError(
            f"{what} must be exactly one character (or one of {list(tokenizer.symbols[:3])}), got {symbol!r}"
        )
    try:
        return tokenizer.encode(symbol)[0]
    except ValueError as err:
        raise ValueError(f"{what} {symbol!r}: {err}") from None


def token_labels(tokenizer: Tokenizer | None, ids: Iterable[int]) -> list[str]:
    """The string of every id: its symbol, or the id as text for a model without a tokenizer; a TypeError for ids
    that are not integers, a ValueError for ids outside the tokenizer's vocabulary (never a label from the end)."""
    if not isinstance(ids, Iterable) or isinstance(ids, str | bytes):
        raise TypeError(f"ids must be a list of token ids, got {type(ids).__name__}")
    ids = list(ids)
    try:
        values = [operator.index(i) for i in ids]
    except TypeError:
        bad = next(i for i in ids if not _is_int(i))
        raise TypeError(f"token ids must be integers, got {bad!r} ({type(bad).__name__})") from None
    if tokenizer is None:
        return [str(i) for i in values]
    symbols = tokenizer.symbols
    if values and not 0 <= min(values) <= max(values) < len(symbols):
        bad = sorted({i for i in values if not 0 <= i < len(symbols)})[:5]
        raise ValueError(f"token ids {bad} are outside the vocabulary [0, {len(symbols)})")
    return [symbols[i] for i in values]


def _is_int(value: Any) -> bool:
    try:
        operator.index(value)
    except TypeError:
        return False
    return True
