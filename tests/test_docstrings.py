"""Every runnable example in the model package's docstrings still runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib

import pytest

_NAMES = "config tokenizer tokens cache minigpt logits files schema checkpoint convert data train evaluate lossplot"
MODULES = [f"model.{name}" for name in _NAMES.split()]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    """doctest finds no failure in the module (examples are the documentation users copy)."""
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} lost its docstring examples"
    assert result.failed == 0, f"{result.failed} docstring example(s) in {name} fail; run python -m doctest -v"
