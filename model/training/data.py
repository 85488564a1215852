"""Training data: the built-in English corpus, user text files, and the repeated-segments task.

Text becomes a 1-D LongTensor of token ids (:class:`TextData`, split by position into train and
validation); batches are ``[batch, n_ctx]`` LongTensors drawn with a seeded ``torch.Generator``,
each row starting with ``<bos>`` (the same start :meth:`MiniGPT.to_tokens` gives a prompt).

- :func:`builtin_corpus` — the text of Python's ``pydoc_data.topics`` (the help pages of the
  language, about 465k characters, present on every Python install), topics joined in sorted
  key order, normalised to the tokenizer; characters outside its 64 symbols are dropped and
  counted in ``TextData.dropped``.
- :func:`load_text_file` — any UTF-8 text file; unknown characters are counted, then dropped
  (``unknown="drop"``) or refused with a ValueError listing them (``unknown="error"``).
- :func:`repeated_segments_batch` — BOS, random non-special tokens, and one segment of random
  length (4-15 by default) that appears twice; both its start and the gap between the copies
  are random (copies may overlap, or be cut off by the end of the context), so only an
  induction mechanism (not position) can predict the second copy.
- :func:`repeated_pair_batch` — BOS + r + r with r a random sequence (the induction evaluation).

The train/validation split is by position: the first 90% of the characters train, the last 10%
validate, so no validation window overlaps training text.

Example:
    >>> import torch
    >>> data = builtin_corpus()
    >>> len(data.train) > 9 * len(data.val) - 10
    True
    >>> gen = torch.Generator().manual_seed(0)
    >>> text_batch(data.train, batch_size=4, n_ctx=32, generator=gen).shape
    torch.Size([4, 32])
    >>> repeated_pair_batch(2, seg_len=15, generator=gen).shape
    torch.Size([2, 31])
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Int
from torch import Tensor

from model.network.tokenizer import Tokenizer

VAL_FRACTION = 0.1  # the last 10% of a text (by position) is the validation split
UNKNOWN_FILE_POLICIES = ("drop", "error")


@dataclass(frozen=True)
class TextData:
    """A tokenised text split by position: ``train`` = first 90%, ``val`` = last 10% (1-D token ids)."""

    train: Int[Tensor, " n_train"]
    val: Int[Tensor, " n_val"]
    source: str  # where the text came from ("pydoc_data.topics" or a file path)
    dropped: dict[str, int] = field(default_factory=dict)  # character -> count removed by normalisation

    @property
    def n_chars(self) -> int:
        return len(self.train) + len(self.val)

    def describe(self) -> str:
        """One line: source, sizes, and what was dropped."""
        lost = sum(self.dropped.values())
        what = ", ".join(f"{c!r} x{n}" for c, n in sorted(self.dropped.items(), key=lambda kv: -kv[1])[:8])
        tail = f"; dropped {lost} unknown characters ({what}{', ...' if len(self.dropped) > 8 else ''})" if lost else ""
        return f"{self.source}: {self.n_chars} characters, {len(self.train)} train / {len(self.val)} validation{tail}"


def normalise_text(text: str, tokenizer: Tokenizer | None = None) -> tuple[str, dict[str, int]]:
    """``(text mapped onto the tokenizer's symbols, {dropped character: count})``.

    Example:
        >>> normalise_text("Café – ok")
        ('caf - ok', {'é': 1})
    """
    tokenizer = tokenizer or Tokenizer()
    text = tokenizer.normalize(text)
    known = {s for s in tokenizer.symbols if len(s) == 1}
    dropped = Counter(c for c in text if c not in known)
    if dropped:
        text = "".join(c for c in text if c in known)
    return text, dict(dropped)


def split_ids(ids: Int[Tensor, " n"], val_fraction: float = VAL_FRACTION) -> tuple[Tensor, Tensor]:
    """``(first 1 - val_fraction, last val_fraction)`` of ``ids`` by position."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    cut = round(len(ids) * (1 - val_fraction))
    return ids[:cut], ids[cut:]


def _text_data(text: str, source: str, dropped: dict[str, int], tokenizer: Tokenizer) -> TextData:
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    train, val = split_ids(ids)
    return TextData(train=train, val=val, source=source, dropped=dropped)


def builtin_corpus(tokenizer: Tokenizer | None = None) -> TextData:
    """The built-in English corpus (``pydoc_data.topics``, topics in sorted key order), split 90/10."""
    from pydoc_data.topics import topics

    tokenizer = tokenizer or Tokenizer()
    raw = "\n".join(topics[key] for key in sorted(topics))
    text, dropped = normalise_text(raw, tokenizer)
    return _text_data(text, "pydoc_data.topics", dropped, tokenizer)


def load_text_file(path: str | Path, *, unknown: str = "error", tokenizer: Tokenizer | None = None) -> TextData:
    """A UTF-8 text file as :class:`TextData`; unknown characters dropped or refused (``unknown=``).

    Example:
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.txt"
        >>> _ = p.write_text("Hello ☃ world " * 10)
        >>> load_text_file(p, unknown="drop").dropped
        {'☃': 10}
    """
    if unknown not in UNKNOWN_FILE_POLICIES:
        raise ValueError(f"unknown={unknown!r} is not one of {list(UNKNOWN_FILE_POLICIES)}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file {str(path)!r} does not exist (or is not a file); check the path")
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); convert it to UTF-8") from None
    tokenizer = tokenizer or Tokenizer()
    text, dropped = normalise_text(raw, tokenizer)
    if dropped and unknown == "error":
        counts = ", ".join(f"{c!r} x{n}" for c, n in sorted(dropped.items(), key=lambda kv: -kv[1]))
        raise ValueError(
            f"{path} has {sum(dropped.values())} characters the tokenizer does not know ({counts}); "
            'pass unknown="drop" (CLI: --unknown drop) to remove them, or edit the file'
        )
    if len(text) < 2:
        raise ValueError(f"{path} has no usable text ({len(text)} known characters); give a file with some text in it")
    return _text_data(text, str(path), dropped, tokenizer)


