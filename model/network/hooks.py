"""Hook points and the per-call hook context.

A :class:`HookPoint` is an identity placed at every named activation of the model. Hooks are
never stored on the modules: :func:`hook_context` puts them in a :class:`contextvars.ContextVar`
for the duration of one call (``run_with_hooks``, ``run_with_cache`` or ``with model.hooks()``),
so another thread, or the same thread after the call, never sees them, and an exception cannot
leave one behind. With no active context a HookPoint costs one ``ContextVar.get``.

A hook is ``fn(activation, hook) -> Tensor | None`` (TransformerLens's signature): ``hook.name``
is the full hook name, ``hook.layer()`` its block index and ``hook.ctx`` a dict that lives as long
as the call (shared by the hooks of one ``run_with_hooks`` or ``with model.hooks()`` block, per hook
point). Returning ``None`` keeps the activation; returning a tensor of the same shape replaces it.

A **backward** hook (``bwd_hooks=``, ``add_hook(..., dir="bwd")``) is ``fn(grad, hook) -> Tensor | None``: it sees
the gradient of the loss with respect to the hook point's output when a backward runs through it, and may return
a replacement. It is attached in the forward, to that call's own activation tensor (``Tensor.register_hook``), so
it belongs to that forward's graph alone: it fires in whichever later backward runs through that graph, in the
thread that runs it, and goes when the graph goes, whether or not a backward ever ran or one raised. No hook is
left on a module, so another call, or another thread, never meets it (TransformerLens's module hooks are global
state: its issue #1323).

The one exception to "per call" is TransformerLens's ``model.add_hook(name, fn)``: such a hook fires
on every later forward of *that model in the thread that added it*, until ``model.reset_hooks()``
(:func:`add_persistent_hook`). It is kept in a ``threading.local``: another thread (another
Streamlit session) never sees it. With none added anywhere a hook point pays one global read more.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

HookFn = Callable[[Tensor, "HookPoint"], "Tensor | None"]
NameOrPredicate = str | Callable[[str], bool]

# owner token -> _HookState, for the models that have hooks in the current call
_ACTIVE: ContextVar[dict[object, _HookState] | None] = ContextVar("minigpt_hooks", default=None)
# model.add_hook: per thread, owner token -> _HookState; _ADDED_ANY counts the (thread, model) pairs holding some
_ADDED = threading.local()
_ADDED_ANY = [0]
_ADDED_LOCK = threading.Lock()


CacheSpec = tuple[frozenset[str], dict[str, Tensor], "torch.device | None"]  # names, where to keep them, device


@dataclass
class _HookState:
    """Hooks and caches of one model for one call (immutable once entered); ``bwd_*`` act on gradients."""

    hooks: dict[str, tuple[HookFn, ...]] = field(default_factory=dict)
    caches: tuple[CacheSpec, ...] = ()
    bwd_hooks: dict[str, tuple[HookFn, ...]] = field(default_factory=dict)
    bwd_caches: tuple[CacheSpec, ...] = ()  # gradients kept as ``name + "_grad"``

    def __post_init__(self) -> None:
        self.backward = frozenset(self.bwd_hooks).union(*(names for names, _, _ in self.bwd_caches))
        self.wanted = frozenset(self.hooks).union(self.backward, *(names for names, _, _ in self.caches))
        self.ctx: dict[str, dict] = {}  # hook name -> hook.ctx, for the life of this state

    def merged(self, other: _HookState) -> _HookState:
        merged = _HookState(
            _joined(self.hooks, other.hooks), self.caches + other.caches, _joined(self.bwd_hooks, other.bwd_hooks),
            self.bwd_caches + other.bwd_caches,
        )  # fmt: skip
        merged.ctx = self.ctx  # the outer state's contexts stay the ones the hooks see
        return merged


def _joined(first: dict[str, tuple[HookFn, ...]], then: dict[str, tuple[HookFn, ...]]) -> dict[str, tuple]:
    """The hooks of ``first`` and then those of ``then``, per hook name, in firing order."""
    out = dict(first)
    for name, fns in then.items():
        out[name] = out.get(name, ()) + fns
    return out


def _added_states() -> dict[object, _HookState]:
    states = getattr(_ADDED, "states", None)
    if states is None:
        states = _ADDED.states = {}
        _ADDED.merged = {}
    return states


def current_state(owner: object) -> _HookState | None:
    """The hooks and caches of ``owner`` in force here: this call's, after those added with ``add_hook``."""
    active = _ACTIVE.get()
    state = None if active is None else active.get(owner)
    if not _ADDED_ANY[0]:
        return state
    added = _added_states().get(owner)
    if added is None or state is None:
        return added if state is None else state
    memo = _ADDED.merged.get(owner)
    if memo is None or memo[0] is not added or memo[1] is not state:
        memo = _ADDED.merged[owner] = (added, state, added.merged(state))
    return memo[2]


