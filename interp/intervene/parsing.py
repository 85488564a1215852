"""Ablation specs from the strings people type: ``"1.2,0.3"`` (layer.head pairs), ``"0,1"`` (layers).

The CLI's ``--heads`` / ``--neurons`` / ``--positions`` flags and the ``heads=`` / ``mlps=`` / ... arguments of
:func:`interp.intervene.ablate.ablate` all go through :func:`specs_from`.

Example:
    >>> parse_pairs("1.2, 0.3"), parse_layers("0,1")
    ([(1, 2), (0, 3)], [0, 1])
    >>> from interp import HeadAblation
    >>> specs_from("0.1,1.3", HeadAblation, "zero", "head")[1]
    HeadAblation(layer=1, head=3, positions=None, method='zero')
"""

from __future__ import annotations

from interp.intervene.specs import Spec, _Spec


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
