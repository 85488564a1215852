"""Where each node of a circuit graph is drawn: by layer, bottom to top (plain Python, no torch or pandas).

One layout for every picture of a graph: the SVG that :meth:`interp.discover.circuit.Circuit.to_svg` writes
and the dashboard's figure (``dashboards.plots.graph``). Rows from the bottom: ``embed`` and ``pos_embed``,
then per layer a row of heads and a row for the MLP, then ``logits`` at the top. An input name
(``L1H0.k``) is drawn at its head, with ``q``, ``k`` and ``v`` slightly apart so that the three reads of
one head can be told apart.

Example:
    >>> node_of("L1H0.k"), node_of("L0.mlp"), node_of("logits")
    ('L1H0', 'L0.mlp', 'logits')
    >>> position("L1H2"), position("embed")
    ((2.0, 3.0), (0.5, 0.0))
    >>> read_offset("L1H2.q"), read_offset("L1.mlp")
    (-0.18, 0.0)
"""

from __future__ import annotations

from model.network.labels import Component, component_label, parse_component

GRAPH_KINDS = ("embed", "pos_embed", "head", "mlp", "logits")  # what a circuit graph's names can be
READ_OFFSETS = {"q": -0.18, "k": 0.0, "v": 0.18}  # where a head's q, k and v reads end, left to right


def graph_name(name: str) -> Component:
    """The component a node or input name of a circuit graph names (:func:`model.network.labels.parse_component`),
    or a ValueError when it is no graph name."""
    if not isinstance(name, str):
        raise TypeError(f"a node name must be a str, got {type(name).__name__}")
    try:
        component = parse_component(name)
    except ValueError:
        component = None
    if component is None or component.kind not in GRAPH_KINDS:
        raise ValueError(
            f"{name!r} is not a node or input name; use embed, pos_embed, L{{l}}H{{h}}, L{{l}}H{{h}}.q/.k/.v, "
            "L{l}.mlp or logits"
        )
    return component


def node_of(name: str) -> str:
    """The node an input belongs to (``L1H0.k`` -> ``L1H0``); a node is its own."""
    component = graph_name(name)
    return component_label("head", component.layer, component.index) if component.kind == "head" else name


def position(name: str, n_heads: int = 4, n_layers: int | None = None) -> tuple[float, float]:
    """``(x, y)`` of a node: heads spread over ``0 .. n_heads - 1``, MLPs centred, logits on top.

    ``n_layers`` places ``logits`` (default: just above the layer of the node, i.e. row 1 for logits alone);
    pass the model's ``n_layers`` to put every graph's logits on the same row.
    """
    node = graph_name(node_of(name))
    kind, layer, head = node.kind, node.layer, node.index
    centre = (n_heads - 1) / 2
    if kind == "embed":
        return centre - max(1.0, n_heads / 4), 0.0
    if kind == "pos_embed":
        return centre + max(1.0, n_heads / 4), 0.0
    if kind == "head":
        return float(head), 1.0 + 2 * layer
    if kind == "mlp":
        return centre, 2.0 + 2 * layer
    return centre, 1.0 + 2 * (n_layers if n_layers is not None else 1)


def read_offset(name: str) -> float:
    """How far right of its node an input's edges end: ``q`` left, ``k`` centre, ``v`` right, others 0."""
    return READ_OFFSETS.get(graph_name(name).read or "", 0.0)


def extent(names: list[str]) -> tuple[int, int]:
    """``(n_heads, n_layers)`` that a set of names needs (at least one head and one layer)."""
    heads = layers = 0
    for name in names:
        component = graph_name(name)
        if component.layer is not None:
            layers = max(layers, component.layer + 1)
        if component.index is not None:
            heads = max(heads, component.index + 1)
    return max(heads, 1), max(layers, 1)
