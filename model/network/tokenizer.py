"""A 64-symbol character tokenizer.

Symbol table (id: symbol)::

    0 <bos>   1 <pad>   2 <unk>
    3 "\\n"   4 " "
    5-14      0 1 2 3 4 5 6 7 8 9
    15-40     a b c ... z
    41-63     . , ; : ! ? ' " - ( ) [ ] { } _ = + * / < > |

Normalisation, applied by :meth:`Tokenizer.normalize` before encoding: lower-case; ``\\r\\n``
and ``\\r`` become ``\\n``; tabs and other blank characters become a space; typographic
quotes become ``'`` and ``"``; en and em dashes become ``-``; the ellipsis becomes ``...``.
Any other character is unknown: :meth:`Tokenizer.encode` raises a ValueError naming each one
and its position, unless you opt in with ``unknown="replace"`` (maps it to ``<unk>``) or
``unknown="drop"``.

Example:
    >>> tok = Tokenizer()
    >>> ids = tok.encode("Hello, world!")
    >>> tok.decode(ids)
    'hello, world!'
    >>> tok.encode("naïve")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: 1 unknown character: 'ï' at position 2; the tokenizer knows lower-case letters, ...
"""

from __future__ import annotations

import operator
import string
from collections.abc import Iterable

SPECIALS = ("<bos>", "<pad>", "<unk>")
PUNCTUATION = ".,;:!?'\"-()[]{}_=+*/<>|"
SYMBOLS = (*SPECIALS, "\n", " ", *tuple(string.digits), *tuple(string.ascii_lowercase), *tuple(PUNCTUATION))

_TRANSLATE = str.maketrans(
    {
        "\t": " ",
        "\r": "\n",
        "\u00a0": " ",
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2026": "...",
    }
)
UNKNOWN_POLICIES = ("error", "replace", "drop")


def _source_positions(text: str) -> list[int]:
    """For each character of ``Tokenizer.normalize(text)``, its position in ``text``."""
    where: list[int] = []
    for i, raw in enumerate(text):
        if raw == "\r" and text[i + 1 : i + 2] == "\n":
            continue  # "\r\n" becomes the one "\n" that follows
        where.extend([i] * len(raw.translate(_TRANSLATE).lower()))
    return where