def add_persistent_hook(
    owner: object, names: list[str], fn: HookFn, permanent: bool, prepend: bool, direction: str = "fwd"
) -> None:
    """Add ``fn`` on ``names`` for ``owner`` in this thread, firing on every later forward (``direction="bwd"``: on
    the gradients of every later forward's activations; module docstring)."""
    entries = _entries()
    fresh = owner not in entries
    new = [(name, fn, permanent, direction) for name in names]
    entries[owner] = new + entries.get(owner, []) if prepend else entries.get(owner, []) + new
    if fresh:
        with _ADDED_LOCK:
            _ADDED_ANY[0] += 1
    _rebuild(owner)


def reset_persistent_hooks(
    owner: object,
    including_permanent: bool = False,
    clear_contexts: bool = False,
    direction: str = "both",
    name: str | None = None,
) -> int:
    """Remove the hooks added for ``owner`` in this thread in ``direction`` (``fwd``, ``bwd`` or ``both``; the
    permanent ones too with ``including_permanent``; at hook ``name`` only, if given); returns how many went."""
    entries = _entries()
    old = entries.get(owner, [])
    kept = [
        e
        for e in old
        if (e[2] and not including_permanent) or direction not in ("both", e[3]) or name not in (None, e[0])
    ]
    if kept:
        entries[owner] = kept
    elif owner in entries:
        del entries[owner]
        with _ADDED_LOCK:
            _ADDED_ANY[0] -= 1
    _rebuild(owner, clear_contexts)
    return len(old) - len(kept)


def persistent_hooks(owner: object) -> list[tuple[str, HookFn, bool, str]]:
    """``[(name, fn, is_permanent, direction), ...]`` added for ``owner`` in this thread, in firing order."""
    return list(_entries().get(owner, []))


def _entries() -> dict[object, list[tuple[str, HookFn, bool, str]]]:
    _added_states()
    entries = getattr(_ADDED, "entries", None)
    if entries is None:
        entries = _ADDED.entries = {}
    return entries


def _rebuild(owner: object, clear_contexts: bool = False) -> None:
    states, entries = _added_states(), _entries()
    old = states.pop(owner, None)
    _ADDED.merged.pop(owner, None)
    if owner not in entries:
        return
    hooks: dict[str, dict[str, tuple[HookFn, ...]]] = {"fwd": {}, "bwd": {}}
    for name, fn, _, direction in entries[owner]:
        hooks[direction][name] = (*hooks[direction].get(name, ()), fn)
    state = _HookState(hooks["fwd"], bwd_hooks=hooks["bwd"])
    if old is not None and not clear_contexts:
        state.ctx = old.ctx
    states[owner] = state


def any_wanted(points: Iterable[HookPoint]) -> bool:
    """Whether a hook or a cache in force here wants any of ``points`` (False at once when there is none)."""
    if _ACTIVE.get() is None and not _ADDED_ANY[0]:
        return False
    return any(point.is_active() for point in points)


def check_hook_fn(hook: object, name: object) -> None:
    """TypeError unless ``hook`` is callable (a hook function ``fn(activation, hook)`` for ``name``)."""
    if not callable(hook):
        raise TypeError(f"hook for {name!r} is {type(hook).__name__}, not a callable fn(activation, hook)")


