"""A MiniGPT's computational graph as circuit discovery uses it: nodes that write, inputs that read, edges.

Upstream **nodes** write to the residual stream: ``embed``, ``pos_embed`` (learned or sinusoidal positions;
rotary models have none), ``L{l}H{h}`` (one head's output, ``z_h W_O[h]``) and ``L{l}.mlp``. Downstream
**inputs** read it: ``L{l}H{h}.q``, ``L{l}H{h}.k``, ``L{l}H{h}.v`` (what the head's query, key and value
are computed from), ``L{l}.mlp`` and ``logits``. An **edge** ``(u, d)`` is node ``u``'s write as input ``d``
reads it; ``d`` reads every node computed before it: layer ``l``'s heads read the embeddings and every
node of the layers below, its MLP also reads layer ``l``'s heads, and the logits read everything.

Each input is the sum of those writes (and of the constant attention biases ``b_O``, which no patch
changes) *before* its LayerNorm, so one edge can carry another value while every other reader of
``u`` still sees the original: each input has, in effect, a residual stream of its own. That needs the
residual stream to be a sum of writes: ``norm="post"`` models, which re-normalise it, are refused.

Edges are ordered by input (in forward order), then by node: :attr:`EdgeGraph.edges` and every frame of
:mod:`interp.discover` use that order. The nodes an input reads are always the first ``n`` nodes in
forward order (:attr:`EdgeGraph.n_reads`).

Example:
    >>> from model import MiniGPT
    >>> model = MiniGPT.from_pretrained("induction-2l")
    >>> frame = circuit_graph(model)
    >>> len(frame), list(frame.columns)
    (19, ['upstream', 'downstream'])
    >>> frame[frame.downstream == "L1H0.k"].upstream.tolist()
    ['embed', 'pos_embed', 'L0H0']
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import pandas as pd

from interp.common.checks import check_model
from model.network.config import ModelConfig
from model.network.labels import READS, component_label
from model.network.minigpt import MiniGPT

SLOTS = READS  # a head's three inputs, in edge order


@dataclass(frozen=True)
class EdgeGraph:
    """The nodes, inputs and edges of one config (see the module docstring); build it with :func:`edge_graph`."""

    cfg: ModelConfig

    def __post_init__(self) -> None:
        if not isinstance(self.cfg, ModelConfig):
            raise TypeError(f"EdgeGraph needs a ModelConfig, got {type(self.cfg).__name__}")
        if self.cfg.norm == "post":
            raise ValueError(
                "circuit discovery needs the residual stream to be a sum of writes, but norm='post' re-normalises "
                "it after every block; use a pre-norm or LayerNorm-free model"
            )

    @property
    def n_first(self) -> int:
        """Nodes before the first block: embed, and pos_embed unless positions are rotary."""
        return 1 if self.cfg.positional == "rotary" else 2

    @property
    def per_layer(self) -> int:
        """Nodes per block: its heads, and its MLP."""
        return self.cfg.n_heads + (0 if self.cfg.attn_only else 1)

    def head_node(self, layer: int, head: int) -> int:
        return self.n_first + layer * self.per_layer + head

    def mlp_node(self, layer: int) -> int:
        return self.n_first + layer * self.per_layer + self.cfg.n_heads

    def attn_reads(self, layer: int) -> int:
        """How many nodes (the first ones in forward order) the heads of ``layer`` read."""
        return self.n_first + layer * self.per_layer

    def mlp_reads(self, layer: int) -> int:
        return self.attn_reads(layer) + self.cfg.n_heads

    @cached_property
    def upstream(self) -> tuple[str, ...]:
        names = ["embed"] + ([] if self.n_first == 1 else ["pos_embed"])
        for layer in range(self.cfg.n_layers):
            names += [component_label("head", layer, h) for h in range(self.cfg.n_heads)]
            names += [] if self.cfg.attn_only else [component_label("mlp", layer)]
        return tuple(names)

    @cached_property
    def downstream(self) -> tuple[str, ...]:
        names = []
        for layer in range(self.cfg.n_layers):
            names += [component_label("head", layer, h, s) for h in range(self.cfg.n_heads) for s in SLOTS]
            names += [] if self.cfg.attn_only else [component_label("mlp", layer)]
        return (*names, "logits")

    @cached_property
    def n_reads(self) -> tuple[int, ...]:
        """For each input, the number of nodes it reads (always the first ones)."""
        reads = []
        for layer in range(self.cfg.n_layers):
            reads += [self.attn_reads(layer)] * (3 * self.cfg.n_heads)
            reads += [] if self.cfg.attn_only else [self.mlp_reads(layer)]
        return (*reads, len(self.upstream))

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        """Index of the first edge of each input (and the number of edges, last)."""
        out = [0]
        for n in self.n_reads:
            out.append(out[-1] + n)
        return tuple(out)

    @property
    def n_edges(self) -> int:
        return self.offsets[-1]

    @cached_property
    def edges(self) -> tuple[tuple[str, str], ...]:
        return tuple(
            (self.upstream[u], d) for d, n in zip(self.downstream, self.n_reads, strict=True) for u in range(n)
        )

    @cached_property
    def edge_index(self) -> dict[tuple[str, str], int]:
        return {edge: i for i, edge in enumerate(self.edges)}

    @cached_property
    def edge_up(self) -> tuple[int, ...]:
        """Node index of each edge's upstream end."""
        return tuple(u for n in self.n_reads for u in range(n))

    @cached_property
    def edge_down(self) -> tuple[int, ...]:
        """Input index of each edge's downstream end."""
        return tuple(d for d, n in enumerate(self.n_reads) for _ in range(n))

    @cached_property
    def owner(self) -> tuple[int | None, ...]:
        """For each input, the node whose computation reads it (None for the logits)."""
        out: list[int | None] = []
        for layer in range(self.cfg.n_layers):
            out += [self.head_node(layer, h) for h in range(self.cfg.n_heads) for _ in SLOTS]
            out += [] if self.cfg.attn_only else [self.mlp_node(layer)]
        return (*out, None)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"upstream": [u for u, _ in self.edges], "downstream": [d for _, d in self.edges]})

    def indices(self, edges: object, what: str = "edges") -> list[int]:
        """Edge indices of ``edges``: None (every edge), a frame with upstream/downstream columns, an object
        with an ``edges`` attribute (a Circuit), ``(upstream, downstream)`` pairs or ``"upstream->downstream"``
        strings. Unknown edges are a KeyError naming the closest ones."""
        if edges is None:
            return list(range(self.n_edges))
        pairs = _pairs(edges, what)
        out = []
        for pair in pairs:
            if pair not in self.edge_index:
                names = [f"{u}->{d}" for u, d in self.edges]
                close = difflib.get_close_matches(f"{pair[0]}->{pair[1]}", names, n=3, cutoff=0.5)
                hint = f"did you mean {', '.join(close)}?" if close else "list them with circuit_graph(model)"
                raise KeyError(f"{what}: {pair[0]}->{pair[1]} is not an edge of this model's graph; {hint}")
            out.append(self.edge_index[pair])
        if len(set(out)) != len(out):
            raise ValueError(f"{what} lists an edge twice; give each edge once")
        return out