def text_batch(
    ids: Int[Tensor, " n"], batch_size: int, n_ctx: int, generator: torch.Generator, *, bos_id: int = 0
) -> Int[Tensor, "batch n_ctx"]:
    """Random windows of ``n_ctx - 1`` consecutive ids, each preceded by ``<bos>``."""
    width = n_ctx - 1
    if len(ids) < width + 1:
        raise ValueError(f"the text has {len(ids)} tokens, too few for windows of {width}; use a longer text")
    starts = torch.randint(0, len(ids) - width + 1, (batch_size,), generator=generator)
    windows = ids[starts[:, None] + torch.arange(width)]
    return torch.cat([torch.full((batch_size, 1), bos_id, dtype=torch.long), windows], dim=1)


def text_eval_batches(
    ids: Int[Tensor, " n"], n_ctx: int, batch_size: int = 256, *, bos_id: int = 0, max_windows: int | None = None
) -> list[Int[Tensor, "batch n_ctx"]]:
    """The whole of ``ids`` cut into consecutive non-overlapping windows (``<bos>`` + ``n_ctx - 1`` ids).

    Every character except the last partial window is predicted exactly once, so the mean
    next-token loss over these batches is the validation loss in nats per character.
    """
    width = n_ctx - 1
    n = len(ids) // width if max_windows is None else min(len(ids) // width, max_windows)
    if n == 0:
        raise ValueError(f"the text has {len(ids)} tokens, fewer than one window of {width}")
    windows = ids[: n * width].view(n, width)
    rows = torch.cat([torch.full((n, 1), bos_id, dtype=torch.long), windows], dim=1)
    return list(rows.split(batch_size))


def _non_special(batch_size: int, length: int, generator: torch.Generator, d_vocab: int, n_special: int) -> Tensor:
    return torch.randint(n_special, d_vocab, (batch_size, length), generator=generator)


