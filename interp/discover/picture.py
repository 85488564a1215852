"""A circuit as a picture: an SVG drawn by layer (plain Python, no plotting library), and Graphviz DOT text.

The layout is :mod:`interp.discover.layout`'s, the one the dashboard's figure uses too. Edges are coloured
by the sign of their score (red: corrupting the edge raises the metric, blue: lowers it, grey: no score)
and drawn wider the larger it is; an edge into a head ends at its ``q``, ``k`` or ``v`` mark.

Example:
    >>> text = svg_text([("embed", "L0H0.v"), ("L0H0", "logits")], [0.5, -1.0], n_heads=1, n_layers=1)
    >>> text.startswith("<svg") and text.count("<line") == 2
    True
    >>> print(dot_text([("L0H0", "L1H0.k")], None).splitlines()[2])
      "L0H0" -> "L1H0" [label="k"];
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from interp.discover.graph import _pairs
from interp.discover.layout import graph_name, node_of, position, read_offset

X0, Y0, DX, DY = 70.0, 50.0, 110.0, 62.0  # margins and the spacing of the layout's units, in pixels
POSITIVE, NEGATIVE, NEUTRAL = "#c0392b", "#2e6fb7", "#888888"


def _nodes(edges: Sequence[tuple[str, str]]) -> list[str]:
    names = {u for u, _ in edges} | {node_of(d) for _, d in edges}
    order = {"embed": (-1, 0), "pos_embed": (-1, 1), "logits": (10**9, 0)}

    def key(name: str) -> tuple[int, int]:
        if name in order:
            return order[name]
        node = graph_name(name)
        return 2 * node.layer + (node.kind == "mlp"), node.index or 0

    return sorted(names, key=key)


def _checked(edges: object, scores: object, what: str) -> tuple[list[tuple[str, str]], list[float] | None]:
    pairs = _pairs(edges, what)
    for u, d in pairs:
        graph_name(u), graph_name(d)  # unknown names are a ValueError naming them
    if scores is None:
        return pairs, None
    if isinstance(scores, str) or not isinstance(scores, Sequence) or len(scores) != len(pairs):
        raise ValueError(f"{what}: give one score per edge ({len(pairs)}), or None")
    return pairs, [float(s) for s in scores]


def _colour(score: float | None) -> str:
    return NEUTRAL if score is None else POSITIVE if score > 0 else NEGATIVE


def svg_text(
    edges: Sequence[tuple[str, str]], scores: Sequence[float] | None, n_heads: int, n_layers: int, title: str = ""
) -> str:
    """The SVG source of a picture of ``edges`` (with ``scores``, or None) on a graph of that size."""
    edges, scores = _checked(edges, scores, "svg_text")
    if not edges:
        raise ValueError("svg_text: there is no edge to draw")
    nodes = _nodes(edges)
    xy = {name: position(name, n_heads, n_layers) for name in nodes}
    top, left = max(y for _, y in xy.values()), min(0.0, *(x for x, _ in xy.values()))
    width = X0 * 2 + DX * (max(x for x, _ in xy.values()) - left)
    height = Y0 * 2 + DY * top + 20

    def px(x: float, y: float) -> tuple[float, float]:
        return X0 + DX * (x - left), Y0 + 20 + DY * (top - y)

    largest = max((abs(s) for s in scores), default=0.0) if scores else 0.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'font-family="monospace" font-size="12">',
        f'<rect width="100%" height="100%" fill="white"/><text x="10" y="20">{html.escape(title)}</text>',
    ]
    for i, (u, d) in enumerate(edges):
        score = None if scores is None else float(scores[i])
        x1, y1 = px(*xy[u])
        x2, y2 = px(*xy[node_of(d)])
        x2 += DX * read_offset(d)
        stroke = 1.0 if not largest or score is None else 1.0 + 5.0 * abs(score) / largest
        tip = f"{u} -> {d}" + ("" if score is None else f": {score:+.4g}")
        parts.append(
            f'<line x1="{x1:.1f}" y1="{y1 - 10:.1f}" x2="{x2:.1f}" y2="{y2 + 10:.1f}" stroke="{_colour(score)}" '
            f'stroke-width="{stroke:.2f}" stroke-opacity="0.8"><title>{html.escape(tip)}</title></line>'
        )
    for name in nodes:
        x, y = px(*xy[name])
        parts.append(
            f'<rect x="{x - 36:.1f}" y="{y - 10:.1f}" width="72" height="20" rx="5" fill="#f3f7fb" stroke="#345"/>'
            f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def dot_text(edges: Sequence[tuple[str, str]], scores: Sequence[float] | None) -> str:
    """Graphviz DOT source: one line per edge, labelled with the head input it enters (q, k, v) and its score."""
    edges, scores = _checked(edges, scores, "dot_text")
    lines = ["digraph circuit {", "  rankdir=BT;"]
    for i, (u, d) in enumerate(edges):
        label = graph_name(d).read or ""
        if scores is not None:
            label = f"{label} {float(scores[i]):+.3g}".strip()
        attrs = f' [label="{label}"]' if label else ""
        lines.append(f'  "{u}" -> "{node_of(d)}"{attrs};')
    return "\n".join([*lines, "}"])
