"""ActivationCache: a read-only mapping from hook name to the activation recorded there.

Keys are full hook names (``"blocks.1.attn.hook_pattern"``) or TransformerLens-style shorthand
tuples: ``cache["pattern", 1]``, ``cache["resid_pre", 0]``, ``cache["scale", 1, "ln2"]``,
``cache["embed"]``, ``cache["scale"]`` (the final LayerNorm); TransformerLens's aliases
(``cache["attn", 0]`` is the pattern), negative layers (``cache["resid_post", -1]``) and
``cache["result", l]`` (computed from ``z`` and ``W_O`` when not recorded). The cache holds detached
tensors and no reference to the model: ``run_with_cache`` attaches a read-only view of the few weights
its decomposition methods need (:class:`~model.network.weights.CacheWeights`; the methods are in
:mod:`model.network.cache_methods`).

Example:
    >>> import torch
    >>> cache = ActivationCache({"blocks.0.attn.hook_pattern": torch.ones(1, 4, 3, 3)})
    >>> cache["pattern", 0].shape
    torch.Size([1, 4, 3, 3])
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType

import torch
from torch import Tensor

from model.network.cache_methods import DecompositionMethods
from model.network.config import ModelConfig
from model.network.decompose import SliceLike, apply_slice, head_results
from model.network.weights import CacheWeights


def _let_allocator_keep_freed_caches() -> None:
    """Free one block just under glibc's 32 MiB dynamic-threshold ceiling, once, at import.

    A full cache keeps every activation alive, so the heap grows by the cache's size during
    ``run_with_cache`` and shrinks when the cache is dropped. glibc returns freed heap above its
    trim threshold (128 KiB at process start) to the OS, and the next call page-faults it all
    back in: at the locked config that made ``run_with_cache`` ~1.5x slower than needed. glibc
    raises its thresholds (mmap 32 MiB, trim 64 MiB) by itself the first time a large block is
    freed, as happens in any session that has ever run a bigger batch; doing it here makes the
    speed not depend on that history. Elsewhere than glibc this is a no-op allocation.
    """
    torch.empty(32 * 2**20 - 2**16, dtype=torch.uint8)


_let_allocator_keep_freed_caches()


def check_device(device: object) -> torch.device:
    """``device`` as a torch.device that exists on this machine; TypeError/ValueError saying why not."""
    if not isinstance(device, str | torch.device | int) or isinstance(device, bool):
        raise TypeError(f"device must be a str such as 'cpu' or 'cuda:0', or a torch.device, got {device!r}")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device={device!r} is not a device name; use e.g. 'cpu' or 'cuda:0'") from None
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        raise ValueError(f"device {str(device)!r} is not available on this machine ({err}); use 'cpu'") from None
    return device


_ATTN = {"q", "k", "v", "z", "rot_q", "rot_k", "attn_scores", "pattern", "result"}
_MLP = {"pre", "post"}
_BLOCK = {"resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"}
_TOP = {"embed": "hook_embed", "pos_embed": "hook_pos_embed"}
# TransformerLens's aliases (utils.get_act_name): "attn" is the pattern, "a"/"m" the sublayer types
_NAME_ALIASES = {"attn": "pattern", "attn_logits": "attn_scores", "key": "k", "query": "q", "value": "v",
                 "mlp_pre": "pre", "mlp_post": "post"}  # fmt: skip
_SUBLAYER_ALIASES = {"a": "attn", "attention": "attn", "m": "mlp", "b": None, "block": None, "blocks": None}
_SHORTHANDS = _ATTN | _MLP | _BLOCK | set(_TOP) | {"scale", "normalized"} | set(_NAME_ALIASES)
_COMPACT = re.compile(r"([a-z_]+?)(\d+)([a-z]*)$")  # "pattern1", "z0a": TransformerLens's compact form


def act_name(name: str, layer: int | None = None, sublayer: str | None = None) -> str:
    """Full hook name from shorthand: ``act_name("pattern", 1) == "blocks.1.attn.hook_pattern"``.

    TransformerLens's aliases work (``"attn"`` is the pattern, ``"attn_logits"`` the scores, ``"key"``, ``"query"``,
    ``"value"``, ``"mlp_pre"``, ``"mlp_post"``; sublayer ``"a"``/``"m"``). ``"scale"`` and ``"normalized"`` of a
    block take sublayer ``"ln1"`` (the default; also ``"attn"``) or ``"ln2"`` (``"mlp"``).
    """
    name = _NAME_ALIASES.get(name, name)
    sublayer = _SUBLAYER_ALIASES.get(sublayer, sublayer)
    if name in _TOP and layer is None:
        return _TOP[name]
    if name in ("scale", "normalized"):
        if layer is None:
            return f"ln_final.hook_{name}"
        return f"blocks.{layer}.{ {'attn': 'ln1', 'mlp': 'ln2'}.get(sublayer, sublayer or 'ln1') }.hook_{name}"
    if layer is None:
        raise KeyError(f"shorthand {name!r} needs a layer, e.g. cache[{name!r}, 0]")
    if name in _ATTN:
        return f"blocks.{layer}.attn.hook_{name}"
    if name in _MLP:
        return f"blocks.{layer}.mlp.hook_{name}"
    if name in _BLOCK:
        return f"blocks.{layer}.hook_{name}"
    raise KeyError(f"unknown shorthand {name!r}; known shorthands are {sorted(_SHORTHANDS)}")


def position_axis(name: str) -> int:
    """The position axis of hook ``name``'s activation (or its ``_grad``), from the end: ``-3`` for the per-head
    ``[batch, pos, head, ...]`` ones (``q``, ``k``, ``v``, ``z``, ``result``, the rotated ``q`` / ``k`` and the
    per-head inputs), else ``-2`` (a pattern's or scores' query axis)."""
    per_head = ("hook_q", "hook_k", "hook_v", "hook_z", "hook_result", "hook_rot_q", "hook_rot_k", "_input", "attn_in")
    return -3 if name.removesuffix("_grad").endswith(per_head) else -2


class ActivationCache(DecompositionMethods, Mapping[str, Tensor]):
    """Read-only ``{hook name: activation}`` with shorthand keys (see the module docstring).

    ``model`` (optional: a MiniGPT, or the :class:`~model.network.weights.CacheWeights` view of one) gives the
    decomposition methods the few weights they read; ``run_with_cache`` attaches it. ``has_batch_dim`` is False
    after :meth:`remove_batch_dim`.
    """

    def __init__(self, activations: Mapping[str, Tensor], model: object = None, has_batch_dim: bool = True) -> None:
        if not isinstance(activations, Mapping):
            raise TypeError(f"activations must be a mapping of hook name to tensor, got {type(activations).__name__}")
        if not isinstance(has_batch_dim, bool):
            raise TypeError(f"has_batch_dim must be True or False, got {has_batch_dim!r}")
        self._acts = MappingProxyType(dict(activations))
        self.weights = model if model is None or isinstance(model, CacheWeights) else CacheWeights.of(model)
        self.has_batch_dim = has_batch_dim

    def _n_layers(self) -> int:
        if self.weights is not None:
            return self.weights.cfg.n_layers
        layers = [int(m.group(1)) for k in self._acts if (m := re.match(r"blocks\.(\d+)\.", k))]
        return max(layers, default=-1) + 1

    def _key(self, key: str | tuple) -> str:
        if isinstance(key, tuple):
            if not key or not isinstance(key[0], str):
                raise TypeError(f"a tuple key is (shorthand, layer[, sublayer]), got {key!r}")
            if len(key) > 1 and isinstance(key[1], int) and not isinstance(key[1], bool) and key[1] < 0:
                key = (key[0], self._n_layers() + key[1], *key[2:])  # negative layers count from the top
            return act_name(*key)
        if isinstance(key, str):
            if key in self._acts or key not in _SHORTHANDS:
                compact = _COMPACT.match(key) if key not in self._acts and "." not in key else None
                if compact and _NAME_ALIASES.get(compact.group(1), compact.group(1)) in _SHORTHANDS:
                    return act_name(compact.group(1), int(compact.group(2)), compact.group(3) or None)
                return key
            return act_name(key)  # shorthand: "embed", "scale" (ln_final); "pattern" says it needs a layer
        raise TypeError(f"cache keys are hook names or (shorthand, layer) tuples, got {type(key).__name__}")

    def __getitem__(self, key: str | tuple) -> Tensor:
        name = self._key(key)
        if name in self._acts:
            return self._acts[name]
        if name.endswith("attn.hook_result") and name[: -len("result")] + "z" in self._acts and self.weights:
            return self._result_from_z(int(name.split(".")[1]))  # computed from z and W_O, as TransformerLens does
        close = difflib.get_close_matches(name, list(self._acts), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(map(repr, close))}?" if close else "it was not recorded"
        extra = (
            " (hook_result is only recorded when asked for: pass names_filter naming it, or record hook_z with a "
            "cache from run_with_cache, from which it is computed)"
            if name.endswith("hook_result")
            else ""
        )
        raise KeyError(f"{name!r} is not in this cache; {hint}{extra}")

    def __contains__(self, key: object) -> bool:
        try:
            return self._key(key) in self._acts  # type: ignore[arg-type]
        except (KeyError, TypeError):
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._acts)

    def __len__(self) -> int:
        return len(self._acts)

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} activations: {', '.join(list(self._acts)[:4])}, ...)"

    def to(self, device: str | torch.device, move_model: bool = False) -> ActivationCache:
        """A copy with every tensor on ``device`` (``move_model`` is accepted for TransformerLens code: the cache
        holds no model, only a view of some weights, which moves with it)."""
        device = check_device(device)
        weights = None if self.weights is None else self.weights.to(device)
        return ActivationCache({k: v.to(device) for k, v in self._acts.items()}, weights, self.has_batch_dim)

    def compute_head_results(self) -> None:
        """Record every layer's ``attn.hook_result`` (``z_h @ W_O[h]``, per head) from its ``hook_z``, in place, as
        TransformerLens's ``compute_head_results`` does (the decompositions compute it by themselves)."""
        if self.weights is None:
            raise ValueError("compute_head_results needs the model's W_O: make the cache with model.run_with_cache")
        acts = dict(self._acts)
        for layer in range(self._n_layers()):
            if f"blocks.{layer}.attn.hook_z" in acts:
                acts[f"blocks.{layer}.attn.hook_result"] = head_results(acts, self.weights, layer)
        self._acts = MappingProxyType(acts)

    def apply_slice_to_batch_dim(self, batch_slice: SliceLike) -> ActivationCache:
        """A new cache of the batch entries ``batch_slice`` picks (TransformerLens's ``Slice``: an int drops the
        batch axis, as ``remove_batch_dim`` does)."""
        if not self.has_batch_dim:
            raise ValueError("this cache has no batch axis left to slice (remove_batch_dim ran)")
        acts = {k: apply_slice(v, batch_slice, 0) for k, v in self._acts.items()}
        return ActivationCache(acts, self.weights, has_batch_dim=not isinstance(batch_slice, int))

    def remove_batch_dim(self) -> ActivationCache:
        """Drop the batch axis of a batch-1 cache, **in place** (as TransformerLens does), and return the cache:
        afterwards ``cache["pattern", 0]`` is ``[head, q_pos, k_pos]`` and ``cache["pattern", 0][h]`` is head ``h``.

        Without it, ``cache["pattern", 0][h]`` indexes the *batch* (a silent wrong answer for ``h > 0`` and an
        IndexError only sometimes): use ``run_with_cache(..., remove_batch_dim=True)`` for one-prompt code.
        A ValueError for a batch of more than one; a second call does nothing.

        Example:
            >>> c = ActivationCache({"blocks.0.attn.hook_pattern": torch.ones(1, 4, 3, 3)})
            >>> c.remove_batch_dim()["pattern", 0].shape, c.has_batch_dim
            (torch.Size([4, 3, 3]), False)
        """
        if not self.has_batch_dim:
            return self
        bad = next(((k, tuple(v.shape)) for k, v in self._acts.items() if v.shape[0] != 1), None)
        if bad is not None:
            raise ValueError(
                f"remove_batch_dim needs a batch of 1, but {bad[0]} has shape {bad[1]}; index the batch yourself "
                "(cache[name][i]) or run one prompt"
            )
        self._acts = MappingProxyType({k: v[0] for k, v in self._acts.items()})
        self.has_batch_dim = False
        return self

    @property
    def n_bytes(self) -> int:
        """Memory held by the cached tensors."""
        return sum(t.numel() * t.element_size() for t in self._acts.values())


