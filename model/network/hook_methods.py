"""TransformerLens's hook API on a MiniGPT: ``run_with_hooks``, ``run_with_cache``, ``add_hook``, ``reset_hooks``,
``hooks``, and the ``set_use_*`` flags of the default cache.

Mixed into :class:`~model.network.minigpt.MiniGPT`. What is shared, exactly:

- ``run_with_hooks``, ``run_with_cache(fwd_hooks=...)`` and ``with model.hooks(...)`` stay **per call**: their hooks
  live in a context variable for the call (or the ``with`` block) and no other thread ever sees them. Their backward
  hooks (``bwd_hooks=``, ``run_with_cache(incl_bwd=True)``) attach to that call's activation tensors: they fire in
  a backward through that call's graph, and end with it (:mod:`model.network.hooks`).
- ``model.add_hook(name, fn)`` is TransformerLens's one piece of hook *state*: the hook fires on every later forward
  of this model **in the thread that added it** (kept in a ``threading.local``), until ``model.reset_hooks()`` in
  that thread. Another thread (another Streamlit session) sharing the model never sees it, and cannot remove it.
  ``add_hook(name, fn, dir="bwd")`` does the same for the gradients of every later forward's activations.
  ``is_permanent=True`` hooks survive ``reset_hooks()`` unless ``including_permanent=True``.
- ``model.set_use_attn_result(True)`` is per *model*, shared by every thread, as in TransformerLens: it makes the
  default cache of ``run_with_cache`` (no ``names_filter``) record ``attn.hook_result`` too. It changes what a
  default cache holds, never a number the model computes, so a thread that did not ask for it gets a larger cache
  at worst; set it once, where the model is built, in threaded programs.

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> tokens = model.to_tokens("hello")
    >>> clean = model(tokens)
    >>> model.add_hook("blocks.0.hook_attn_out", lambda act, hook: act * 0)
    >>> bool((model(tokens) != clean).any()), len(model.hook_list())
    (True, 1)
    >>> model.reset_hooks()
    >>> bool(torch.equal(model(tokens), clean))
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from model.network.cache import ActivationCache, check_cache_size, check_device, hook_shapes, position_axis
from model.network.decompose import SliceLike, apply_slice, check_slice
from model.network.hook_selection import build_hooks, resolve_names
from model.network.hooks import (
    HookFn,
    NameOrPredicate,
    add_persistent_hook,
    check_direction,
    check_hook_fn,
    clear_last_contexts,
    hook_context,
    persistent_hooks,
    reset_persistent_hooks,
)
from model.network.weights import CacheWeights


def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


class HookMethods:
    """``run_with_hooks`` / ``run_with_cache`` / ``add_hook`` / ``reset_hooks`` / ``hooks`` / ``set_use_*`` (see the
    module docstring)."""

    _hook_owner: object  # these, _input, max_cache_bytes and named_modules are MiniGPT's
    hook_names: list[str]
    cfg: Any
    max_cache_bytes: float
    use_attn_result: bool
    use_attn_in: bool
    use_split_qkv_input: bool
    use_hook_mlp_in: bool

    def resolve_hooks(self, fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]]) -> dict[str, tuple[HookFn, ...]]:
        """``{hook name: (fn, ...)}`` for ``[(name_or_predicate, fn)]``; unknown names -> KeyError with suggestions."""
        return build_hooks(fwd_hooks, self.hook_names)

    def run_with_hooks(
        self, input: Any, fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]] = (), **kwargs: Any
    ) -> Any:
        """``forward(input, **kwargs)`` with ``fwd_hooks = [(name_or_predicate, fn), ...]`` active for this call only
        (``bwd_hooks``, ``reset_hooks_end`` and ``clear_contexts`` are TransformerLens's and accepted as such)."""
        hook_args = {k: kwargs.pop(k) for k in ("bwd_hooks", "reset_hooks_end", "clear_contexts") if k in kwargs}
        with self.hooks(fwd_hooks, **hook_args):
            return self(input, **kwargs)

    def run_with_cache(
        self,
        input: Any,
        names_filter: NameOrPredicate | Iterable[str] | None = None,
        device: str | torch.device | None = None,
        *,
        fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]] = (),
        remove_batch_dim: bool = False,
        return_cache_object: bool = True,
        incl_bwd: bool = False,
        pos_slice: SliceLike = None,
        **kwargs: Any,
    ) -> tuple[Any, ActivationCache]:
        """``(forward output, ActivationCache)``.

        ``names_filter``: None (every hook but the optional ones, ``attn.hook_result`` and the per-head inputs, which
        are recorded when named or after ``set_use_attn_result(True)`` and the like), a name, a list of names, or a
        predicate. ``device`` moves the cache.
        ``remove_batch_dim=True`` (batch 1 only) drops the batch axis, as TransformerLens does: then
        ``cache["pattern", 0][h]`` is head ``h`` (without it, that indexes the batch). ``return_cache_object=False``
        gives a plain dict. Other keywords (``stop_at_layer``, ``attention_mask``, ...) go to :meth:`forward`.
        A cache larger than ``model.max_cache_bytes`` (default 4 GiB; set it per model, ``float("inf")``
        turns the guard off) is refused before anything runs, with a ValueError naming the estimate;
        ``model.hook_shapes(batch, pos)`` tells what each activation costs. ``incl_bwd=True`` (TransformerLens's)
        then runs ``backward()`` on the output, which must be a scalar (``return_type="loss"``), and caches each
        named activation's gradient as ``name + "_grad"`` (the parameters' ``.grad`` accumulate, as in TL).
        ``pos_slice`` keeps only those positions on each activation's position axis (a pattern's query axis), as
        TransformerLens's ``run_with_cache`` does: the axis stays, even for an int.

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> model = MiniGPT(ModelConfig(), seed=0)
            >>> loss, cache = model.run_with_cache("hello", names_filter="hook_embed", incl_bwd=True,
            ...                                    return_type="loss")
            >>> sorted(cache.keys()), cache["hook_embed_grad"].shape
            (['hook_embed', 'hook_embed_grad'], torch.Size([1, 6, 64]))
        """
        if names_filter is None:
            names = [n for n in self.hook_names if self.in_default_cache(n)]
        else:
            names = resolve_names(names_filter, self.hook_names)
        for name in ("remove_batch_dim", "return_cache_object", "incl_bwd"):
            if not isinstance(locals()[name], bool):
                raise TypeError(f"{name} must be True or False, got {locals()[name]!r}")
        if incl_bwd and (kwargs.get("return_type") != "loss" or kwargs.get("loss_per_token")):
            raise ValueError(
                "incl_bwd=True runs backward() on the model's output, which must be one number: pass "
                'return_type="loss" (TransformerLens assumes the same)'
            )
        if incl_bwd and not torch.is_grad_enabled():
            raise ValueError("incl_bwd=True needs gradients: call run_with_cache outside torch.no_grad() and inference")
        check_slice(pos_slice, "pos_slice")
        mask = kwargs.pop("attention_mask", None)
        prepend_bos, padding_side = kwargs.pop("prepend_bos", True), kwargs.pop("padding_side", None)
        tokens, mask = self._input(input, prepend_bos, padding_side, mask)
        if remove_batch_dim and tokens.shape[0] != 1:
            raise ValueError(f"remove_batch_dim=True needs a batch of 1, got {tokens.shape[0]} sequences")
        shapes, size = self.hook_shapes(*tokens.shape), self.W_E.element_size()
        check_cache_size(shapes, names * (1 + incl_bwd), size, self.max_cache_bytes, tuple(tokens.shape))  # the guard
        store: dict[str, Tensor] = {}
        cache_spec = (frozenset(names), store, None if device is None else check_device(device))
        with hook_context(self._hook_owner, self.resolve_hooks(fwd_hooks), cache_spec,
                          bwd_cache=cache_spec if incl_bwd else None):  # fmt: skip
            out = self(tokens, attention_mask=mask, **kwargs)
        if incl_bwd:
            if not out.requires_grad:
                raise ValueError(
                    "incl_bwd=True: nothing in this forward needs a gradient (every parameter frozen?), so there is "
                    "no backward to run; unfreeze the weights (model.requires_grad_(True))"
                )
            out.backward()
        weights = CacheWeights.of(self)
        order = [k for n in self.hook_names for k in (n, n + "_grad")]
        pos_slice = [pos_slice] if isinstance(pos_slice, int) else pos_slice
        kept = {k: apply_slice(store[k], pos_slice, position_axis(k)) for k in order if k in store}
        cache = ActivationCache(kept, weights)
        cache = cache.to(device) if device is not None else cache
        if remove_batch_dim:
            cache.remove_batch_dim()
        return out, cache if return_cache_object else dict(cache.items())

    def hook_shapes(self, batch: int, pos: int) -> dict[str, tuple[int, ...]]:
        """Shape of every hook's activation for a ``[batch, pos]`` input, without running the model."""
        return hook_shapes(self.cfg, self.hook_names, batch, pos)

    def add_hook(
        self,
        name: NameOrPredicate,
        hook: HookFn,
        dir: str = "fwd",
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> None:
        """Attach ``hook`` to ``name`` (a hook name or a predicate on names) for every later forward of this model in
        this thread, until :meth:`reset_hooks` (see the module docstring); ``dir="bwd"``: on the gradient of every
        later forward's activation there, ``fn(grad, hook)``. ``level`` is accepted and unused (it scopes
        TransformerLens's nested contexts, which ``with model.hooks()`` blocks are here).

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> model = MiniGPT(ModelConfig(), seed=0)
            >>> model.add_hook(lambda name: name.endswith("hook_z"), lambda z, hook: None)
            >>> len(model.hook_list()), model.reset_hooks() is None, len(model.hook_list())
            (2, True, 0)
        """
        check_direction(dir)
        _check_flag("is_permanent", is_permanent)
        _check_flag("prepend", prepend)
        check_hook_fn(hook, name)
        if not isinstance(name, str) and not callable(name):
            raise TypeError(f"name must be a hook name or a predicate on names, got {type(name).__name__}")
        names = resolve_names(name, self.hook_names)
        add_persistent_hook(self._hook_owner, names, hook, is_permanent, prepend, dir)

    def reset_hooks(
        self, clear_contexts: bool = True, direction: str = "both", including_permanent: bool = False, level=None
    ) -> None:
        """Remove the hooks :meth:`add_hook` attached in this thread in ``direction`` (``"fwd"``, ``"bwd"`` or
        ``"both"``; not the permanent ones unless ``including_permanent``). Hooks of ``run_with_hooks`` need no
        reset: they end with their call (a backward hook, with the graph of its call's forward).

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> MiniGPT(ModelConfig(), seed=0).reset_hooks(including_permanent=True)
        """
        check_direction(direction, both=True)
        _check_flag("clear_contexts", clear_contexts)
        _check_flag("including_permanent", including_permanent)
        reset_persistent_hooks(self._hook_owner, including_permanent, clear_contexts, direction)
        if clear_contexts:
            clear_last_contexts(self._hook_owner)

    def remove_all_hook_fns(
        self, direction: str = "both", including_permanent: bool = False, level: int | None = None
    ) -> None:
        """TransformerLens's name for :meth:`reset_hooks` without clearing the hooks' contexts."""
        self.reset_hooks(False, direction, including_permanent, level)

    @property
    def mod_dict(self) -> dict[str, torch.nn.Module]:
        """``{module name: module}`` for every submodule (TransformerLens's ``mod_dict``)."""
        return {name: module for name, module in self.named_modules() if name}

    def hook_list(self) -> list[tuple[str, HookFn, bool, str]]:
        """``[(hook name, fn, is_permanent, dir), ...]`` attached with :meth:`add_hook` in this thread, in firing order.

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> MiniGPT(ModelConfig(), seed=0).hook_list()
            []
        """
        return persistent_hooks(self._hook_owner)

    @contextmanager
    def hooks(
        self,
        fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]] = (),
        bwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
    ) -> Iterator[Any]:
        """Hooks active for every forward of *this thread* inside the ``with`` block, and gone after it
        (``reset_hooks_end=False`` keeps them afterwards, as if added with :meth:`add_hook`). ``bwd_hooks`` attach to
        the gradients of the activations those forwards make: they fire in a backward run later, even after the
        block (TransformerLens drops them at its end unless ``reset_hooks_end=False``).

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> model = MiniGPT(ModelConfig(), seed=0)
            >>> with model.hooks([("hook_embed", lambda act, hook: act * 0)]):
            ...     zeroed = model("hi")
            >>> bool(torch.equal(zeroed, model("hi")))
            False
            >>> grads = {}
            >>> with model.hooks(bwd_hooks=[("hook_embed", lambda grad, hook: grads.update(embed=grad))]):
            ...     loss = model("hello", return_type="loss")
            >>> loss.backward()
            >>> grads["embed"].shape
            torch.Size([1, 6, 64])
        """
        _check_flag("reset_hooks_end", reset_hooks_end)
        _check_flag("clear_contexts", clear_contexts)
        resolved = self.resolve_hooks(fwd_hooks)
        backward = build_hooks(bwd_hooks, self.hook_names, "bwd_hooks")
        with hook_context(self._hook_owner, resolved, bwd_hooks=backward):
            yield self
        if not reset_hooks_end:
            for direction, hooks in (("fwd", resolved), ("bwd", backward)):
                for name, fns in hooks.items():
                    for fn in fns:
                        add_persistent_hook(self._hook_owner, [name], fn, False, False, direction)

    def in_default_cache(self, name: str) -> bool:
        """Whether ``run_with_cache`` without ``names_filter`` records hook ``name``: all but the optional ones
        (``attn.hook_result``, ``hook_attn_in``, ``hook_q/k/v_input``, ``hook_mlp_in``) unless their flag is set."""
        flags = {"hook_result": self.use_attn_result, "hook_attn_in": self.use_attn_in,
                 "hook_mlp_in": self.use_hook_mlp_in}  # fmt: skip
        suffix = name.rsplit(".", 1)[-1]
        return flags.get(suffix, self.use_split_qkv_input if suffix.endswith("_input") else True)

    def set_use_attn_in(self, use_attn_in: bool) -> None:
        """The default cache records ``hook_attn_in`` (each head's copy of the residual it reads, before ``ln1``);
        a hook or a cache named there works either way (TransformerLens needs the flag first)."""
        self.use_attn_in = _check_flag("use_attn_in", use_attn_in)

    def set_use_split_qkv_input(self, use_split_qkv_input: bool) -> None:
        """The default cache records ``hook_q_input``, ``hook_k_input``, ``hook_v_input`` (each head's query, key and
        value input, before ``ln1``); hooks there work either way (TransformerLens needs the flag first).

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> model = MiniGPT(ModelConfig(), seed=0)
            >>> model.set_use_split_qkv_input(True)
            >>> model.run_with_cache("hi")[1]["blocks.0.hook_q_input"].shape  # [batch, pos, head, d_model]
            torch.Size([1, 3, 4, 64])
        """
        self.use_split_qkv_input = _check_flag("use_split_qkv_input", use_split_qkv_input)

    def set_use_hook_mlp_in(self, use_hook_mlp_in: bool) -> None:
        """The default cache records ``hook_mlp_in`` (the MLP's input before ``ln2``); hooks there work either way."""
        self.use_hook_mlp_in = _check_flag("use_hook_mlp_in", use_hook_mlp_in)

    def set_use_attn_result(self, use_attn_result: bool) -> None:
        """Whether the default cache of ``run_with_cache`` records ``attn.hook_result`` (per model, every thread;
        see the module docstring). A hook on ``hook_result`` works either way.

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> model = MiniGPT(ModelConfig(), seed=0)
            >>> model.set_use_attn_result(True)
            >>> "blocks.0.attn.hook_result" in model.run_with_cache("hi")[1]
            True
        """
        self.use_attn_result = _check_flag("use_attn_result", use_attn_result)
