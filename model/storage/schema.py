"""What a checkpoint's two files must look like: the JSON schema and the safetensors header check.

A checkpoint is ``<name>.safetensors`` (weights) and ``<name>.json`` (everything else). Before a
single tensor is read, :func:`validate_metadata` checks the JSON against :data:`CHECKPOINT_SCHEMA`
and :func:`read_safetensors_header` checks the weights file's header against the safetensors
layout (8-byte little-endian header length, a JSON header, tensors packed back to back). Every
violation is a ``ValueError`` naming the key (``config.d_model``), what it was and what was
expected, so a damaged or hand-edited file is refused with a reason instead of a crash.

The JSON document (``format_version`` 1):

=================  ==============  ========  ==============================================================
key                type            required  allowed values
=================  ==============  ========  ==============================================================
format             str             yes       ``"minigpt-lens-checkpoint"``
format_version     int             yes       1 .. :data:`FORMAT_VERSION`
config             object          yes       every field of ``ModelConfig`` (:data:`CONFIG_SCHEMA`)
tokenizer          object or null  yes       ``{"kind": "char", "symbols": [d_vocab unique str]}``, ``{"kind": "hf",
                                             "tokenizer_json": str, "specials": {...}}`` or null
weights_sha256     str             yes       64 lower-case hex digits: the hash of the ``.safetensors`` file
provenance         object          yes       any keys; the known ones typed (:data:`PROVENANCE_SCHEMA`)
=================  ==============  ========  ==============================================================

Example:
    >>> doc = {"format": "minigpt-lens-checkpoint", "format_version": 1, "config": {"d_model": "64"}}
    >>> validate_metadata(doc, "m.json")
    Traceback (most recent call last):
    ...
    ValueError: m.json: key 'config.d_model' must be an integer >= 1, got '64' (str); save the checkpoint again
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.network.config import ACTIVATIONS, NORMS, POSITIONAL, ModelConfig

FORMAT = "minigpt-lens-checkpoint"
FORMAT_VERSION = 1
FIX = "save the checkpoint again"
MAX_HEADER_BYTES = 100 * 2**20  # the safetensors library's own limit on the JSON header
DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}  # fmt: skip
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")  # torch zip, pickle 2..5


@dataclass(frozen=True)
class Field:
    """One key of a JSON object: the JSON types it may have, whether it must be there, and a value rule."""

    types: tuple[type, ...]  # accepted Python types after json.loads (bool never counts as int or float)
    expected: str  # what the error message says was expected
    required: bool = True
    rule: Callable[[Any], bool] | None = None  # extra condition on a value of the right type
    nested: dict[str, Field] | None = None  # schema of an object value
    extra_keys: bool = False  # (objects) whether keys outside ``nested`` are allowed

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) and bool not in self.types:
            return False
        return isinstance(value, self.types) and (self.rule is None or value is None or self.rule(value))


def _positive_int(expected: str = "an integer >= 1") -> Field:
    return Field((int,), expected, rule=lambda v: v >= 1)


def _positive_number(name: str) -> Field:
    return Field((int, float), f"a number > 0 ({name})", rule=lambda v: math.isfinite(v) and v > 0)


def _one_of(options: tuple[str, ...]) -> Field:
    return Field((str,), f"one of {list(options)}", rule=lambda v: v in options)


_FLAG = Field((bool,), "true or false")
CONFIG_SCHEMA: dict[str, Field] = {  # one entry per ModelConfig field (a test keeps them in step)
    "d_model": _positive_int(),
    "n_heads": _positive_int(),
    "n_layers": _positive_int(),
    "d_ff": _positive_int(),
    "d_vocab": _positive_int(),
    "n_ctx": _positive_int(),
    "positional": _one_of(POSITIONAL),
    "norm": _one_of(NORMS),
    "act": _one_of(ACTIVATIONS),
    "attn_only": _FLAG,
    "tied_embed": _FLAG,
    "bias": _FLAG,
    "ln_eps": _positive_number("LayerNorm epsilon"),
    "rotary_base": _positive_number("rotary frequency base"),
    "init_std": _positive_number("initialisation std"),
}
TOKENIZER_SCHEMA: dict[str, Field] = {
    "kind": Field((str,), "'char' (MiniGPT's) or 'hf' (a Hugging Face fast tokenizer)", rule=lambda v: v in KINDS),
    "symbols": Field(  # kind 'char'
        (list,), "a list of unique strings including <bos>, <pad>, <unk>",
        rule=lambda v: all(isinstance(s, str) and s for s in v) and len(set(v)) == len(v)
        and {"<bos>", "<pad>", "<unk>"} <= set(v), required=False,
    ),
    "tokenizer_json": Field((str,), "the text of a tokenizer.json", required=False),  # kind 'hf'
    "specials": Field((dict,), "an object of special tokens", required=False, extra_keys=True),  # kind 'hf'
}  # fmt: skip
KINDS = {"char": "symbols", "hf": "tokenizer_json"}  # each kind's required key
_LOSS = Field((int, float, type(None)), "a number or null", required=False)
PROVENANCE_SCHEMA: dict[str, Field] = {  # what the trainer records; any other key is kept as it is
    "command": Field((str,), "a string (the command that trained the model)", required=False),
    "commands": Field((list,), "a list of strings", required=False, rule=lambda v: all(isinstance(s, str) for s in v)),
    "steps": Field((int,), "an integer >= 0", required=False, rule=lambda v: v >= 0),
    "train_loss": _LOSS,
    "val_loss": _LOSS,
    "date": Field((str,), "an ISO date string", required=False),
}
CHECKPOINT_SCHEMA: dict[str, Field] = {
    "format": Field((str,), repr(FORMAT), rule=lambda v: v == FORMAT),
    "format_version": Field(
        (int,),
        f"an integer from 1 to {FORMAT_VERSION} (a newer one needs a newer MiniGPT Lens: upgrade)",
        rule=lambda v: 1 <= v <= FORMAT_VERSION,
    ),
    "config": Field((dict,), "an object with the model config", nested=CONFIG_SCHEMA),
    "tokenizer": Field((dict, type(None)), "an object with the tokenizer table, or null", nested=TOKENIZER_SCHEMA),
    "weights_sha256": Field(
        (str,),
        "64 lower-case hex digits (the sha256 of the .safetensors file)",
        rule=lambda v: re.fullmatch(r"[0-9a-f]{64}", v) is not None,
    ),
    "provenance": Field((dict,), "an object", nested=PROVENANCE_SCHEMA, extra_keys=True),
}


def _shown(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def validate(doc: Any, schema: dict[str, Field], where: str, prefix: str = "", extra_keys: bool = False) -> None:
    """Raise ValueError for the first key of ``doc`` that breaks ``schema`` (missing, unknown, wrong type or value)."""
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: {prefix.rstrip('.') or 'the document'} must be a JSON object, got {_shown(doc)}")
    for key, field in schema.items():
        name = prefix + key
        if key not in doc:
            if field.required:
                raise ValueError(f"{where}: key {name!r} is missing; expected {field.expected}; {FIX}")
            continue
        value = doc[key]
        if not field.accepts(value):
            raise ValueError(f"{where}: key {name!r} must be {field.expected}, got {_shown(value)}; {FIX}")
        if field.nested is not None and isinstance(value, dict):
            validate(value, field.nested, where, name + ".", field.extra_keys)
    unknown = sorted(set(doc) - set(schema)) if not extra_keys else []
    if unknown:
        raise ValueError(
            f"{where}: unknown key {prefix + str(unknown[0])!r} (got {_shown(doc[unknown[0]])}); "
            f"expected only {sorted(schema)}; {FIX}"
        )


def validate_metadata(doc: Any, where: str) -> ModelConfig:
    """Check a checkpoint's JSON document against :data:`CHECKPOINT_SCHEMA`; return its ModelConfig.

    Beyond the per-key rules: the config must be a valid ModelConfig (e.g. ``d_model`` divisible by
    ``n_heads``) and the tokenizer must have ``d_vocab`` symbols.
    """
    validate(doc, CHECKPOINT_SCHEMA, where)
    try:
        cfg = ModelConfig.from_dict(doc["config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: key 'config' is not a valid model config: {err}; {FIX}") from None
    tok = doc["tokenizer"]
    if tok is not None and KINDS[tok["kind"]] not in tok:
        raise ValueError(
            f"{where}: key 'tokenizer.{KINDS[tok['kind']]}' is missing for a {tok['kind']!r} tokenizer; {FIX}"
        )
    if tok is not None and tok["kind"] == "char" and len(tok["symbols"]) != cfg.d_vocab:
        raise ValueError(
            f"{where}: key 'tokenizer.symbols' has {len(tok['symbols'])} symbols, expected config.d_vocab = "
            f"{cfg.d_vocab}; {FIX}"
        )
    return cfg


# ---------------------------------------------------------------------------------------- safetensors header
def _damaged(where: str, why: str) -> ValueError:
    return ValueError(
        f"{where} is damaged: {why}; this is not a safetensors file, or one cut short or overwritten: "
        "save or copy the checkpoint again"
    )


def refuse_pickle(where: str, head: bytes) -> None:
    """ValueError (why, how to convert) when ``head`` starts like a PyTorch zip or a pickle."""
    if head.startswith(PICKLE_MAGIC):
        raise ValueError(
            f"{where} is a PyTorch/pickle file, not safetensors: it is refused because unpickling can run "
            "arbitrary code. Convert it where you trust it: state = torch.load(path, weights_only=True); "
            "model = MiniGPT(cfg); model.load_state_dict(state); model.save_pretrained('name')"
        )


def parse_safetensors_header(data: bytes, file_size: int, where: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` from the start of a safetensors file of ``file_size`` bytes; ValueError if damaged.

    ``data`` must hold at least the 8 length bytes and the header they announce. Checks the layout
    the format requires: a JSON object header, known dtypes, non-negative shapes, and data offsets
    that tile the rest of the file exactly (so a cut or padded file is caught without reading it).
    """
    refuse_pickle(where, data[:4])
    if file_size < 8 or len(data) < 8:
        raise _damaged(where, f"it has {file_size} bytes, fewer than the 8 that announce the header")
    n = int.from_bytes(data[:8], "little")
    if n < 2 or n > MAX_HEADER_BYTES or 8 + n > file_size:
        raise _damaged(where, f"the header length {n} does not fit in the file's {file_size} bytes")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _damaged(where, f"the header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise _damaged(where, f"the header is a {type(header).__name__}, not an object")
    header.pop("__metadata__", None)
    tensors, spans = {}, []
    for name, info in header.items():
        ok = isinstance(info, dict) and info.get("dtype") in DTYPE_BYTES and isinstance(info.get("shape"), list)
        ok = ok and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in info["shape"])
        offsets = info.get("data_offsets") if ok else None
        ok = ok and isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
        if not ok:
            raise _damaged(where, f"the header entry of tensor {name!r} is malformed: {str(info)[:120]}")
        size = math.prod(info["shape"]) * DTYPE_BYTES[info["dtype"]]
        if offsets[1] - offsets[0] != size:
            raise _damaged(where, f"tensor {name!r} spans {offsets[1] - offsets[0]} bytes, its shape needs {size}")
        tensors[name] = (info["dtype"], tuple(info["shape"]))
        spans.append(tuple(offsets))
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            raise _damaged(where, f"the tensor data has a gap or overlap at byte {begin}")
        end = stop
    if 8 + n + end != file_size:
        raise _damaged(where, f"the header describes {8 + n + end} bytes but the file has {file_size}")
    return tensors


def read_safetensors_header(path: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """:func:`parse_safetensors_header` of a file, reading only its header.

    Example:
        >>> from model.storage.registry import CHECKPOINT_DIR
        >>> read_safetensors_header(CHECKPOINT_DIR / "induction-2l.safetensors")["embed.W_E"]
        ('F32', (64, 64))
    """
    path = Path(os.fspath(path))
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else 0
        rest = handle.read(n) if 0 < n <= min(MAX_HEADER_BYTES, size) else b""
    return parse_safetensors_header(head + rest, size, str(path))