class Tokenizer:
    """Character tokenizer over the 64 symbols in :data:`SYMBOLS` (see the module docstring)."""

    def __init__(self, symbols: Iterable[str] = SYMBOLS) -> None:
        self.symbols: tuple[str, ...] = tuple(symbols)
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("tokenizer symbols must be unique")
        if any(s not in self.symbols for s in SPECIALS):
            raise ValueError(f"tokenizer symbols must include the specials {SPECIALS}")
        self._ids = {s: i for i, s in enumerate(self.symbols)}
        self.bos_id = self._ids["<bos>"]
        self.pad_id = self._ids["<pad>"]
        self.unk_id = self._ids["<unk>"]
        self.special_ids = (self.bos_id, self.pad_id, self.unk_id)
        self.padding_side = "right"  # where MiniGPT.to_tokens pads a batch of texts (TransformerLens's default)

    # What TransformerLens code reads off a (HuggingFace) tokenizer. There is no separate end-of-text symbol:
    # as in GPT-2, where <|endoftext|> is both, <bos> is also the eos token (generate(stop_at_eos=True) stops on it).
    @property
    def bos_token_id(self) -> int:
        return self.bos_id

    @property
    def eos_token_id(self) -> int:
        return self.bos_id

    @property
    def pad_token_id(self) -> int:
        return self.pad_id

    @property
    def unk_token_id(self) -> int:
        return self.unk_id

    @property
    def bos_token(self) -> str:
        return self.symbols[self.bos_id]

    @property
    def eos_token(self) -> str:
        return self.symbols[self.bos_id]

    @property
    def pad_token(self) -> str:
        return self.symbols[self.pad_id]

    @property
    def unk_token(self) -> str:
        return self.symbols[self.unk_id]

    @property
    def all_special_ids(self) -> list[int]:
        return list(self.special_ids)

    @property
    def vocab(self) -> dict[str, int]:
        """``{symbol: id}`` (HuggingFace's ``get_vocab()``)."""
        return dict(self._ids)

    def get_vocab(self) -> dict[str, int]:
        """``{symbol: id}``, as HuggingFace tokenizers spell it.

        Example:
            >>> Tokenizer().get_vocab()["a"]
            15
        """
        return dict(self._ids)

    def batch_decode(self, sequences: Iterable[Iterable[int]], *, skip_special: bool = False) -> list[str]:
        """:meth:`decode` of each sequence (a ``[batch, pos]`` tensor or a list of id lists); a 1-d sequence gives one
        string per id, as HuggingFace's ``batch_decode`` does (TransformerLens's ``to_str_tokens`` relies on that).

        Example:
            >>> Tokenizer().batch_decode([[15, 16], [17]]), Tokenizer().batch_decode([15, 16])
            (['ab', 'c'], ['a', 'b'])
        """
        if isinstance(sequences, str | bytes) or not isinstance(sequences, Iterable):
            raise TypeError(f"batch_decode expects a list of id sequences, got {type(sequences).__name__}")
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [self.decode(s if isinstance(s, Iterable) else [s], skip_special=skip_special) for s in sequences]

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def __len__(self) -> int:
        return len(self.symbols)

    def __repr__(self) -> str:
        return f"Tokenizer({len(self)} symbols: 3 specials, newline, space, digits, a-z, {PUNCTUATION})"

    @staticmethod
    def normalize(text: str) -> str:
        """Lower-case and map look-alike characters onto the symbol table."""
        if not isinstance(text, str):
            raise TypeError(f"expected a str of text, got {type(text).__name__}")
        return text.replace("\r\n", "\n").translate(_TRANSLATE).lower()

    def unknown_chars(self, text: str) -> list[tuple[int, str]]:
        """``(position in text, normalised character)`` for every character with no symbol."""
        normalized = self.normalize(text)
        where = _source_positions(text)
        return [(where[i], c) for i, c in enumerate(normalized) if c not in self._ids or len(c) != 1]

    def encode(self, text: str, *, bos: bool = False, unknown: str = "error") -> list[int]:
        """Token ids of ``text`` (normalised first); ``bos=True`` puts ``<bos>`` in front."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown={unknown!r} is not one of {list(UNKNOWN_POLICIES)}")
        original, text = text, self.normalize(text)
        ids = [self.bos_id] if bos else []
        bad: list[tuple[int, str]] = []
        for i, c in enumerate(text):
            idx = self._ids.get(c) if c not in SPECIALS else None
            if idx is not None:
                ids.append(idx)
            elif unknown == "replace":
                ids.append(self.unk_id)
            elif unknown == "error":
                bad.append((i, c))
        if bad:
            where = _source_positions(original)  # report positions in the text as given
            raise ValueError(self._unknown_message([(where[i], c) for i, c in bad]))
        return ids

    def decode(self, ids: Iterable[int], *, skip_special: bool = False) -> str:
        """Text of token ids; specials are written as ``<bos>`` etc. unless ``skip_special``."""
        if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
            raise TypeError(f"decode expects a list of integer token ids, got {type(ids).__name__}")
        out = []
        for i in ids:
            if isinstance(i, bool):
                raise TypeError(f"token ids must be integers, got {i!r} (bool)")
            try:
                i = operator.index(i)
            except TypeError:
                raise TypeError(
                    f"token ids must be integers, got {i!r} ({type(i).__name__}); decode a [pos] list of ids"
                ) from None
            if not 0 <= i < len(self.symbols):
                raise ValueError(f"token id {i} is outside the vocabulary [0, {len(self.symbols)})")
            if skip_special and i in self.special_ids:
                continue
            out.append(self.symbols[i])
        return "".join(out)

    def to_dict(self) -> dict:
        return {"kind": "char", "symbols": list(self.symbols)}

    @classmethod
    def from_dict(cls, data: dict) -> Tokenizer:
        if not isinstance(data, dict) or data.get("kind") != "char" or "symbols" not in data:
            raise ValueError("tokenizer table must look like {'kind': 'char', 'symbols': [...]}")
        return cls(data["symbols"])

    def _unknown_message(self, bad: list[tuple[int, str]]) -> str:
        shown = ", ".join(f"{c!r} at position {i}" for i, c in bad[:10])
        more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
        noun = "character" if len(bad) == 1 else "characters"
        return (
            f"{len(bad)} unknown {noun}: {shown}{more}; the tokenizer knows lower-case letters, "
            f'digits, space, newline and {PUNCTUATION} (pass unknown="replace" to map unknown '
            f'characters to <unk>, or unknown="drop")'
        )
