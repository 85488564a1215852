"""Lazy package exports: ``from model import MiniGPT`` imports ``model.network.minigpt`` (and torch) only then.

Each package ``__init__`` lists ``{public name: defining module}`` and calls :func:`lazy_exports`, so that
``import model``, ``import interp`` and ``minigpt --help`` stay light, and the names survive any move of the
module that defines them. Code inside a package imports from the defining module, never from the package root
(a test holds that), so the lazy table hides no import circle.

Example:
    >>> getattr_, dir_ = lazy_exports("json", {"dumps": "json"})
    >>> getattr_("dumps")([1])
    '[1]'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` that import ``exports[name]`` on first use of ``name``."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}; it exports {sorted(exports)}")
        return getattr(importlib.import_module(exports[name]), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
