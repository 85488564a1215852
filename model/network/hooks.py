"""Hook points and the per-call hook context.

A :class:`HookPoint` is an identity placed at every named activation of the model. Hooks are
never stored on the modules: :func:`hook_context` puts them in a :class:`contextvars.ContextVar`
for the duration of one call (``run_with_hooks``, ``run_with_cache`` or ``with model.hooks()``),
so another thread, or the same thread after the call, never sees them, and an exception cannot
leave one behind. With no active context a HookPoint costs one ``ContextVar.get``.

A hook is ``fn(activation, hook) -> Tensor | None`` (TransformerLens's signature): ``hook.name``
is the full hook name and ``hook.layer()`` its block index. Returning ``None`` keeps the
activation; returning a tensor of the same shape replaces it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

HookFn = Callable[[Tensor, "HookPoint"], "Tensor | None"]
NameOrPredicate = str | Callable[[str], bool]

# owner token -> _HookState, for the models that have hooks in the current call
_ACTIVE: ContextVar[dict[object, _HookState] | None] = ContextVar("minigpt_hooks", default=None)


@dataclass
class _HookState:
    """Hooks and caches of one model for one call (immutable once entered)."""

    hooks: dict[str, tuple[HookFn, ...]] = field(default_factory=dict)
    caches: tuple[tuple[frozenset[str], dict[str, Tensor], torch.device | None], ...] = ()

    def __post_init__(self) -> None:
        self.wanted = frozenset(self.hooks).union(*(names for names, _, _ in self.caches))

    def merged(self, other: _HookState) -> _HookState:
        hooks = dict(self.hooks)
        for name, fns in other.hooks.items():
            hooks[name] = hooks.get(name, ()) + fns
        return _HookState(hooks, self.caches + other.caches)


class HookPoint(nn.Module):
    """Identity on an activation, where hooks and caches attach by name.

    ``name`` (the module path, e.g. ``blocks.0.attn.hook_pattern``) and ``owner`` (a token of
    the model that contains it) are set by the model after construction.
    """

    def __init__(self) -> None:
        super().__init__()
        self.name = ""
        self.owner: object = None

    def __call__(self, x: Tensor) -> Tensor:  # bypasses nn.Module.__call__: no per-call overhead
        active = _ACTIVE.get()
        if active is None:
            return x
        state = active.get(self.owner)
        if state is None or self.name not in state.wanted:
            return x
        return self._fire(state, x)

    def is_active(self) -> bool:
        """Whether a hook or a cache of the current call wants this activation."""
        active = _ACTIVE.get()
        state = None if active is None else active.get(self.owner)
        return state is not None and self.name in state.wanted

    def is_hooked(self) -> bool:
        """Whether a hook function (not just a cache) of the current call is attached here."""
        active = _ACTIVE.get()
        state = None if active is None else active.get(self.owner)
        return state is not None and self.name in state.hooks

    def layer(self) -> int:
        """Index of the block this hook point lives in (ValueError outside the blocks)."""
        match = re.match(r"blocks\.(\d+)\.", self.name)
        if match is None:
            raise ValueError(f"hook '{self.name}' is not inside a block, so it has no layer")
        return int(match.group(1))

    def extra_repr(self) -> str:
        return f"name={self.name!r}"

    def _fire(self, state: _HookState, x: Tensor) -> Tensor:
        for fn in state.hooks.get(self.name, ()):
            out = fn(x, self)
            if out is None:
                continue
            if not isinstance(out, Tensor):
                raise TypeError(
                    f"hook {_fn_name(fn)} on '{self.name}' returned {type(out).__name__}; "
                    "a hook must return a Tensor of the activation's shape, or None"
                )
            if out.shape != x.shape:
                raise ValueError(
                    f"hook {_fn_name(fn)} on '{self.name}' returned shape {tuple(out.shape)}, but "
                    f"the activation has shape {tuple(x.shape)}; return a tensor of the same "
                    "shape (or None to leave it unchanged)"
                )
            if out.dtype != x.dtype or out.device != x.device:
                raise TypeError(
                    f"hook {_fn_name(fn)} on '{self.name}' returned {out.dtype} on {out.device}, but the activation "
                    f"is {x.dtype} on {x.device}; return a tensor of the same dtype and device (e.g. out.to(act))"
                )
            x = out
        for names, store, device in state.caches:
            if self.name in names:
                value = x.detach()
                store[self.name] = value if device is None else value.to(device)
        return x


def _fn_name(fn: Callable) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


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
    fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]], valid: Sequence[str]
) -> dict[str, tuple[HookFn, ...]]:
    """Resolve ``[(name_or_predicate, fn), ...]`` to ``{name: (fn, ...)}``, validating both sides."""
    if isinstance(fwd_hooks, tuple) and len(fwd_hooks) == 2 and callable(fwd_hooks[1]):
        fwd_hooks = [fwd_hooks]  # a single (name, fn) pair
    if isinstance(fwd_hooks, str) or not isinstance(fwd_hooks, Iterable):
        raise TypeError(f"fwd_hooks must be a list of (name_or_predicate, fn) pairs, got {fwd_hooks!r}")
    hooks: dict[str, tuple[HookFn, ...]] = {}
    for item in fwd_hooks:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise TypeError(f"fwd_hooks must be a list of (name_or_predicate, fn) pairs, got item {item!r}")
        selector, fn = item
        if not callable(fn):
            raise TypeError(f"hook for {selector!r} is {type(fn).__name__}, not a callable fn(activation, hook)")
        if not isinstance(selector, str) and not callable(selector):
            raise TypeError(f"hook selector must be a name or a predicate, got {type(selector).__name__}")
        for name in resolve_names(selector, valid):
            hooks[name] = (*hooks.get(name, ()), fn)
    return hooks


@contextmanager
def hook_context(
    owner: object,
    hooks: dict[str, tuple[HookFn, ...]] | None = None,
    cache: tuple[frozenset[str], dict[str, Tensor], torch.device | None] | None = None,
) -> Iterator[None]:
    """Activate hooks (and a cache) of the model ``owner`` for the body of the ``with``.

    Nested contexts add to the outer ones; on exit, by return or exception, the previous
    state is restored exactly.
    """
    state = _HookState(hooks or {}, (cache,) if cache is not None else ())
    active = _ACTIVE.get() or {}
    previous = active.get(owner)
    new = dict(active)
    new[owner] = previous.merged(state) if previous is not None else state
    token = _ACTIVE.set(new)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active_hook_count() -> int:
    """Number of hook functions active in this thread's context (0 outside any call)."""
    active = _ACTIVE.get() or {}
    return sum(len(fns) for state in active.values() for fns in state.hooks.values())
