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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.checks import check_int, check_model, check_seed, require_finite
from interp.metrics import Metric, as_metric
from model.minigpt import MiniGPT, next_token_loss

METHODS = ("zero", "mean", "resample")


def check_method(method: object) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown ablation method {method!r}; use one of {list(METHODS)}")
    return method  # type: ignore[return-value]


def _check_index(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got {value!r} ({type(value).__name__})")
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return value


def _in_range(value: int, size: int, what: str, unit: str) -> None:
    if value >= size:
        raise IndexError(f"{what} {value} is out of range: the model has {size} {unit} (valid {what}s 0..{size - 1})")


def _require_mlps(model: MiniGPT, spec: object) -> None:
    if model.cfg.attn_only:
        raise ValueError(f"cannot {spec}: this model is attention-only (it has no MLPs)")


def resolve_positions(positions: Sequence[int] | None, n_pos: int) -> list[int] | None:
    """Non-negative positions (negative ones count from the end); IndexError names the valid range."""
    if positions is None:
        return None
    if isinstance(positions, str) or not isinstance(positions, int | Iterable):
        raise TypeError(f"positions must be an int or a list of ints, got {type(positions).__name__}")
    out = []
    for p in [positions] if isinstance(positions, int) else positions:
        p = check_int(p, "every position")
        q = p + n_pos if p < 0 else p
        if not 0 <= q < n_pos:
            raise IndexError(f"position {p} is out of range for {n_pos} tokens (valid 0..{n_pos - 1}, or -{n_pos}..-1)")
        out.append(q)
    return out


class _Spec:
    """Shared behaviour of the ablation specs (subclasses are frozen dataclasses)."""

    layer: int
    method: str
    positions: tuple[int, ...] | None = None

    def _post_init(self, *index_fields: str) -> None:
        for name in ("layer", *index_fields):
            _check_index(getattr(self, name), name)
        check_method(self.method)
        if self.positions is not None:
            pos = (self.positions,) if isinstance(self.positions, int) else tuple(self.positions)
            for p in pos:
                if not isinstance(p, int) or isinstance(p, bool):
                    raise TypeError(f"positions must be ints, got {p!r}")
            object.__setattr__(self, "positions", pos)

    def validate(self, model: MiniGPT) -> None:
        """IndexError/ValueError if this spec does not fit ``model`` (naming the valid range)."""
        _in_range(self.layer, model.cfg.n_layers, "layer", "layers")

    def hook_name(self) -> str:
        raise NotImplementedError

    def index(self, n_pos: int) -> tuple:
        """Index into the hooked activation ``[batch, pos, ...]`` of what is replaced."""
        pos = resolve_positions(self.positions, n_pos)
        return (slice(None), slice(None) if pos is None else pos)

    def _where(self) -> str:
        return "at all positions" if self.positions is None else f"at positions {list(self.positions)}"

    def hooks(
        self,
        model: MiniGPT,
        tokens: Int[Tensor, "batch pos"] | None = None,
        reference: Int[Tensor, "ref_batch ref_pos"] | None = None,
        seed: int = 0,
    ) -> list[tuple[str, object]]:
        """The ``fwd_hooks`` list for ``model.run_with_hooks(tokens, fwd_hooks=...)``."""
        return ablation_hooks(model, [self], tokens, reference, seed)


@dataclass(frozen=True)
class HeadAblation(_Spec):
    """Ablate head ``head`` of layer ``layer`` (its ``z``, hence its write ``z @ W_O[head]``)."""

    layer: int
    head: int
    positions: tuple[int, ...] | None = None
    method: str = field(default="zero", kw_only=True)

    def __post_init__(self) -> None:
        self._post_init("head")

    def validate(self, model: MiniGPT) -> None:
        super().validate(model)
        _in_range(self.head, model.cfg.n_heads, "head", "heads per layer")

    def hook_name(self) -> str:
        return f"blocks.{self.layer}.attn.hook_z"

    def index(self, n_pos: int) -> tuple:
        return (*super().index(n_pos), self.head)

    def __str__(self) -> str:
        what = f"head L{self.layer}H{self.head} (its z, so its write to the residual stream)"
        return f"{self.method}-ablate {what} {self._where()}"


@dataclass(frozen=True)
class AttnLayerAblation(_Spec):
    """Ablate the whole attention output of layer ``layer`` (all heads and ``b_O``)."""

    layer: int
    positions: tuple[int, ...] | None = None
    method: str = field(default="zero", kw_only=True)

    def __post_init__(self) -> None:
        self._post_init()

    def hook_name(self) -> str:
        return f"blocks.{self.layer}.hook_attn_out"

    def __str__(self) -> str:
        return f"{self.method}-ablate the attention output of layer {self.layer} (all heads and b_O) {self._where()}"


@dataclass(frozen=True)
class MLPAblation(_Spec):
    """Ablate the MLP output of layer ``layer`` (including ``b_out``)."""

    layer: int
    positions: tuple[int, ...] | None = None
    method: str = field(default="zero", kw_only=True)

    def __post_init__(self) -> None:
        self._post_init()

    def validate(self, model: MiniGPT) -> None:
        super().validate(model)
        _require_mlps(model, self)

    def hook_name(self) -> str:
        return f"blocks.{self.layer}.hook_mlp_out"

    def __str__(self) -> str:
        return f"{self.method}-ablate the MLP output of layer {self.layer} (including b_out) {self._where()}"


@dataclass(frozen=True)
class NeuronAblation(_Spec):
    """Ablate neuron ``neuron`` of layer ``layer``'s MLP (its activation after the nonlinearity)."""

    layer: int
    neuron: int
    positions: tuple[int, ...] | None = None
    method: str = field(default="zero", kw_only=True)

    def __post_init__(self) -> None:
        self._post_init("neuron")

    def validate(self, model: MiniGPT) -> None:
        super().validate(model)
        _require_mlps(model, self)
        _in_range(self.neuron, model.cfg.d_mlp, "neuron", "neurons per MLP")

    def hook_name(self) -> str:
        return f"blocks.{self.layer}.mlp.hook_post"

    def index(self, n_pos: int) -> tuple:
        return (*super().index(n_pos), self.neuron)

    def __str__(self) -> str:
        return f"{self.method}-ablate neuron {self.neuron} of MLP {self.layer} (its activation) {self._where()}"


@dataclass(frozen=True)
class PositionAblation(_Spec):
    """Ablate the residual stream at position ``pos`` entering layer ``layer`` (``blocks.layer.hook_resid_pre``)."""

    layer: int
    pos: int
    method: str = field(default="zero", kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.pos, int) or isinstance(self.pos, bool):
            raise TypeError(f"pos must be an int, got {self.pos!r}")
        self._post_init()

    def index(self, n_pos: int) -> tuple:
        return (slice(None), resolve_positions([self.pos], n_pos))

    def hook_name(self) -> str:
        return f"blocks.{self.layer}.hook_resid_pre"

    def __str__(self) -> str:
        return f"{self.method}-ablate the residual stream entering layer {self.layer} at position {self.pos}"


Spec = HeadAblation | AttnLayerAblation | MLPAblation | NeuronAblation | PositionAblation


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


def _replacer(spec: _Spec, source: Tensor | None):
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
        if not isinstance(spec, _Spec):
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


# ---------------------------------------------------------------------------------------- parsing
def parse_pairs(text: str, second: str = "head") -> list[tuple[int, int]]:
    """``"1.2,0.3"`` -> ``[(1, 2), (0, 3)]`` (LAYER.HEAD, LAYER.NEURON or LAYER.POS pairs)."""
    if not isinstance(text, str):
        raise TypeError(f"expected a string of LAYER.{second.upper()} pairs like '1.2,0.3', got {type(text).__name__}")
    pairs = []
    for item in (t.strip() for t in text.split(",")):
        parts = item.split(".")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"could not parse {second} {item!r}: expected LAYER.{second.upper()} like '1.2'")
        pairs.append((int(parts[0]), int(parts[1])))
    return pairs