def repeated_segments_batch(
    batch_size: int,
    n_ctx: int,
    generator: torch.Generator,
    *,
    min_len: int = 4,
    max_len: int = 15,
    min_gap: int = 2,
    whole_fraction: float = 0.75,
    d_vocab: int = 64,
    n_special: int = 3,
    bos_id: int = 0,
    return_spans: bool = False,
) -> Int[Tensor, "batch n_ctx"] | tuple[Int[Tensor, "batch n_ctx"], Int[Tensor, "batch 3"]]:
    """BOS + random non-special tokens in which a segment of length ``L ~ U[min_len, max_len]`` repeats.

    The segment starts at ``s1`` and repeats at ``s2 = s1 + g``: position ``p`` in ``[s2, s2 + L)``
    copies position ``s1 + (p - s1) % g`` (that is ``p - g`` when ``g >= L``), and the copy is cut
    off at the end of the context. Two kinds of rows, chosen per row:

    - *whole* (a ``whole_fraction`` of the rows): both copies lie whole in the context without
      overlapping, ``s1 ~ U[1, n_ctx - 2L]``, ``s2 ~ U[s1 + L, n_ctx - L]`` — long, complete
      copies at every distance;
    - *anywhere* (the rest): ``s1 ~ U[1, n_ctx - 1 - min_gap]``, ``g ~ U[min_gap, n_ctx - 1 - s1]`` —
      the earlier occurrence can sit at any position (so every key position can need the
      previous-token information an induction head reads); a gap shorter than ``L`` makes the
      span periodic, and a late copy is cut short.

    Position and distance both vary, so only induction, not position, predicts the copy. Token
    ids ``0 .. n_special - 1`` are the specials and never appear after the BOS.
    ``return_spans=True`` also returns ``[L, s1, s2]`` per row.
    """
    if not 1 <= min_len <= max_len or not 1 <= min_gap <= n_ctx - 2 or 2 * max_len + 1 > n_ctx:
        raise ValueError(
            f"need 1 <= min_len <= max_len, 2 * max_len + 1 <= n_ctx and 1 <= min_gap <= n_ctx - 2, got "
            f"min_len={min_len}, max_len={max_len}, min_gap={min_gap}, n_ctx={n_ctx}"
        )
    if not 0 <= whole_fraction <= 1:
        raise ValueError(f"whole_fraction must be in [0, 1], got {whole_fraction!r}")
    seq = _non_special(batch_size, n_ctx, generator, d_vocab, n_special)
    seg = torch.randint(min_len, max_len + 1, (batch_size, 1), generator=generator)
    u = torch.rand(batch_size, 5, generator=generator)
    whole = u[:, :1] < whole_fraction
    s1_whole = 1 + (u[:, 1:2] * (n_ctx - 2 * seg)).long()
    gap_whole = seg + (u[:, 2:3] * (n_ctx - s1_whole - 2 * seg + 1)).long()
    s1_any = 1 + (u[:, 3:4] * (n_ctx - 1 - min_gap)).long()
    gap_any = min_gap + (u[:, 4:5] * (n_ctx - s1_any - min_gap)).long()
    s1, gap = torch.where(whole, s1_whole, s1_any), torch.where(whole, gap_whole, gap_any)
    pos = torch.arange(n_ctx)[None]
    in_copy = (pos >= s1 + gap) & (pos < s1 + gap + seg)
    seq = seq.gather(1, torch.where(in_copy, s1 + (pos - s1) % gap, pos))
    seq[:, 0] = bos_id
    return (seq, torch.cat([seg, s1, s1 + gap], dim=1)) if return_spans else seq


def repeated_pair_batch(
    batch_size: int, seg_len: int, generator: torch.Generator, *, d_vocab: int = 64, n_special: int = 3, bos_id: int = 0
) -> Int[Tensor, "batch pos"]:
    """``[BOS, r, r]`` with ``r`` = ``seg_len`` random non-special tokens: ``[batch, 1 + 2 * seg_len]``.

    Positions ``1 .. seg_len`` are the first copy, ``seg_len + 1 .. 2 * seg_len`` the second.
    """
    r = _non_special(batch_size, seg_len, generator, d_vocab, n_special)
    return torch.cat([torch.full((batch_size, 1), bos_id, dtype=torch.long), r, r], dim=1)