def check_cache_size(
    shapes: Mapping[str, tuple[int, ...]],
    names: Sequence[str],
    element_size: int,
    limit: float,
    tokens_shape: tuple[int, ...],
) -> None:
    """The memory guard of ``run_with_cache``: a ValueError, before anything runs, when caching ``names`` would take
    more than ``limit`` bytes (``model.max_cache_bytes``). ``shapes`` come from ``model.hook_shapes(*tokens_shape)``,
    ``element_size`` is the bytes of one number.

    Example:
        >>> check_cache_size({"a": (2, 1024)}, ["a"], 4, limit=4096, tokens_shape=(2, 8))
        Traceback (most recent call last):
        ...
        ValueError: caching 1 activations of tokens (2, 8) would take 8,192 bytes (0.0 MiB), over the limit \
model.max_cache_bytes = 4,096 bytes (0.0 MiB); record fewer activations with names_filter (largest: a), use a smaller \
batch, or raise the limit (model.max_cache_bytes = 8192 lets this call through)
    """
    if isinstance(limit, bool) or not isinstance(limit, int | float):
        raise TypeError(f"model.max_cache_bytes must be a number of bytes, got {limit!r}; e.g. 2**30 for 1 GiB")
    if not limit >= 0:
        raise ValueError(f"model.max_cache_bytes must be >= 0 bytes, got {limit!r}")
    names = list(dict.fromkeys(names))  # a name listed twice is kept once
    n_bytes = sum(math.prod(shapes[n]) for n in names) * element_size
    if n_bytes > limit:
        biggest = sorted(names, key=lambda n: -math.prod(shapes[n]))[:3]
        raise ValueError(
            f"caching {len(names)} activations of tokens {tuple(tokens_shape)} would take {_size(n_bytes)}, over "
            f"the limit model.max_cache_bytes = {_size(limit)}; record fewer activations with names_filter "
            f"(largest: {', '.join(biggest)}), use a smaller batch, or raise the limit "
            f"(model.max_cache_bytes = {n_bytes} lets this call through)"
        )