def _pairs(edges: object, what: str) -> list[tuple[str, str]]:
    if isinstance(edges, pd.DataFrame):
        if not {"upstream", "downstream"} <= set(edges.columns):
            raise ValueError(
                f"{what}: a frame of edges needs upstream and downstream columns, got {list(edges.columns)}"
            )
        return list(zip(edges["upstream"].tolist(), edges["downstream"].tolist(), strict=True))
    edges = getattr(edges, "edges", edges)
    if isinstance(edges, str | bytes) or not isinstance(edges, Iterable):
        raise TypeError(
            f"{what} must be None, a frame, a Circuit or a list of (upstream, downstream) pairs, got "
            f"{type(edges).__name__}"
        )
    out = []
    for item in edges:
        if isinstance(item, str) and "->" in item:
            item = tuple(part.strip() for part in item.split("->", 1))
        if not (isinstance(item, tuple | list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            raise TypeError(f"{what}: each edge must be an (upstream, downstream) pair of names, got {item!r}")
        out.append((item[0], item[1]))
    return out


def edge_graph(model_or_cfg: MiniGPT | ModelConfig) -> EdgeGraph:
    """The :class:`EdgeGraph` of a model (or a config).

    Example:
        >>> from model import ModelConfig
        >>> graph = edge_graph(ModelConfig())
        >>> len(graph.upstream), len(graph.downstream), graph.n_edges
        (12, 27, 137)
    """
    if isinstance(model_or_cfg, ModelConfig):
        return EdgeGraph(model_or_cfg)
    return EdgeGraph(check_model(model_or_cfg).cfg)


def circuit_graph(model: MiniGPT) -> pd.DataFrame:
    """One row per edge of ``model``'s graph: ``upstream`` (a node) and ``downstream`` (an input), in edge order.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> frame = circuit_graph(MiniGPT(ModelConfig(), seed=0))
        >>> frame.iloc[0].tolist(), frame.iloc[-1].tolist()
        (['embed', 'L0H0.q'], ['L1.mlp', 'logits'])
    """
    return edge_graph(model).frame()
