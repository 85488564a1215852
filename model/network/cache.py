"""ActivationCache: a read-only mapping from hook name to the activation recorded there.

Keys are full hook names (``"blocks.1.attn.hook_pattern"``) or TransformerLens-style shorthand
tuples: ``cache["pattern", 1]``, ``cache["resid_pre", 0]``, ``cache["scale", 1, "ln2"]``,
``cache["embed"]``, ``cache["scale"]`` (the final LayerNorm). The cache holds detached tensors
and no reference to the model.

Example:
    >>> import torch
    >>> cache = ActivationCache({"blocks.0.attn.hook_pattern": torch.ones(1, 4, 3, 3)})
    >>> cache["pattern", 0].shape
    torch.Size([1, 4, 3, 3])
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType

import torch
from torch import Tensor

from model.network.config import ModelConfig


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


def act_name(name: str, layer: int | None = None, sublayer: str | None = None) -> str:
    """Full hook name from shorthand: ``act_name("pattern", 1) == "blocks.1.attn.hook_pattern"``."""
    if name in _TOP and layer is None:
        return _TOP[name]
    if name in ("scale", "normalized"):
        if layer is None:
            return f"ln_final.hook_{name}"
        return f"blocks.{layer}.{sublayer or 'ln1'}.hook_{name}"
    if layer is None:
        raise KeyError(f"shorthand {name!r} needs a layer, e.g. cache[{name!r}, 0]")
    if name in _ATTN:
        return f"blocks.{layer}.attn.hook_{name}"
    if name in _MLP:
        return f"blocks.{layer}.mlp.hook_{name}"
    if name in _BLOCK:
        return f"blocks.{layer}.hook_{name}"
    known = sorted(_ATTN | _MLP | _BLOCK | set(_TOP) | {"scale", "normalized"})
    raise KeyError(f"unknown shorthand {name!r}; known shorthands are {known}")


class ActivationCache(Mapping[str, Tensor]):
    """Read-only ``{hook name: activation}`` with shorthand keys (see the module docstring)."""

    def __init__(self, activations: Mapping[str, Tensor]) -> None:
        self._acts = MappingProxyType(dict(activations))

    def _key(self, key: str | tuple) -> str:
        if isinstance(key, tuple):
            return act_name(*key)
        if isinstance(key, str):
            if key in self._acts or key not in _ATTN | _MLP | _BLOCK | {*_TOP, "scale", "normalized"}:
                return key
            return act_name(key)  # shorthand: "embed", "scale" (ln_final); "pattern" says it needs a layer
        raise TypeError(f"cache keys are hook names or (shorthand, layer) tuples, got {type(key).__name__}")

    def __getitem__(self, key: str | tuple) -> Tensor:
        name = self._key(key)
        if name in self._acts:
            return self._acts[name]
        close = difflib.get_close_matches(name, list(self._acts), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(map(repr, close))}?" if close else "it was not recorded"
        extra = (
            " (hook_result is only recorded when asked for: pass names_filter naming it)"
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

    def to(self, device: str | torch.device) -> ActivationCache:
        """A copy with every tensor on ``device``."""
        device = check_device(device)
        return ActivationCache({k: v.to(device) for k, v in self._acts.items()})

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
        "hook_pre": (batch, pos, c.d_ff),
    }
    for same_as_q in ("hook_k", "hook_v", "hook_z", "hook_rot_q", "hook_rot_k"):
        by_suffix[same_as_q] = by_suffix["hook_q"]
    by_suffix["hook_pattern"] = by_suffix["hook_attn_scores"]
    by_suffix["hook_post"] = by_suffix["hook_pre"]
    return {n: by_suffix.get(n.rsplit(".", 1)[-1], (batch, pos, c.d_model)) for n in names}
