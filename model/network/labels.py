"""One name per component: the labels every frame, page and command line uses, made by one function and parsed by
another (plain Python, no torch).

=======================  ==========================================================================
label                    what it names
=======================  ==========================================================================
``embed``, ``pos_embed``  the token and the position embedding (their writes into the residual stream)
``L1``                    block 1 as a whole
``L1H3``                  head 3 of block 1 (its write, ``z_h W_O[h]``)
``L1H3.q`` (``.k .v``)    what head 3's query (key, value) reads: an input of the circuit graph
``L1.attn``               block 1's attention sublayer (every head and ``b_O``)
``L1.attn_bias``          its output bias ``b_O``
``L0.mlp``                block 0's MLP (its write; as a graph input, what it reads)
``L0.mlp_bias``           its output bias ``b_out``
``L1N37``                 neuron 37 of block 1's MLP
``L1.resid_pre``          a residual stage of block 1 (``resid_pre``, ``resid_mid``, ``resid_post``)
``logits``                the read-out (the graph's last input)
=======================  ==========================================================================

Example:
    >>> component_label("head", 1, 3), component_label("neuron", 1, 37), component_label("mlp", 0)
    ('L1H3', 'L1N37', 'L0.mlp')
    >>> parse_component("L1H3.k")
    Component(kind='head', layer=1, index=3, read='k')
    >>> parse_component("1.37", expect="neuron")  # the LAYER.INDEX shorthand, where the kind is known
    Component(kind='neuron', layer=1, index=37, read=None)
    >>> str(parse_component("L0.resid_mid"))
    'L0.resid_mid'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WHOLE = ("embed", "pos_embed", "logits")  # components outside the blocks
INDEXED = {"head": "H", "neuron": "N"}  # kinds with an index within their block, and its letter
SUBLAYERS = ("attn", "attn_bias", "mlp", "mlp_bias", "resid_pre", "resid_mid", "resid_post")  # L{l}.<kind>
READS = ("q", "k", "v")  # what a head's input is for
_LABEL = re.compile(r"L(\d+)(?:([HN])(\d+)(?:\.([qkv]))?|\.([a-z_]+))?")
_SHORTHAND = re.compile(r"(\d+)\.(\d+)")


@dataclass(frozen=True)
class Component:
    """A parsed label: ``kind`` (embed, pos_embed, logits, layer, head, neuron, or one of :data:`SUBLAYERS`),
    ``layer`` (block index or None), ``index`` (a head's or neuron's index, or None) and ``read`` (q, k or v for a
    head's input, else None). ``str()`` gives the label back."""

    kind: str
    layer: int | None = None
    index: int | None = None
    read: str | None = None

    def __str__(self) -> str:
        return component_label(self.kind, self.layer, self.index, self.read)


def component_label(kind: str, layer: int | None = None, index: int | None = None, read: str | None = None) -> str:
    """The label of a component (table in the module docstring): ``kind`` with its block ``layer``, the ``index``
    of a head or neuron, and ``read`` (q, k, v) for a head's input.

    Example:
        >>> component_label("head", 0, 2, read="v"), component_label("resid_pre", 1), component_label("embed")
        ('L0H2.v', 'L1.resid_pre', 'embed')
    """
    if kind in WHOLE:
        return kind
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
        raise ValueError(f"a {kind} label needs its block index (an int >= 0), got layer={layer!r}")
    if kind == "layer":
        return f"L{layer}"
    if kind in INDEXED:
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"a {kind} label needs its index within the block (an int >= 0), got index={index!r}")
        if read is not None and (kind != "head" or read not in READS):
            raise ValueError(f"read={read!r}: only a head has inputs, and they are {list(READS)}")
        return f"L{layer}{INDEXED[kind]}{index}" + (f".{read}" if read else "")
    if kind in SUBLAYERS:
        return f"L{layer}.{kind}"
    raise ValueError(f"unknown component kind {kind!r}; kinds are {[*WHOLE, 'layer', *INDEXED, *SUBLAYERS]}")


def parse_component(label: str, expect: str | None = None) -> Component:
    """The :class:`Component` a label names. ``expect`` (``"head"`` or ``"neuron"``) also takes the shorthand
    ``LAYER.INDEX`` (``"1.37"``) and refuses labels of another kind, naming what was expected.

    Example:
        >>> parse_component("L0H1", expect="neuron")
        Traceback (most recent call last):
        ...
        ValueError: 'L0H1' is a head, but a neuron is expected here: write it like L1N37 (or 1.37)
    """
    if not isinstance(label, str):
        raise TypeError(f"a component label must be a str, got {type(label).__name__}")
    text = label.strip()
    component = None
    if text in WHOLE:
        component = Component(text)
    elif match := _LABEL.fullmatch(text):
        layer, letter, index, read, sub = match.groups()
        if letter:
            kind = "head" if letter == "H" else "neuron"
            if not (read and kind == "neuron"):
                component = Component(kind, int(layer), int(index), read)
        elif sub is None:
            component = Component("layer", int(layer))
        elif sub in SUBLAYERS:
            component = Component(sub, int(layer))
    elif expect in INDEXED and (match := _SHORTHAND.fullmatch(text)):
        component = Component(expect, int(match.group(1)), int(match.group(2)))
    example = {"head": "L1H3 (or 1.3)", "neuron": "L1N37 (or 1.37)"}.get(expect or "")
    if component is None:
        hint = f"write it like {example}" if example else "labels look like embed, L1H3, L1H3.k, L0.mlp, L1N37, logits"
        raise ValueError(f"{label!r} is not a component label; {hint}")
    if expect is not None and component.kind != expect:
        article = "an" if component.kind[0] in "aeiou" else "a"
        raise ValueError(f"{label!r} is {article} {component.kind}, but a {expect} is expected here: write it like "
                         f"{example or component_label(expect, 0)}")  # fmt: skip
    return component