def parse_layers(text: str) -> list[int]:
    """``"0,1"`` -> ``[0, 1]``."""
    if not isinstance(text, str):
        raise TypeError(f"expected a string of comma-separated layer numbers like '0,1', got {type(text).__name__}")
    items = [t.strip() for t in text.split(",")]
    if not all(t.isdigit() for t in items):
        raise ValueError(f"could not parse layers {text!r}: expected comma-separated layer numbers like '0,1'")
    return [int(t) for t in items]


def _specs(items: object, cls: type, method: str, second: str | None) -> list[Spec]:
    """Coerce ``heads=``/``mlps=``/... arguments (a string, one item or a list) to specs of ``cls``."""
    if items is None:
        return []
    if isinstance(items, str):
        items = parse_pairs(items, second) if second else parse_layers(items)
    elif isinstance(items, _Spec | int) or (isinstance(items, tuple) and all(isinstance(i, int) for i in items)):
        items = [items]
    out = []
    for item in items:
        if isinstance(item, str):
            out += _specs(item, cls, method, second)
        elif isinstance(item, _Spec):
            if not isinstance(item, cls):
                raise TypeError(f"{item!r} was given where {cls.__name__} specs are expected")
            out.append(item)
        elif second is None and isinstance(item, int):
            out.append(cls(item, method=method))
        elif second is not None and isinstance(item, tuple | list) and len(item) == 2:
            out.append(cls(*item, method=method))
        else:
            shape = "an int layer" if second is None else f"a (layer, {second}) pair or 'LAYER.{second.upper()}'"
            raise TypeError(f"cannot make a {cls.__name__} from {item!r}; give {shape}")
    return out


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
    all_specs += _specs(heads, HeadAblation, method, "head")
    all_specs += _specs(attn_layers, AttnLayerAblation, method, None)
    all_specs += _specs(mlps, MLPAblation, method, None)
    all_specs += _specs(neurons, NeuronAblation, method, "neuron")
    all_specs += _specs(positions, PositionAblation, method, "pos")
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
