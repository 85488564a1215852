"""Running a MiniGPT with sparse autoencoders (or transcoders) spliced in, per call, as SAELens's
``HookedSAETransformer`` does: ``model.run_with_saes(tokens, [sae])`` and ``model.run_with_cache_with_saes``.

The model knows nothing of how an SAE is made (that is :mod:`interp.features`); it takes any object with
the SAE protocol, duck-typed:

- ``hook_name`` (an attribute, or ``cfg.hook_name``): the hook point the SAE reads;
- ``hook_name_out`` (or ``cfg.hook_name_out``), optional: a *transcoder* reads at ``hook_name`` (an MLP's
  input, ``blocks.{l}.ln2.hook_normalized``) and writes at ``hook_name_out`` (``blocks.{l}.hook_mlp_out``);
  without it the SAE writes where it reads;
- ``encode(x) -> features`` and ``decode(features) -> reconstruction``, or just ``forward(x)`` (a callable
  module): then the reconstruction is spliced in but no features can be cached;
- ``W_skip`` ``[d_out, d_in]``, optional (None: none): a *skip transcoder*'s affine path, as SAELens's
  ``SkipTranscoder`` has it: the reconstruction is ``decode(encode(x)) + x @ W_skip.T``.

Spliced in, the reconstruction replaces the activation at the write point for every later layer. With
``use_error_term=True`` the SAE's error ``x - reconstruction`` is added back (held constant, as SAELens does),
so the output is the clean one while gradients and feature edits flow through the features.
``run_with_cache_with_saes`` also records, under ``{write point}.hook_sae_input`` / ``hook_sae_acts`` /
``hook_sae_recons`` / ``hook_sae_error``, what the SAE read, its features, its reconstruction and its error.

Everything goes through the per-call hook context (:mod:`model.network.hooks`): no state is left on the
model or the SAE, and two threads may splice different SAEs into one shared model at once.

Example:
    >>> import torch
    >>> from model import MiniGPT, ModelConfig
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> class Halve(torch.nn.Module):  # the smallest "SAE": one feature per dimension, reconstruction x / 2
    ...     hook_name = "blocks.0.hook_resid_post"
    ...     def encode(self, x): return x / 2
    ...     def decode(self, f): return f
    >>> logits, cache = model.run_with_cache_with_saes("hi", [Halve()])
    >>> cache["blocks.0.hook_resid_post.hook_sae_error"].shape
    torch.Size([1, 3, 64])
    >>> spliced = model.run_with_saes("hi", [Halve()])  # every later layer sees the halved residual
    >>> bool(torch.allclose(spliced, model("hi"))), bool(torch.allclose(
    ...     model.run_with_saes("hi", [Halve()], use_error_term=True), model("hi")))
    (False, True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from model.network.cache import ActivationCache
from model.network.hook_selection import resolve_names, unknown_hook_error
from model.network.hooks import HookFn, HookPoint, NameOrPredicate

SAE_HOOKS = ("hook_sae_input", "hook_sae_acts", "hook_sae_recons", "hook_sae_error")


@dataclass(frozen=True)
class Splice:
    """One SAE checked against a model: where it reads and writes, and whether it has encode/decode."""

    sae: Any
    read: str
    write: str
    has_features: bool

    def names(self) -> list[str]:
        """The cache names of what this splice records (features only when the SAE has encode/decode)."""
        kinds = SAE_HOOKS if self.has_features else ("hook_sae_input", "hook_sae_recons", "hook_sae_error")
        return [f"{self.write}.{kind}" for kind in kinds]


def _point(sae: object, name: str) -> object:
    value = getattr(sae, name, None)
    if value is None:
        value = getattr(getattr(sae, "cfg", None), name, None)
    return value


def check_splices(saes: object, hook_names: Sequence[str]) -> list[Splice]:
    """The SAEs (one, or a list) checked against a model's hook names; TypeError/KeyError/ValueError saying why.

    Example:
        >>> check_splices([object()], ["hook_embed"])
        Traceback (most recent call last):
        ...
        TypeError: SAE 0 (object) has no hook_name (nor cfg.hook_name): an SAE names the hook point it reads
    """
    items = [saes] if not isinstance(saes, list | tuple) else list(saes)
    if not items:
        raise ValueError("saes is empty: give one SAE or a list of them (e.g. [SAE.from_pretrained(name)])")
    order = {name: i for i, name in enumerate(hook_names)}
    splices, writes = [], set()
    for i, sae in enumerate(items):
        what = f"SAE {i} ({type(sae).__name__})"
        read, write = _point(sae, "hook_name"), _point(sae, "hook_name_out")
        if not isinstance(read, str):
            raise TypeError(f"{what} has no hook_name (nor cfg.hook_name): an SAE names the hook point it reads")
        write = read if write is None else write
        for name in (read, write):
            if not isinstance(name, str) or name not in order:
                raise unknown_hook_error(name, list(hook_names))
        if order[write] < order[read]:
            raise ValueError(f"{what} reads {read!r} but writes {write!r}, which comes earlier in the forward pass")
        has_features = callable(getattr(sae, "encode", None)) and callable(getattr(sae, "decode", None))
        if not has_features and not callable(sae):
            raise TypeError(f"{what} has neither encode/decode nor a forward: it cannot reconstruct anything")
        if write in writes:
            raise ValueError(f"two SAEs write {write!r}; splice one SAE per hook point")
        writes.add(write)
        splices.append(Splice(sae, read, write, has_features))
    return splices


def _reconstruct(splice: Splice, x: Tensor) -> tuple[Tensor | None, Tensor]:
    """``(features or None, reconstruction)`` of the SAE's input ``x``."""
    sae = splice.sae
    if splice.has_features:
        features = sae.encode(x)
        recons = sae.decode(features)
        skip = getattr(sae, "W_skip", None)
        return features, recons if skip is None else recons + x.to(skip.dtype) @ skip.T
    return None, sae(x)


