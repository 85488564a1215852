"""Ablation specs: frozen values that say what they replace.

Each spec names one component (a head, an attention layer, an MLP, a neuron, a position of the
residual stream), the hook point that carries it (``spec.hook_name()``), the slice of that activation
it replaces (``spec.index(n_pos)``) and a method (``"zero"``, ``"mean"``, ``"resample"``; what they do is
in :mod:`interp.intervene.replace`, which turns specs into hooks). ``str(spec)`` says it in words;
:mod:`interp.intervene.parsing` reads them from ``"1.2,0.3"``-style strings.

Example:
    >>> spec = HeadAblation(1, 2, method="mean")
    >>> print(spec)
    mean-ablate head L1H2 (its z, so its write to the residual stream) at all positions
    >>> spec.hook_name(), spec.index(5)
    ('blocks.1.attn.hook_z', (slice(None, None, None), slice(None, None, None), 2))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from interp.common.checks import check_int
from model.network.labels import component_label
from model.network.minigpt import MiniGPT

METHODS = ("zero", "mean", "resample")


def check_method(method: object) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown ablation method {method!r}; use one of {list(METHODS)}")
    return method  # type: ignore[return-value]


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
            check_int(getattr(self, name), name, minimum=0)
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
        what = f"head {component_label('head', self.layer, self.head)} (its z, so its write to the residual stream)"
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
        what = f"neuron {self.neuron} of MLP {self.layer} ({component_label('neuron', self.layer, self.neuron)}"
        return f"{self.method}-ablate {what}, its activation) {self._where()}"


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
