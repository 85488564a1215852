"""Ablations as values: zero, mean and resample ablations of heads, attention layers, MLPs, neurons and positions.

An ablation spec is a frozen dataclass that says what it replaces (``str(spec)`` says it in words)
and hands out the hooks that do it (``spec.hooks(model, tokens, reference)``); running them is a
separate step (:func:`ablate`, or ``model.run_with_hooks``). Methods:

* ``"zero"``: the activation becomes 0.
* ``"mean"``: the activation becomes its mean over the ``reference`` batch, position by position
  (the reference needs at least as many positions as the tokens; causal attention makes the
  first ``pos`` positions of a longer reference exactly what a shorter one would give).
* ``"resample"``: each sequence takes the activation from another input: a row of ``reference``
  drawn with the ``seed``, or, with no reference, another row of the same batch (a seeded
  derangement, so no row keeps its own). All resampled components of one call share the rows.

Replacement activations always come from clean runs of the reference (or source) tokens.

=====================  ===================================  ===================================
spec                   replaces                             hook
=====================  ===================================  ===================================
``HeadAblation``       head ``h``'s ``z`` (so its write)     ``blocks.l.attn.hook_z [.., h, :]``
``AttnLayerAblation``  the whole attention output           ``blocks.l.hook_attn_out``
``MLPAblation``        the whole MLP output                 ``blocks.l.hook_mlp_out``
``NeuronAblation``     one MLP neuron's activation          ``blocks.l.mlp.hook_post [.., n]``
``PositionAblation``   the residual stream at one position  ``blocks.l.hook_resid_pre [:, pos]``
=====================  ===================================  ===================================

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> tokens = model.to_tokens("the cat sat on the mat")
    >>> spec = HeadAblation(1, 2, method="zero")
    >>> print(spec)
    zero-ablate head L1H2 (its z, so its write to the residual stream) at all positions
    >>> hooks = spec.hooks(model, tokens)
    >>> reference = model.to_tokens(["the dog sat on the log", "a bird flew to the sky"])
    >>> result = ablate(model, tokens, heads="1.2,0.3", method="mean", reference=reference)
    >>> result.logits.shape
    torch.Size([1, 23, 64])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.ablation_specs import (
    METHODS,
    AttnLayerAblation,
    HeadAblation,
    MLPAblation,
    NeuronAblation,
    PositionAblation,
    Spec,
    check_method,
    parse_layers,
    parse_pairs,
    resolve_positions,
    specs_from,
)
from interp.checks import check_int, check_model, check_seed, require_finite
from interp.metrics import Metric, as_metric
from model.logits import next_token_loss
from model.minigpt import MiniGPT

__all__ = [  # the specs live in interp.ablation_specs; they are re-exported here, next to what runs them
    "METHODS",
    "AblationResult",
    "AttnLayerAblation",
    "HeadAblation",
    "MLPAblation",
    "NeuronAblation",
    "PositionAblation",
    "Spec",
    "ablate",
    "ablation_hooks",
    "check_method",
    "parse_layers",
    "parse_pairs",
    "replacements",
    "resample_rows",
    "resolve_positions",
]


# ---------------------------------------------------------------------------------------- replacements
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


def replacements(
    model: MiniGPT,
    method: str,
    names: Iterable[str],
    tokens: Int[Tensor, "batch pos"],
    reference: Int[Tensor, "ref_batch ref_pos"] | None = None,
    seed: int = 0,
) -> dict[str, Float[Tensor, "batch_or_1 pos ..."]]:
    """Replacement activation at each hook name: ``{}`` for zero, ``[1, pos, ...]`` for mean, ``[batch, pos, ...]``
    for resample. Sweeps and :func:`ablate` share this, so their replacements are identical."""
    names = sorted(set(names))
    check_seed(seed)
    if check_method(method) == "zero" or not names:
        return {}
    n_batch, n_pos = check_model(model).check_tokens(tokens).shape
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
    """``fwd_hooks`` applying every spec (one run of the reference per method, whatever the number of specs)."""
    if not isinstance(specs, Iterable):
        raise TypeError(f"specs must be a list of ablation specs (HeadAblation, MLPAblation, ...), got {specs!r}")
    specs, seed = list(specs), check_seed(seed)
    check_model(model)
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
            sources[method] = replacements(model, method, names, model.check_tokens(tokens), reference, seed)
    return [(s.hook_name(), _replacer(s, sources.get(s.method, {}).get(s.hook_name()))) for s in specs]


# ---------------------------------------------------------------------------------------- running
@dataclass(frozen=True)
class AblationResult:
    """Output of :func:`ablate`: ``logits [batch, pos, d_vocab]``, mean next-token ``loss`` (None for 1 token),
    ``loss_per_token [batch, pos - 1]``, the ``tokens`` and the ``ablations`` applied."""

    logits: Float[Tensor, "batch pos d_vocab"]
    loss: float | None
    loss_per_token: Float[Tensor, "batch pos_minus_1"] | None
    tokens: Int[Tensor, "batch pos"]
    ablations: tuple[Spec, ...]

    def metric(self, metric: Metric | str | object) -> float:
        """Value of a metric (``"loss"``, ``LogitDiff(...)``, a callable) on the ablated logits."""
        return float(as_metric(metric)(self.logits, self.tokens))

    def __str__(self) -> str:
        what = "\n".join(f"  {spec}" for spec in self.ablations) or "  nothing ablated"
        return f"{what}\nloss {self.loss:.4f}" if self.loss is not None else what


def ablate(
    model: MiniGPT,
    tokens: Int[Tensor, "batch pos"] | str,
    *specs: Spec,
    heads: object = None,
    attn_layers: object = None,
    mlps: object = None,
    neurons: object = None,
    positions: object = None,
    method: str = "zero",
    reference: Int[Tensor, "ref_batch ref_pos"] | None = None,
    seed: int = 0,
) -> AblationResult:
    """Run ``model`` on ``tokens`` with the given components ablated together.

    ``heads="1.2,0.3"`` or ``[(1, 2)]``, ``neurons="1.37"``, ``positions="0.5"`` (residual entering
    layer 0 at position 5), ``mlps="0,1"``, ``attn_layers=[1]``; ``method`` applies to these, while
    spec objects passed positionally keep their own. Ablating nothing gives the plain forward's
    logits bit for bit. Runs without gradients.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> tokens = model.to_tokens("hello world")
        >>> result = ablate(model, tokens, heads="0.1", mlps=[1])
        >>> print(result)  # doctest: +ELLIPSIS
          zero-ablate head L0H1 (its z, so its write to the residual stream) at all positions
          zero-ablate the MLP output of layer 1 (including b_out) at all positions
        loss ...
    """
    method = check_method(method)
    tokens = check_model(model).check_tokens(tokens)
    all_specs = list(specs)
    all_specs += specs_from(heads, HeadAblation, method, "head")
    all_specs += specs_from(attn_layers, AttnLayerAblation, method, None)
    all_specs += specs_from(mlps, MLPAblation, method, None)
    all_specs += specs_from(neurons, NeuronAblation, method, "neuron")
    all_specs += specs_from(positions, PositionAblation, method, "pos")
    hooks = ablation_hooks(model, all_specs, tokens, reference, seed)
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
        require_finite(logits, "ablate", model, tokens=tokens, fwd_hooks=hooks)
        per_token = next_token_loss(logits, tokens, per_token=True) if tokens.shape[1] > 1 else None
    loss = None if per_token is None else float(per_token.mean())
    return AblationResult(logits, loss, per_token, tokens, tuple(all_specs))


def __getattr__(name: str):
    if name in ("head_sweep", "neuron_sweep"):  # the batched sweeps live in interp.sweeps
        from interp import sweeps

        return getattr(sweeps, name)
    raise AttributeError(f"module 'interp.ablation' has no attribute {name!r}")
