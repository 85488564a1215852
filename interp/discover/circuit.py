"""``Circuit``: a set of edges of a model's graph, what every discovery method returns and is scored by.

A circuit is judged by its **faithfulness**: run the clean tokens with the circuit's edges clean and every
other edge corrupted (the masked forward of :mod:`interp.discover.masked`), and see how much of the clean
metric is left: ``(metric_circuit - metric_corrupted) / (metric_clean - metric_corrupted)``, 1 when the
circuit alone does what the whole model does, 0 when it does no better than the corrupted pass.

Example:
    >>> circuit = Circuit([("embed", "L1H0.v"), ("L1H0", "logits")], scores=[-2.0, -3.5])
    >>> print(circuit)
    Circuit of 2 edges between 3 nodes:
      the value of head L1H0 reads the token embedding (score -2)
      the logits read head L1H0 (score -3.5)
    >>> circuit.size, ("L1H0", "logits") in circuit
    (2, True)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from jaxtyping import Int
from torch import Tensor

from interp.common.checks import check_int
from interp.common.export import write_csv_atomic
from interp.discover.graph import EdgeGraph, _pairs
from interp.discover.layout import extent, graph_name, node_of
from interp.discover.masked import _circuit_mask, _masked_metrics
from interp.discover.picture import dot_text, svg_text
from interp.discover.recording import MetricLike, _check_pair, _record
from model.network.minigpt import MiniGPT
from model.storage.files import atomic_write, check_output_path

_READS = {"q": "the query of head {}", "k": "the key of head {}", "v": "the value of head {}"}


def _words(name: str) -> str:
    component = graph_name(name)
    if component.kind == "head":
        return (_READS[component.read] if component.read else "head {}").format(node_of(name))
    if component.kind == "mlp":
        return f"the MLP of layer {component.layer}"
    words = {"embed": "the token embedding", "pos_embed": "the position embedding", "logits": "the logits"}
    return words[component.kind]


@dataclass(frozen=True)
class Circuit:
    """Edges ``(upstream, downstream)`` (names as in :func:`~interp.discover.graph.circuit_graph`), with an
    optional score per edge (what the method that found it measured, in metric units)."""

    edges: tuple[tuple[str, str], ...]
    scores: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        edges = tuple(_pairs(self.edges, "Circuit edges"))
        for u, d in edges:
            up, down = graph_name(u), graph_name(d)
            if up.read is not None or up.kind == "logits":
                raise ValueError(f"{u!r} cannot be an edge's upstream end: that is a node's input, not a node")
            if down.kind in ("embed", "pos_embed") or (down.kind == "head" and down.read is None):
                raise ValueError(f"{d!r} cannot be an edge's downstream end; use an input such as {d}.q or logits")
        if len(set(edges)) != len(edges):
            raise ValueError("a Circuit lists an edge twice; give each edge once")
        object.__setattr__(self, "edges", edges)
        if self.scores is not None:
            scores = tuple(float(s) for s in np.asarray(self.scores, dtype=np.float64).reshape(-1))
            if len(scores) != len(edges):
                raise ValueError(f"a Circuit has {len(edges)} edges but {len(scores)} scores; give one per edge")
            object.__setattr__(self, "scores", scores)

    # ------------------------------------------------------------------ the set
    @property
    def size(self) -> int:
        """The number of edges."""
        return len(self.edges)

    def __len__(self) -> int:
        return len(self.edges)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.edges)

    def __contains__(self, edge: object) -> bool:
        return edge in set(self.edges)

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every node an edge leaves from or enters (``L1H0.k`` counts as ``L1H0``), logits included."""
        seen = dict.fromkeys(n for u, d in self.edges for n in (u, node_of(d)))
        return tuple(seen)

    def pruned(self) -> Circuit:
        """The edges that can change the output: an edge that leaves a node no kept edge feeds (the node then
        computes its corrupted value either way), or enters a node no kept edge leaves, is dropped, until none
        is left (embed and pos_embed always feed themselves)."""
        edges = list(range(self.size))
        while True:
            fed = {"embed", "pos_embed"} | {node_of(self.edges[i][1]) for i in edges}
            read = {"logits"} | {self.edges[i][0] for i in edges}
            keep = [i for i in edges if self.edges[i][0] in fed and node_of(self.edges[i][1]) in read]
            if keep == edges:
                break
            edges = keep
        scores = None if self.scores is None else [self.scores[i] for i in edges]
        return Circuit(tuple(self.edges[i] for i in edges), scores)

    # ------------------------------------------------------------------ judging
    def faithfulness(
        self,
        model: MiniGPT,
        clean: Int[Tensor, "batch pos"] | str,
        corrupted: Int[Tensor, "batch pos"] | str,
        metric: MetricLike,
    ) -> float:
        """How much of the clean metric the circuit alone keeps, every other edge corrupted (module docstring).

        Example:
            >>> from model import MiniGPT
            >>> model = MiniGPT.from_pretrained("minigpt-text")
            >>> from interp.discover.graph import circuit_graph
            >>> everything = Circuit(circuit_graph(model))  # every edge kept: the clean model, so 1
            >>> round(everything.faithfulness(model, "the cat sat on the mat", "a dog ran in the park.", "loss"), 4)
            1.0
        """
        model, graph, clean, corrupted, metric = _check_pair(model, clean, corrupted, metric)
        keep = graph.indices(self, "the circuit")
        recording = _record(model, graph, clean, corrupted, metric)
        value = _masked_metrics(model, recording, _circuit_mask(graph.n_edges, keep, recording.clean_writes), metric)
        return float(recording.normalized(value.double().cpu().numpy())[0])

    # ------------------------------------------------------------------ making one
    @classmethod
    def from_scores(cls, frame: pd.DataFrame, threshold: float | None = None, top: int | None = None) -> Circuit:
        """The edges of a score frame (``upstream, downstream, score``) with ``abs_score >= threshold``, or the
        ``top`` largest; then :meth:`pruned`. This is thresholded EAP when the frame is EAP's.

        Example:
            >>> frame = pd.DataFrame({"upstream": ["embed", "L0H0"], "downstream": ["logits", "logits"],
            ...                       "score": [-2.0, 0.1]})
            >>> Circuit.from_scores(frame, top=1).edges
            (('embed', 'logits'),)
        """
        if not isinstance(frame, pd.DataFrame) or not {"upstream", "downstream", "score"} <= set(frame.columns):
            raise TypeError("from_scores needs a frame with upstream, downstream and score columns")
        if (threshold is None) == (top is None):
            raise ValueError("give exactly one of threshold= (keep abs_score >= it) or top= (keep the top edges)")
        strength = frame["score"].abs()
        if top is not None:
            chosen = frame.loc[strength.nlargest(check_int(top, "top", minimum=0)).index]
        else:
            if not isinstance(threshold, int | float) or isinstance(threshold, bool) or not threshold >= 0:
                raise ValueError(f"threshold must be a number >= 0, got {threshold!r}")
            chosen = frame[strength >= threshold]
        pairs = list(zip(chosen["upstream"], chosen["downstream"], strict=True))
        return cls(tuple(pairs), tuple(chosen["score"].astype(float))).pruned()

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> Circuit:
        """Read what :meth:`to_csv` wrote."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no circuit file {path}")
        frame = pd.read_csv(path)
        if not {"upstream", "downstream"} <= set(frame.columns):
            raise ValueError(f"{path} has no upstream and downstream columns: not a circuit CSV")
        scores = tuple(frame["score"]) if "score" in frame and frame["score"].notna().all() else None
        return cls(tuple(zip(frame["upstream"], frame["downstream"], strict=True)), scores)

    # ------------------------------------------------------------------ showing it
    def to_frame(self) -> pd.DataFrame:
        """``upstream, downstream, score, abs_score`` (scores NaN when the circuit has none), one row per edge."""
        scores = np.full(self.size, np.nan) if self.scores is None else np.array(self.scores, dtype=np.float64)
        return pd.DataFrame({"upstream": [u for u, _ in self.edges], "downstream": [d for _, d in self.edges],
                             "score": scores, "abs_score": np.abs(scores)})  # fmt: skip

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_frame` to ``path`` (``.csv``), atomically."""
        return write_csv_atomic(self.to_frame(), path)

    def to_dot(self) -> str:
        """Graphviz DOT text (``dot -Tpng`` draws it)."""
        return dot_text(self.edges, self.scores)

    def to_svg(self, path: str | os.PathLike, graph: EdgeGraph | None = None, title: str | None = None) -> Path:
        """Draw the circuit by layer to ``path`` (``.svg``), atomically; ``graph`` fixes the picture's size."""
        path = check_output_path(path, suffixes=(".svg",), what="the picture")
        if graph is not None and not isinstance(graph, EdgeGraph):
            raise TypeError(f"graph must be an EdgeGraph (interp.discover.graph.edge_graph(model)), got {graph!r}")
        names = [n for edge in self.edges for n in edge]
        n_heads, n_layers = (graph.cfg.n_heads, graph.cfg.n_layers) if graph is not None else extent(names)
        title = title if title is not None else str(self).split(":")[0]
        text = svg_text(self.edges, self.scores, n_heads, n_layers, title)
        return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def __str__(self) -> str:
        head = f"Circuit of {self.size} edge{'s' * (self.size != 1)} between {len(self.nodes)} nodes"
        lines = []
        for i, (u, d) in enumerate(self.edges):
            verb = "read" if graph_name(d).kind == "logits" else "reads"
            score = "" if self.scores is None else f" (score {self.scores[i]:.3g})"
            lines.append(f"  {_words(d)} {verb} {_words(u)}{score}")
        return "\n".join([head + (":" if lines else ""), *lines])


