"""A Hugging Face fast tokenizer (a folder's ``tokenizer.json``) behind the interface of MiniGPT's character
:class:`~model.network.tokenizer.Tokenizer`, so that ``to_tokens``, ``to_str_tokens``, every frame's ``*_str``
column and the dashboard read a BPE model's text as they read ours.

- ``symbols[i]`` is what token ``i`` reads as on its own, leading space included (``" the"``): the labels; ids a
  model's vocabulary has beyond the tokenizer's (padding rows) read ``<unused N>`` (:meth:`HFTokenizer.cover`).
- The specials come from the folder's ``tokenizer_config.json`` / ``special_tokens_map.json`` (GPT-2:
  ``<|endoftext|>`` is bos, eos and unk); with no pad token the eos token pads, as TransformerLens sets it.
- Text is not normalised, and nothing is unknown to a byte-level BPE (``unknown=`` is accepted and has no effect).
- Calls into the Rust tokenizer hold a lock: Hugging Face's fast tokenizers are not safe to share between threads
  (transformers #47085), and the dashboard serves each session in a thread.

Example:
    >>> from tokenizers import Tokenizer as Fast, models, pre_tokenizers, decoders
    >>> fast = Fast(models.BPE(vocab={"<|endoftext|>": 0, "a": 1, "b": 2, "Ġ": 3}, merges=[]))
    >>> fast.pre_tokenizer, fast.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    >>> tok = HFTokenizer(fast, {"bos_token": "<|endoftext|>"})
    >>> tok.encode("ab a", bos=True), tok.symbols[3], tok.pad_token_id
    ([0, 1, 2, 3, 1], ' ', 0)
"""

from __future__ import annotations

