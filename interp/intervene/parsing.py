"""Ablation specs from the strings people type: ``"L1H2,L0H3"`` (heads), ``"L1N37"`` (neurons), ``"0,1"`` (layers).

Heads and neurons are component labels (:mod:`model.network.labels`), or the shorthand ``LAYER.INDEX``
(``"1.2"``, ``"1.37"``); positions are ``LAYER.POS`` pairs (``"0.5"``: the residual entering layer 0 at position 5).

The CLI's ``--heads`` / ``--neurons`` / ``--positions`` flags and the ``heads=`` / ``mlps=`` / ... arguments of
:func:`interp.intervene.ablate.ablate` all go through :func:`specs_from`.

Example:
    >>> parse_pairs("L1H2, 0.3"), parse_pairs("L1N37", "neuron"), parse_layers("0,1")
    ([(1, 2), (0, 3)], [(1, 37)], [0, 1])
    >>> from interp import HeadAblation
    >>> specs_from("0.1,1.3", HeadAblation, "zero", "head")[1]
    HeadAblation(layer=1, head=3, positions=None, method='zero')
"""

from __future__ import annotations

from interp.intervene.specs import Spec, _Spec
from model.network.labels import INDEXED, parse_component


def parse_pairs(text: str, second: str = "head") -> list[tuple[int, int]]:
    """``"L1H2,0.3"`` -> ``[(1, 2), (0, 3)]``: ``(layer, index)`` of heads or neurons (labels or ``LAYER.INDEX``),
    or ``(layer, pos)`` of ``LAYER.POS`` pairs (``second="pos"``)."""
    if not isinstance(text, str):
        example = {"head": "L1H2,L0H3", "neuron": "L1N37,L0N5"}.get(second, "1.2,0.3")
        raise TypeError(f"expected a string of {second}s like '{example}', got {type(text).__name__}")
    pairs = []
    for item in (t.strip() for t in text.split(",")):
        if second in INDEXED:
            component = parse_component(item, expect=second)
            pairs.append((component.layer, component.index))
            continue
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


def specs_from(items: object, cls: type, method: str, second: str | None) -> list[Spec]:
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
            out += specs_from(item, cls, method, second)
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
