"""From ablation specs to hooks: the replacement values and the hooks that put them in.

Methods:

* ``"zero"``: the activation becomes 0.
* ``"mean"``: the activation becomes its mean over the ``reference`` batch, position by position
  (the reference needs at least as many positions as the tokens; causal attention makes the
  first ``pos`` positions of a longer reference exactly what a shorter one would give).
* ``"resample"``: each sequence takes the activation from another input: a row of ``reference``
  drawn with the ``seed``, or, with no reference, another row of the same batch (a seeded
  derangement, so no row keeps its own). All resampled components of one call share the rows.

Replacement activations always come from clean runs of the reference (or source) tokens. Sweeps and
:func:`interp.intervene.ablate.ablate` share :func:`replacements`, so their replacements are identical.
:func:`corpus_reference` is the reference the command line and the dashboard use when none is given: windows of
the built-in corpus.

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> from interp import HeadAblation
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> tokens = model.to_tokens("the cat sat on the mat")
    >>> hooks = ablation_hooks(model, [HeadAblation(1, 2)], tokens)
    >>> [name for name, _ in hooks]
    ['blocks.1.attn.hook_z']
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.common.checks import check_int, check_model, check_seed
from interp.intervene.specs import Spec, check_method
from model.network.minigpt import MiniGPT
from model.training.data import builtin_corpus, text_batch


def resample_rows(batch: int, n_source: int, seed: int, from_self: bool) -> Int[Tensor, " batch"]:
    """Which source row each sequence takes its activations from (seeded).

    ``from_self``: a random derangement of the batch (no row keeps its own); else rows of the
    source drawn uniformly with replacement.
    """
    batch, n_source = check_int(batch, "batch", minimum=1), check_int(n_source, "n_source", minimum=1)
    gen = torch.Generator().manual_seed(check_seed(seed))
    if not from_self:
        return torch.randint(0, n_source, (batch,), generator=gen)
    if batch < 2:
        raise ValueError(
            "resample ablation without a reference takes each sequence's activations from another sequence of "
            "the batch, so it needs at least 2 sequences; pass reference=tokens of other inputs"
        )
    order = torch.randperm(batch, generator=gen)
    rows = torch.empty(batch, dtype=torch.long)
    rows[order] = order.roll(-1)  # a single cycle through the batch
    return rows


def corpus_reference(
    model: MiniGPT, size: int = 64, n_pos: int | None = None, seed: int = 0
) -> Int[Tensor, "size n_pos"]:
    """``size`` random windows (seeded) of the built-in corpus's validation text, each ``<bos>`` and ``n_pos - 1``
    characters (default: the model's whole context): typical text, whose activations a mean or resample ablation
    puts in place of the ablated ones.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> corpus_reference(MiniGPT(ModelConfig(), seed=0), size=4, n_pos=8).shape
        torch.Size([4, 8])
    """
    model = check_model(model)
    size, n_ctx = check_int(size, "size", minimum=1), model.cfg.n_ctx
    n_pos = n_ctx if n_pos is None else check_int(n_pos, "n_pos", minimum=1)
    if n_pos > n_ctx:
        raise ValueError(f"n_pos={n_pos} is longer than the model's context (n_ctx={n_ctx}); give at most {n_ctx}")
    if model.tokenizer is None:
        raise ValueError(
            f"this model has no character tokenizer (d_vocab={model.cfg.d_vocab}), so the built-in corpus cannot be "
            "read for it; pass reference=tokens of typical inputs instead"
        )
    gen = torch.Generator().manual_seed(check_seed(seed))
    return text_batch(builtin_corpus(model.tokenizer).val, size, n_pos, gen).to(model.device)


def replacements(
    model: MiniGPT,
    method: str,
    names: Iterable[str],
    tokens: Int[Tensor, "batch pos"],
    reference: Int[Tensor, "ref_batch ref_pos"] | None = None,
    seed: int = 0,
) -> dict[str, Float[Tensor, "batch_or_1 pos ..."]]:
    """Replacement activation at each hook name: ``{}`` for zero, ``[1, pos, ...]`` for mean, ``[batch, pos, ...]``
    for resample. Sweeps and :func:`~interp.intervene.ablate.ablate` share this, so their replacements agree."""
    model = check_model(model)
    return _replacements(model, check_method(method), names, model.check_tokens(tokens), reference, check_seed(seed))


def _replacements(
    model: MiniGPT, method: str, names: Iterable[str], tokens: Tensor, reference: Tensor | None, seed: int
) -> dict[str, Tensor]:
    """:func:`replacements` with the model, method, tokens and seed already checked (the reference is checked here)."""
    names = sorted(set(names))
    if method == "zero" or not names:
        return {}
    n_batch, n_pos = tokens.shape
    if reference is not None:
        reference = model.check_tokens(reference)
        if reference.shape[1] < n_pos:
            raise ValueError(
                f"the reference has {reference.shape[1]} positions but the tokens have {n_pos}; "
                "give a reference at least as long (its first positions are used)"
            )
        reference = reference[:, :n_pos]
    elif method == "mean":
        raise ValueError(
            "mean ablation needs a reference batch: pass reference=tokens of typical inputs "
            f"(shape [n, >= {n_pos}]) whose mean activation replaces the ablated one"
        )
    source = tokens if reference is None else reference
    with torch.no_grad():
        _, cache = model.run_with_cache(source, names_filter=names)
    if method == "mean":
        return {name: cache[name].mean(0, keepdim=True) for name in names}
    rows = resample_rows(n_batch, source.shape[0], seed, from_self=reference is None).to(source.device)
    return {name: cache[name][rows] for name in names}


def _replacer(spec: Spec, source: Tensor | None):
    def hook(act: Tensor, hook) -> Tensor:
        if source is not None and source.shape[1] != act.shape[1]:
            raise ValueError(
                f"the hooks of '{spec}' were built for {source.shape[1]} positions but run on {act.shape[1]}; "
                "build them with the tokens you run"
            )
        index = spec.index(act.shape[1])
        out = act.clone()
        out[index] = 0.0 if source is None else source.expand_as(act)[index]
        return out

    hook.__name__ = f"{type(spec).__name__}_hook"
    return hook


def ablation_hooks(
    model: MiniGPT,
    specs: Iterable[Spec],
    tokens: Int[Tensor, "batch pos"] | None = None,
    reference: Int[Tensor, "ref_batch ref_pos"] | None = None,
    seed: int = 0,
) -> list[tuple[str, object]]:
    """``fwd_hooks`` applying every spec (one run of the reference per method, whatever the number of specs).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> from interp import HeadAblation
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> tokens = model.to_tokens("hello there")
        >>> hooks = ablation_hooks(model, [HeadAblation(0, 1, method="resample")], model.to_tokens(["ab", "cd"]))
        >>> len(hooks)
        1
    """
    model = check_model(model)
    tokens = None if tokens is None else model.check_tokens(tokens)
    return _ablation_hooks(model, specs, tokens, reference, check_seed(seed))


def _ablation_hooks(
    model: MiniGPT, specs: Iterable[Spec], tokens: Tensor | None, reference: Tensor | None, seed: int
) -> list[tuple[str, object]]:
    """:func:`ablation_hooks` with the model, tokens and seed already checked (the specs are checked here)."""
    if not isinstance(specs, Iterable):
        raise TypeError(f"specs must be a list of ablation specs (HeadAblation, MLPAblation, ...), got {specs!r}")
    specs = list(specs)
    for spec in specs:
        if not isinstance(spec, Spec):
            raise TypeError(f"expected ablation specs (HeadAblation, MLPAblation, ...), got {spec!r}")
        spec.validate(model)
    sources: dict[str, dict[str, Tensor]] = {}
    for method in ("mean", "resample"):
        names = [s.hook_name() for s in specs if s.method == method]
        if names and tokens is None:
            raise ValueError(f"{method} ablation needs the tokens it will run on: pass tokens=...")
        if names:
            sources[method] = _replacements(model, method, names, tokens, reference, seed)
    return [(s.hook_name(), _replacer(s, sources.get(s.method, {}).get(s.hook_name()))) for s in specs]