import json
import operator
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SPECIAL_FILES = ("special_tokens_map.json", "tokenizer_config.json")


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` with its special tokens, read the way MiniGPT reads its own tokenizer."""

    def __init__(self, fast: Any, specials: Mapping[str, Any] | None = None) -> None:
        from tokenizers import Tokenizer as Fast

        if not isinstance(fast, Fast):
            raise TypeError(f"HFTokenizer wraps a tokenizers.Tokenizer, got {type(fast).__name__}")
        self._fast, self._lock = fast, threading.Lock()
        vocab = fast.get_vocab(with_added_tokens=True)
        size = max(vocab.values()) + 1 if vocab else 0
        self.specials = {k: _token_text(v) for k, v in (specials or {}).items() if _token_text(v) is not None}
        ids = {}
        for role in ("bos", "eos", "pad", "unk"):
            text = self.specials.get(f"{role}_token")
            if text is not None and text not in vocab:
                raise ValueError(f"the {role} token {text!r} is not in the tokenizer's vocabulary")
            ids[role] = None if text is None else vocab[text]
        ids["eos"] = ids["eos"] if ids["eos"] is not None else ids["bos"]
        ids["bos"] = ids["bos"] if ids["bos"] is not None else ids["eos"]
        ids["pad"] = ids["pad"] if ids["pad"] is not None else ids["eos"]  # TransformerLens pads with eos
        if ids["bos"] is None:
            raise ValueError("the tokenizer has neither a bos nor an eos token; name one in tokenizer_config.json")
        self.bos_id, self.eos_id, self.pad_id = ids["bos"], ids["eos"], ids["pad"]
        self.unk_id = ids["unk"]
        self.special_ids = tuple(dict.fromkeys(i for i in ids.values() if i is not None))
        self.symbols: tuple[str, ...] = tuple(fast.decode([i], skip_special_tokens=False) for i in range(size))
        self.padding_side = "right"

    def cover(self, d_vocab: int) -> None:
        """Label the ids a model's vocabulary has beyond this tokenizer (padding rows, as Pythia's) ``<unused N>``,
        so that every id a model can predict has a label."""
        self.symbols += tuple(f"<unused {i}>" for i in range(len(self.symbols), d_vocab))

    @classmethod
    def from_folder(cls, folder: str | Path) -> HFTokenizer:
        """The tokenizer of a Hugging Face model folder (``tokenizer.json`` and its special-token files)."""
        from tokenizers import Tokenizer as Fast

        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{folder} has no tokenizer.json (a fast tokenizer); save one with "
                "AutoTokenizer.from_pretrained(...).save_pretrained(folder), or load the model without text"
            )
        specials: dict[str, Any] = {}
        for name in SPECIAL_FILES:
            if (folder / name).is_file():
                data = json.loads((folder / name).read_text())
                specials.update({k: v for k, v in data.items() if k.endswith("_token") and v is not None})
        return cls(Fast.from_file(str(path)), specials)

    # the interface of model.network.tokenizer.Tokenizer
    bos_token_id = property(lambda self: self.bos_id)
    eos_token_id = property(lambda self: self.eos_id)
    pad_token_id = property(lambda self: self.pad_id)
    unk_token_id = property(lambda self: self.unk_id)
    bos_token = property(lambda self: self.symbols[self.bos_id])
    eos_token = property(lambda self: self.symbols[self.eos_id])
    pad_token = property(lambda self: self.symbols[self.pad_id])
    all_special_ids = property(lambda self: list(self.special_ids))
    vocab_size = property(lambda self: len(self.symbols))

    def __len__(self) -> int:
        return len(self.symbols)

    def __repr__(self) -> str:
        return f"HFTokenizer({len(self)} tokens, bos {self.bos_token!r})"

    def get_vocab(self) -> dict[str, int]:
        with self._lock:
            return self._fast.get_vocab(with_added_tokens=True)

    vocab = property(get_vocab)

    @staticmethod
    def normalize(text: str) -> str:
        """Text as it is: the tokenizer's own normaliser runs inside :meth:`encode`."""
        if not isinstance(text, str):
            raise TypeError(f"expected a str of text, got {type(text).__name__}")
        return text

    def encode(self, text: str, *, bos: bool = False, unknown: str = "error") -> list[int]:
        """Token ids of ``text`` (no specials added by the tokenizer); ``bos=True`` puts the bos token in front."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        with self._lock:
            ids = self._fast.encode(text, add_special_tokens=False).ids
        return [self.bos_id, *ids] if bos else list(ids)

    def decode(self, ids: Iterable[int], *, skip_special: bool = False) -> str:
        """Text of token ids (the specials left out with ``skip_special``)."""
        if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
            raise TypeError(f"decode expects a list of integer token ids, got {type(ids).__name__}")
        values = [operator.index(i) for i in ids]
        bad = [i for i in values if not 0 <= i < len(self.symbols)]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary [0, {len(self.symbols)})")
        if skip_special:
            values = [i for i in values if i not in self.special_ids]
        with self._lock:
            return self._fast.decode(values, skip_special_tokens=False)

    def batch_decode(self, sequences: Iterable[Iterable[int]], *, skip_special: bool = False) -> list[str]:
        """:meth:`decode` of each sequence; a 1-d sequence gives one string per id (HuggingFace's behaviour)."""
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [self.decode(s if isinstance(s, Iterable) else [s], skip_special=skip_special) for s in sequences]

    def to_dict(self) -> dict:
        """The whole tokenizer as JSON-ready data (``kind: "hf"``): ``tokenizer.json``'s text and the specials."""
        with self._lock:
            return {"kind": "hf", "tokenizer_json": self._fast.to_str(), "specials": dict(self.specials)}

    @classmethod
    def from_dict(cls, data: dict) -> HFTokenizer:
        from tokenizers import Tokenizer as Fast

        if not isinstance(data, dict) or data.get("kind") != "hf" or "tokenizer_json" not in data:
            raise ValueError(
                "an HF tokenizer table must look like {'kind': 'hf', 'tokenizer_json': ..., 'specials': ...}"
            )
        return cls(Fast.from_str(data["tokenizer_json"]), data.get("specials"))


def _token_text(value: Any) -> str | None:
    """A special token as written in tokenizer_config.json: a string, or ``{"content": ...}``."""
    if isinstance(value, Mapping):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _token_text(value: Any) -> str | None:
    """A special token as written in tokenizer_config.json: a string, or ``{"content": ...}``."""
    if isinstance(value, Mapping):
        value = value.get("content")
    return value if isinstance(value, str) else None