def _size(n_bytes: float) -> str:
    """``1,234,567 bytes (1.2 MiB)``: exact for small limits, readable for large ones."""
    return f"{n_bytes:,} bytes ({n_bytes / 2**20:,.1f} MiB)"


def hook_shapes(cfg: ModelConfig, names: Sequence[str], batch: int, pos: int) -> dict[str, tuple[int, ...]]:
    """Shape of the activation at each of ``names`` (a model's ``hook_names``) for a ``[batch, pos]`` input.

    Example:
        >>> hook_shapes(ModelConfig(), ["blocks.0.attn.hook_pattern", "hook_embed"], 2, 5)
        {'blocks.0.attn.hook_pattern': (2, 4, 5, 5), 'hook_embed': (2, 5, 64)}
    """
    for name, value in (("batch", batch), ("pos", pos)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"hook_shapes needs a positive int {name}, got {value!r}")
    c = cfg
    by_suffix = {
        "hook_scale": (batch, pos, 1),
        "hook_q": (batch, pos, c.n_heads, c.d_head),
        "hook_attn_scores": (batch, c.n_heads, pos, pos),
        "hook_result": (batch, pos, c.n_heads, c.d_model),
        "hook_attn_in": (batch, pos, c.n_heads, c.d_model),
        "hook_pre": (batch, pos, c.d_ff),
    }
    for per_head_input in ("hook_q_input", "hook_k_input", "hook_v_input"):
        by_suffix[per_head_input] = by_suffix["hook_attn_in"]
    for same_as_q in ("hook_k", "hook_v", "hook_z", "hook_rot_q", "hook_rot_k"):
        by_suffix[same_as_q] = by_suffix["hook_q"]
    by_suffix["hook_pattern"] = by_suffix["hook_attn_scores"]
    by_suffix["hook_post"] = by_suffix["hook_pre"]
    return {n: by_suffix.get(n.rsplit(".", 1)[-1], (batch, pos, c.d_model)) for n in names}