def splice_hooks(
    splices: list[Splice], use_error_term: bool = False, record: dict[str, Tensor] | None = None
) -> list[tuple[str, HookFn]]:
    """The ``(hook name, fn)`` pairs that splice each SAE in; with ``record`` also store what they saw there.

    Each call builds new closures and a new dict for the transcoders' inputs, so nothing is shared between calls.
    """
    hooks: list[tuple[str, HookFn]] = []
    for splice in splices:
        inputs: dict[str, Tensor] = {}

        def read_hook(x: Tensor, hook: HookPoint, inputs: dict = inputs) -> None:
            inputs["x"] = x

        def write_hook(y: Tensor, hook: HookPoint, splice: Splice = splice, inputs: dict = inputs) -> Tensor:
            x = inputs.pop("x") if splice.read != splice.write else y
            features, recons = _reconstruct(splice, x)
            recons = recons.to(y.dtype)
            error = y - recons
            if record is not None:
                values = {"hook_sae_input": x, "hook_sae_acts": features, "hook_sae_recons": recons}
                for kind, value in {**values, "hook_sae_error": error}.items():
                    if value is not None:
                        record[f"{splice.write}.{kind}"] = value.detach()
            return recons + error.detach() if use_error_term else recons

        if splice.read != splice.write:
            hooks.append((splice.read, read_hook))
        hooks.append((splice.write, write_hook))
    return hooks


def _split_filter(
    names_filter: NameOrPredicate | Iterable[str] | None, sae_names: list[str]
) -> tuple[NameOrPredicate | list[str] | None, list[str]]:
    """``(filter for the model's own hooks, SAE cache names wanted)``."""
    if names_filter is None:
        return None, sae_names
    if callable(names_filter) and not isinstance(names_filter, str):
        return names_filter, [n for n in sae_names if names_filter(n)]
    names = [names_filter] if isinstance(names_filter, str) else names_filter
    try:
        names = list(names)
    except TypeError:
        raise TypeError(
            f"names_filter must be a hook name, a list of names or a predicate, got {type(names_filter).__name__}"
        ) from None
    wanted = set(sae_names)
    return [n for n in names if n not in wanted], [n for n in names if n in wanted]


class SAESplicing:
    """The two methods MiniGPT gets from this module (it inherits them; see the module docstring)."""

    hook_names: list[str]
    hooks: Callable[..., Any]
    run_with_hooks: Callable[..., Any]
    run_with_cache: Callable[..., Any]

    def run_with_saes(
        self,
        tokens: Any,
        saes: Any,
        *,
        use_error_term: bool = False,
        fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]] = (),
        **kwargs: Any,
    ) -> Any:
        """``forward(tokens, **kwargs)`` with each SAE's reconstruction replacing the activation it writes.

        ``saes``: one SAE or a list (the protocol in :mod:`model.network.splice`). ``fwd_hooks`` run too, after
        the splice at a shared hook point (they see the reconstruction).
        """
        splices = check_splices(saes, self.hook_names)
        if not isinstance(use_error_term, bool):
            raise TypeError(f"use_error_term must be True or False, got {use_error_term!r}")
        with self.hooks(splice_hooks(splices, use_error_term)):
            return self.run_with_hooks(tokens, fwd_hooks=fwd_hooks, **kwargs)

    def run_with_cache_with_saes(
        self,
        tokens: Any,
        saes: Any,
        names_filter: NameOrPredicate | Iterable[str] | None = None,
        device: str | torch.device | None = None,
        *,
        use_error_term: bool = False,
        fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]] = (),
        **kwargs: Any,
    ) -> tuple[Any, ActivationCache]:
        """``(output, cache)`` of :meth:`run_with_saes`: the model's hooks (as ``run_with_cache`` records them,
        the spliced values where an SAE writes) plus ``{write point}.hook_sae_input/acts/recons/error``.

        ``names_filter`` picks among both kinds of names (None: every model hook but ``hook_result``, and every
        SAE name).
        """
        splices = check_splices(saes, self.hook_names)
        if not isinstance(use_error_term, bool):
            raise TypeError(f"use_error_term must be True or False, got {use_error_term!r}")
        sae_names = [name for splice in splices for name in splice.names()]
        model_filter, wanted = _split_filter(names_filter, sae_names)
        if model_filter is not None and not callable(model_filter):
            resolve_names(model_filter, self.hook_names)  # unknown names fail before anything runs
        record: dict[str, Tensor] = {}
        with self.hooks(splice_hooks(splices, use_error_term, record)):
            out, cache = self.run_with_cache(tokens, names_filter=model_filter, device=device, fwd_hooks=fwd_hooks,
                                             **kwargs)  # fmt: skip
        moved = {n: record[n] if device is None else record[n].to(device) for n in wanted if n in record}
        return out, ActivationCache({**dict(cache.items()), **moved})