def circuit_from_edges(edges: Iterable[tuple[str, str]] | Sequence[str]) -> Circuit:
    """A Circuit from pairs or ``"upstream->downstream"`` strings.

    Example:
        >>> circuit_from_edges(["embed->L0H0.v", "L0H0->logits"]).size
        2
    """
    return Circuit(tuple(_pairs(edges, "circuit_from_edges")))


def edges_above(frame: pd.DataFrame, share: float) -> pd.DataFrame:
    """The rows of an edge-score frame (``abs_score``) whose ``|score|`` is at least ``share`` of the largest, in the
    frame's order: ``share=0`` keeps every edge, ``1`` the strongest; none when every score is 0.

    Example:
        >>> frame = pd.DataFrame({"upstream": ["embed", "L0H0", "L0H1"], "downstream": ["logits"] * 3,
        ...                       "abs_score": [2.0, 0.1, 1.0]})
        >>> edges_above(frame, 0.5).upstream.tolist()
        ['embed', 'L0H1']
    """
    if not isinstance(frame, pd.DataFrame) or not {"upstream", "downstream", "abs_score"} <= set(frame.columns):
        raise TypeError("edges_above needs a frame with upstream, downstream and abs_score columns (edge_patching's)")
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise ValueError(f"share must be a fraction of the largest |score| in [0, 1], got {share!r}")
    largest = float(frame["abs_score"].max()) if len(frame) else 0.0
    return frame[frame["abs_score"] >= share * largest] if largest > 0 else frame.iloc[:0]