def check_direction(dir: object, both: bool = False) -> str:
    """``dir`` checked: ``"fwd"`` (hooks on activations), ``"bwd"`` (on gradients), or ``"both"`` where allowed."""
    if dir not in ("fwd", "bwd", *(("both",) if both else ())):
        either = "'fwd', 'bwd' or 'both'" if both else "'fwd' (a hook on the activation) or 'bwd' (on its gradient)"
        raise ValueError(f"dir must be {either}, got {dir!r}")
    return dir


class HookPoint(nn.Module):
    """Identity on an activation, where hooks and caches attach by name.

    ``name`` (the module path, e.g. ``blocks.0.attn.hook_pattern``) and ``owner`` (a token of
    the model that contains it) are set by the model after construction.
    """

    def __init__(self, copies: bool = False) -> None:
        super().__init__()
        self.name = ""
        self.owner: object = None
        self.copies = copies  # hook functions get a copy: the activation given may be shared (a view, the residual)

    def __call__(self, x: Tensor) -> Tensor:  # bypasses nn.Module.__call__: no per-call overhead
        active = _ACTIVE.get()
        if active is None and not _ADDED_ANY[0]:
            return x
        state = current_state(self.owner)
        if state is None or self.name not in state.wanted:
            return x
        return self._fire(state, x)

    def is_active(self) -> bool:
        """Whether a hook or a cache of the current call wants this activation."""
        state = current_state(self.owner)
        return state is not None and self.name in state.wanted

    def is_hooked(self) -> bool:
        """Whether a hook function (not just a cache) of the current call is attached here, or a gradient is
        wanted here (a backward hook or cache): then the activation must be computed on the graph's path."""
        state = current_state(self.owner)
        return state is not None and (self.name in state.hooks or self.name in state.backward)

    def grad_wanted(self) -> bool:
        """Whether a backward hook or a gradient cache of the current call is attached here."""
        state = current_state(self.owner)
        return state is not None and self.name in state.backward

    @property
    def ctx(self) -> dict:
        """A dict for hooks to keep things in, per hook point (TransformerLens's ``hook.ctx``): the current call's;
        outside a call, what the last call of this thread kept there (``model.blocks[1].attn.hook_pattern.ctx``
        after ``run_with_hooks``), until ``model.reset_hooks()``; for hooks added with ``add_hook``, theirs."""
        state = current_state(self.owner)
        if state is None:
            return _last_contexts().get(self.owner, {}).get(self.name, {})
        return state.ctx.setdefault(self.name, {})

    def add_hook(
        self,
        hook: HookFn,
        dir: str = "fwd",
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> None:
        """TransformerLens's ``HookPoint.add_hook``: ``model.add_hook(this hook's name, hook, ...)`` (per thread, until
        ``model.reset_hooks()`` or :meth:`remove_hooks`); :meth:`add_perma_hook` with ``is_permanent=True``.

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> model = MiniGPT(ModelConfig(), seed=0)
            >>> model.blocks[0].attn.hook_pattern.add_hook(lambda pattern, hook: None)
            >>> model.hook_list()[0][0], model.blocks[0].attn.hook_pattern.remove_hooks(), model.hook_list()
            ('blocks.0.attn.hook_pattern', None, [])
        """
        check_hook_fn(hook, self.name)
        add_persistent_hook(self.owner, [self.name], hook, bool(is_permanent), bool(prepend), check_direction(dir))

    def add_perma_hook(self, hook: HookFn, dir: str = "fwd") -> None:
        self.add_hook(hook, dir=dir, is_permanent=True)

    def remove_hooks(self, dir: str = "fwd", including_permanent: bool = False, level: int | None = None) -> None:
        """Remove this hook point's hooks added in this thread in ``dir`` (``"fwd"``, ``"bwd"`` or ``"both"``)."""
        reset_persistent_hooks(
            self.owner, bool(including_permanent), direction=check_direction(dir, True), name=self.name
        )

    def layer(self) -> int:
        """Index of the block this hook point lives in (ValueError outside the blocks)."""
        match = re.match(r"blocks\.(\d+)\.", self.name)
        if match is None:
            raise ValueError(f"hook '{self.name}' is not inside a block, so it has no layer")
        return int(match.group(1))

    def extra_repr(self) -> str:
        return f"name={self.name!r}"

    def _fire(self, state: _HookState, x: Tensor) -> Tensor:
        fns = state.hooks.get(self.name, ())
        x = self._run(fns, x.clone() if fns and self.copies else x, "activation")
        _keep(state.caches, self.name, x)
        if self.name in state.backward and x.requires_grad:
            # a node of its own (a view), so that a later hook point's gradient hooks run before this one's, as a
            # backward reaches them; the hook lives on this call's tensor, and so with this call's graph only
            x = x.view_as(x)
            fns, caches, grad_name = state.bwd_hooks.get(self.name, ()), state.bwd_caches, self.name + "_grad"

            def on_grad(grad: Tensor) -> Tensor:
                grad = self._run(fns, grad, "gradient")
                _keep(caches, self.name, grad, grad_name)
                return grad

            x.register_hook(on_grad)
        return x

    def _run(self, fns: tuple[HookFn, ...], x: Tensor, what: str) -> Tensor:
        """``x`` through the hook functions ``fns`` in turn (each may return a replacement, or None)."""
        for fn in fns:
            out = fn(x, self)
            if out is None:
                continue
            if not isinstance(out, Tensor):
                raise TypeError(
                    f"hook {_fn_name(fn)} on '{self.name}' returned {type(out).__name__}; "
                    f"a hook must return a Tensor of the {what}'s shape, or None"
                )
            if out.shape != x.shape:
                raise ValueError(
                    f"hook {_fn_name(fn)} on '{self.name}' returned shape {tuple(out.shape)}, but "
                    f"the {what} has shape {tuple(x.shape)}; return a tensor of the same "
                    "shape (or None to leave it unchanged)"
                )
            if out.dtype != x.dtype or out.device != x.device:
                raise TypeError(
                    f"hook {_fn_name(fn)} on '{self.name}' returned {out.dtype} on {out.device}, but the {what} "
                    f"is {x.dtype} on {x.device}; return a tensor of the same dtype and device (e.g. out.to(act))"
                )
            x = out
        return x


def _keep(caches: tuple[CacheSpec, ...], name: str, x: Tensor, key: str | None = None) -> None:
    """Record ``x`` (detached) under ``key`` (default ``name``) in every cache that asked for ``name``."""
    for names, store, device in caches:
        if name in names:
            value = x.detach()
            store[key or name] = value if device is None else value.to(device)


def _fn_name(fn: Callable) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


@contextmanager
def hook_context(
    owner: object,
    hooks: dict[str, tuple[HookFn, ...]] | None = None,
    cache: CacheSpec | None = None,
    bwd_hooks: dict[str, tuple[HookFn, ...]] | None = None,
    bwd_cache: CacheSpec | None = None,
) -> Iterator[None]:
    """Activate hooks (and a cache) of the model ``owner`` for the forwards in the body of the ``with``; backward
    hooks (and a gradient cache) attach to the activations those forwards make (module docstring).

    Nested contexts add to the outer ones; on exit, by return or exception, the previous
    state is restored exactly.
    """
    state = _HookState(hooks or {}, (cache,) if cache is not None else (), bwd_hooks or {},
                       (bwd_cache,) if bwd_cache is not None else ())  # fmt: skip
    active = _ACTIVE.get() or {}
    previous = active.get(owner)
    new = dict(active)
    new[owner] = previous.merged(state) if previous is not None else state
    token = _ACTIVE.set(new)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
        if new[owner].ctx:  # what the hooks kept in hook.ctx stays readable after the call, in this thread
            _last_contexts()[owner] = new[owner].ctx


def _last_contexts() -> dict[object, dict[str, dict]]:
    """Per thread: owner token -> the ``hook.ctx`` dicts of its last call that kept something (until reset)."""
    last = getattr(_ADDED, "last_ctx", None)
    if last is None:
        last = _ADDED.last_ctx = {}
    return last


def clear_last_contexts(owner: object) -> None:
    """Forget the ``hook.ctx`` dicts kept from ``owner``'s last call in this thread."""
    _last_contexts().pop(owner, None)


def active_hook_count() -> int:
    """Number of hook functions (forward and backward) active in this thread's context (0 outside any call)."""
    active = _ACTIVE.get() or {}
    return sum(len(fns) for s in active.values() for hooks in (s.hooks, s.bwd_hooks) for fns in hooks.values())
