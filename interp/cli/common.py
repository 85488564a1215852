"""What every ``minigpt`` subcommand shares: loading the model, reading prompts and characters, output paths,
printing and writing tables. Heavy imports (torch, the model) happen inside the functions, so ``minigpt --help``
stays light.

Example:
    >>> model = load_model("induction-2l")
    >>> prompt_tokens(model, "abc").tolist(), symbol_id(model, "<bos>", "--target")
    ([[0, 15, 16, 17]], 0)
    >>> prompt_tokens(model, "")
    Traceback (most recent call last):
    ...
    ValueError: --prompt is empty; give at least one character
"""

from __future__ import annotations

import argparse

MODEL_HELP = "shipped name, .safetensors path or Hugging Face model folder (default minigpt-text)"


def load_model(name_or_path: str, device: str | None = None):
    """``MiniGPT.from_pretrained(name_or_path)``."""
    from model import MiniGPT

    return MiniGPT.from_pretrained(name_or_path, device=device)


def _tokenizer(model, flag: str):
    if model.tokenizer is None:
        raise ValueError(f"this checkpoint has no tokenizer, so {flag} cannot be read")
    return model.tokenizer


def prompt_tokens(model, text: str, flag: str = "--prompt", allow_empty: bool = False):
    """``[1, pos]`` tokens (``<bos>`` first) of a prompt given on the command line, or a ValueError naming ``flag``."""
    import torch

    from model.network.token_ids import prompt_ids

    ids = prompt_ids(_tokenizer(model, flag), text, model.cfg.n_ctx, what=flag, allow_empty=allow_empty)
    return torch.tensor([ids], device=model.device)


def symbol_id(model, symbol: str | None, flag: str) -> int | None:
    """Token id of a one-character flag such as ``--target`` (a special's name, ``<bos>``, works too)."""
    from model.network.token_ids import char_id

    return None if symbol is None else char_id(_tokenizer(model, flag), symbol, what=flag)


def check_out(path: str | None, suffixes: tuple[str, ...] = (".csv",)) -> None:
    """Refuse an ``--out`` path before any work is done, so a bad one costs nothing and writes nothing.

    The directory must exist and be writable; the name must end in ``suffixes`` (a table never
    replaces a checkpoint by a typo). An existing file is replaced atomically when the command succeeds.
    """
    from model.storage.files import check_output_path

    if path is not None:
        check_output_path(path, suffixes=suffixes, what="--out")


def check_top(top: int) -> None:
    if top < 1:
        raise ValueError(f"--top must be at least 1, got {top}")


def emit(shown, args: argparse.Namespace, title: str, full=None) -> None:
    """Print ``title`` and the ``shown`` table; with ``--out``, write ``full`` (default: ``shown``) as CSV."""
    from interp.common.export import write_csv_atomic

    # write before printing: a failed write prints nothing
    written = write_csv_atomic(shown if full is None else full, args.out) if args.out else None
    print(title)
    print(shown.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    if written is not None:
        print(f"wrote {written}")
