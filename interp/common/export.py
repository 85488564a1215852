"""CSV export of per-component contributions, written atomically.

Column schema of a contributions CSV (the frame of :func:`interp.direct_logit_attribution`; the names and
meanings are those of :mod:`interp.common.vocabulary`). The required columns must be present, the optional
ones are written when present, and any other column is kept after them. "Not applicable" is an empty field,
read back as ``<NA>`` (nullable integers) or None (strings):

==============  =====  ========  ==========================================================
column          type   required  meaning
==============  =====  ========  ==========================================================
batch           int    yes       sequence index in the batch
pos             int    yes       token position
pos_str         str    no        the token at pos
target          int    yes       token id whose logit is attributed
target_str      str    no        its string
contrast        Int64  no        token id subtracted (logit difference); empty for none
contrast_str    str    no        its string; empty for none
component       str    yes       residual writer: embed, pos_embed, L{l}H{h}, L{l}.mlp, b_U ...
layer           Int64  yes       block index; empty outside the blocks
head            Int64  yes       head index; empty unless the row is a head
neuron          Int64  no        MLP neuron index; empty unless the row is a neuron
component_type  str    no        embed, pos_embed, layer, attn, head, attn_bias, mlp, neuron, ...
contribution    float  yes       direct contribution to the logit (or logit difference)
==============  =====  ========  ==========================================================

The write goes through :func:`model.storage.files.atomic_write`: a temporary file in the destination
directory which then replaces the destination in one ``os.replace``. A reader never sees half a file,
and a failure mid-write leaves any previous file untouched (and no temporary file behind).

Example:
    >>> import tempfile, pathlib
    >>> from model import MiniGPT, ModelConfig
    >>> from interp import direct_logit_attribution
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> df = direct_logit_attribution(model, model.to_tokens("hi"))
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "dla.csv"
    >>> _ = contributions_to_csv(df, path)
    >>> read_contributions_csv(path).equals(df)
    True
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from model.storage.files import atomic_write, check_output_path

SCHEMA: dict[str, tuple[str, bool]] = {  # column: (dtype, required)
    "batch": ("int64", True),
    "pos": ("int64", True),
    "pos_str": ("str", False),
    "target": ("int64", True),
    "target_str": ("str", False),
    "contrast": ("Int64", False),
    "contrast_str": ("str", False),
    "component": ("str", True),
    "layer": ("Int64", True),
    "head": ("Int64", True),
    "neuron": ("Int64", False),
    "component_type": ("str", False),
    "contribution": ("float64", True),
}
REQUIRED_COLUMNS = [name for name, (_, required) in SCHEMA.items() if required]
_READ_AS = {"int64": "int64", "Int64": "Int64", "float64": "float64", "str": "object"}  # pandas dtype to read as


def _check_columns(columns: list[str], where: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(
            f"{where} lacks the required columns {missing} (required: {REQUIRED_COLUMNS}); "
            "pass the frame of interp.direct_logit_attribution"
        )


def write_csv_atomic(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write any frame to ``path`` as CSV (no index) through :func:`model.storage.files.atomic_write`.

    The directory must exist (FileNotFoundError naming it otherwise); a directory, or a name not ending in
    ``.csv``, is a ValueError; nothing is written when the frame cannot be written whole.

    Example:
        >>> import tempfile, pathlib
        >>> path = write_csv_atomic(pd.DataFrame({"a": [1, 2]}), pathlib.Path(tempfile.mkdtemp()) / "a.csv")
        >>> path.read_text()
        'a\\n1\\n2\\n'
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    path = check_output_path(path, suffixes=(".csv",), what="CSV")

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            df.to_csv(handle, index=False)

    return atomic_write(path, write)


def contributions_to_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a contributions frame to ``path`` atomically, schema columns first; returns the path.

    Raises TypeError for a non-frame, ValueError when required columns are missing,
    FileNotFoundError when the directory does not exist.

    Example:
        >>> contributions_to_csv(pd.DataFrame({"batch": [0]}), "out.csv")
        Traceback (most recent call last):
        ...
        ValueError: the frame lacks the required columns ['pos', 'target', 'component', 'layer', 'head', \
'contribution'] (required: ['batch', 'pos', 'target', 'component', 'layer', 'head', 'contribution']); \
pass the frame of interp.direct_logit_attribution
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    _check_columns(list(df.columns), "the frame")
    _check_values(df)
    ordered = [c for c in SCHEMA if c in df.columns] + [c for c in df.columns if c not in SCHEMA]
    return write_csv_atomic(df[ordered], path)


def _check_values(df: pd.DataFrame) -> None:
    """ValueError naming a schema column of the wrong type, or non-finite contributions (nothing is written)."""
    for name, (dtype, _) in SCHEMA.items():
        if name not in df.columns:
            continue
        column = df[name]
        ok = {
            "int64": pd.api.types.is_integer_dtype,
            "Int64": pd.api.types.is_integer_dtype,
            "float64": pd.api.types.is_numeric_dtype,
            "str": lambda c: pd.api.types.is_string_dtype(c) or pd.api.types.is_object_dtype(c),
        }[dtype](column)
        if not ok or pd.api.types.is_bool_dtype(column):
            raise ValueError(f"column {name!r} has dtype {column.dtype}, but the schema says {dtype}")
    bad = ~np.isfinite(df["contribution"].to_numpy(dtype=float))
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} contributions are NaN or inf (first at row {int(bad.argmax())}); "
            "refusing to export them: recompute them from finite weights and activations"
        )


def read_contributions_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a contributions CSV back with the schema's dtypes (ints, strings, float64 contributions).

    Example:
        >>> read_contributions_csv("no/such/file.csv")
        Traceback (most recent call last):
        ...
        FileNotFoundError: no contributions CSV at 'no/such/file.csv'
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or a path, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no contributions CSV at {str(path)!r}")
    try:
        header = pd.read_csv(path, nrows=0).columns.tolist()
        _check_columns(header, f"{str(path)!r}")
        dtypes = {name: _READ_AS[SCHEMA[name][0]] for name in header if name in SCHEMA}
        frame = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values={n: [""] for n in header})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not a readable contributions CSV: {err}") from None
    except (TypeError, ValueError) as err:
        if "lacks the required columns" in str(err):
            raise
        raise ValueError(f"{str(path)!r} has a value that does not fit the schema's column types: {err}") from None
    for name in frame.columns:  # an empty field is "not applicable"; strings get the dtype pandas infers for frames
        if SCHEMA.get(name, ("",))[0] == "str":
            values = frame[name].astype(object).where(frame[name].notna(), None)
            frame[name] = pd.Series(values.tolist(), index=frame.index, name=name)
    return frame
