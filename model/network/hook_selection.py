"""Which hook points a selector picks: a hook name, a list of names, or a predicate on names, and TransformerLens's
``[(name_or_predicate, fn), ...]`` hook lists resolved to ``{name: (fn, ...)}``, with errors that name the closest
valid hook.

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> resolve_names(lambda name: name.endswith("hook_pattern"), model.hook_names)
    ['blocks.0.attn.hook_pattern', 'blocks.1.attn.hook_pattern']
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from model.network.hooks import HookFn, NameOrPredicate


def unknown_hook_error(name: object, valid: Sequence[str]) -> KeyError:
    """KeyError naming the closest valid hook names."""
    close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "list them with model.hook_names"
    return KeyError(f"unknown hook {name!r}; {hint}")


def resolve_names(selector: NameOrPredicate | Iterable[str] | None, valid: Sequence[str]) -> list[str]:
    """The hook names a selector picks: a name, a list of names, or a predicate ``name -> bool``."""
    if selector is None:
        return list(valid)
    if isinstance(selector, str):
        selector = [selector]
    if callable(selector):
        return [n for n in valid if selector(n)]
    try:
        names = list(selector)
    except TypeError:
        raise TypeError(
            f"expected a hook name, a list of names or a predicate, got {type(selector).__name__}"
        ) from None
    valid_set = set(valid)
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"hook names must be strings, got {n!r} ({type(n).__name__})")
        if n not in valid_set:
            raise unknown_hook_error(n, valid)
    return names


def build_hooks(
    fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]], valid: Sequence[str], what: str = "fwd_hooks"
) -> dict[str, tuple[HookFn, ...]]:
    """Resolve ``[(name_or_predicate, fn), ...]`` to ``{name: (fn, ...)}``, validating both sides (``what`` names
    the argument in errors: ``fwd_hooks`` or ``bwd_hooks``)."""
    if isinstance(fwd_hooks, tuple) and len(fwd_hooks) == 2 and callable(fwd_hooks[1]):
        fwd_hooks = [fwd_hooks]  # a single (name, fn) pair
    if isinstance(fwd_hooks, str) or not isinstance(fwd_hooks, Iterable):
        raise TypeError(f"{what} must be a list of (name_or_predicate, fn) pairs, got {fwd_hooks!r}")
    hooks: dict[str, tuple[HookFn, ...]] = {}
    arg = "gradient" if what == "bwd_hooks" else "activation"
    for item in fwd_hooks:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise TypeError(f"{what} must be a list of (name_or_predicate, fn) pairs, got item {item!r}")
        selector, fn = item
        if not callable(fn):
            raise TypeError(f"hook for {selector!r} is {type(fn).__name__}, not a callable fn({arg}, hook)")
        if not isinstance(selector, str) and not callable(selector):
            raise TypeError(f"hook selector must be a name or a predicate, got {type(selector).__name__}")
        for name in resolve_names(selector, valid):
            hooks[name] = (*hooks.get(name, ()), fn)
    return hooks
