"""Information flow: how each residual state of one sequence was built, edge by edge, and a causal check of an edge.

The residual stream of a pre-LN model is a chain of **states**, one per (stage, position): ``resid_pre`` of each
block, its ``resid_mid`` (models with MLPs), and the final residual (the last ``resid_post``). Each sublayer adds its
output to the state below, and that output splits *exactly* into parts that each come from one earlier state:

- an attention sublayer at query position ``i``: head ``h`` reading key position ``j`` contributes
  ``pattern[h, i, j] * v[j, h] @ W_O[h]`` (``v`` from ``ln1`` of the state at ``j``, with ``b_V``); with the
  residual carried through (the state at ``i`` itself) and ``b_O``, these sum to the next state;
- an MLP sublayer at position ``i``: its output (with ``b_out``) and the carried residual.

Every part except ``b_O`` is an **edge** from one state to the next, as in the information-flow routes of Ferrando
& Voita 2024 (the LLM Transparency Tool): a row of :func:`information_flow` with its vector's norm and its
``importance``, the proximity share ``max(0, |y| - |y - c|) / sum of those over every part of y`` (the parts of
one state's update, ``b_O`` included, share 1). :func:`flow_routes` keeps the edges above a threshold that lead
to one position's final state: what built that prediction.

Importance is a share of vector norms, not an effect on the prediction: a head that writes a large vector into a
subspace nothing reads ranks high. :func:`interp.intervene.flow.patch_flow_edge` checks an edge causally.

An edge runs **upstream** (the state it reads) to **downstream** (the state it adds to), like every edge of the
library. Columns of :func:`information_flow`: ``layer`` (Int64); ``component``, the label of what carries the edge
(``L1H0``, ``L0.mlp``, or the residual carried over a sublayer: ``L0.resid_pre`` over the attention, ``L0.resid_mid``
over the MLP); ``component_type`` (``head``, ``mlp``, ``residual``); ``head`` (Int64, <NA> unless a head);
``upstream_stage``, ``downstream_stage`` (indices of :func:`flow_stages`); ``upstream_pos``, ``downstream_pos``;
``upstream_str``, ``downstream_str`` (the tokens at those positions); ``norm``; ``importance``.

Example:
    >>> from model import MiniGPT
    >>> model = MiniGPT.from_pretrained("induction-2l")
    >>> tokens = model.to_tokens("qwertyuiop qwertyuiop")
    >>> flow = information_flow(model, tokens)
    >>> heads = flow[(flow.component_type == "head") & (flow.layer == 1) & (flow.downstream_pos == 14)]
    >>> heads.nlargest(1, "importance")[["component", "upstream_str", "downstream_str"]].values.tolist()
    [['L1H0', 'r', 'e']]
    >>> routes = flow_routes(flow, position=14, threshold=0.1)  # at the second "e" it reads the "r" after the first
    >>> bool(routes.downstream_stage.max() == len(flow_stages(model)) - 1)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor

from interp.common.checks import check_index, check_model, prepare, require_finite
from interp.common.vocabulary import nullable_ints
from model.network.labels import component_label, parse_component
from model.network.minigpt import MiniGPT
from model.network.token_ids import token_labels

COMPONENT_TYPES = ("head", "mlp", "residual")
COLUMNS = ["layer", "component", "component_type", "head", "upstream_stage", "downstream_stage", "upstream_pos",
           "downstream_pos", "upstream_str", "downstream_str", "norm", "importance"]  # fmt: skip


def flow_stages(model: MiniGPT) -> list[str]:
    """The hook name of every stage of the residual stream, bottom to top (the ``*_stage`` columns index it).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> flow_stages(MiniGPT(ModelConfig(n_layers=1), seed=0))
        ['blocks.0.hook_resid_pre', 'blocks.0.hook_resid_mid', 'blocks.0.hook_resid_post']
    """
    cfg = check_model(model).cfg
    names = []
    for layer in range(cfg.n_layers):
        names.append(f"blocks.{layer}.hook_resid_pre")
        names += [] if cfg.attn_only else [f"blocks.{layer}.hook_resid_mid"]
    return [*names, f"blocks.{cfg.n_layers - 1}.hook_resid_post"]


def flow_hook_names(model: MiniGPT) -> list[str]:
    """What a flow reads from a cache: the states, the patterns and values, the MLP outputs.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> flow_hook_names(MiniGPT(ModelConfig(n_layers=1, attn_only=True), seed=0))
        ['blocks.0.hook_resid_pre', 'blocks.0.hook_resid_post', 'blocks.0.attn.hook_v', 'blocks.0.attn.hook_pattern']
    """
    model = check_model(model)
    return [*flow_stages(model), *(n for n in model.hook_names if n.endswith(("hook_pattern", "hook_v", "mlp_out")))]


def prepare_flow(
    model: object, tokens: object, cache: object = None, *, names: list[str] | None = None, what: str = "the flow"
) -> tuple[MiniGPT, Int[Tensor, "1 pos"], object]:
    """The boundary of every flow analysis: a pre- or no-norm model, one sequence, and its cache (recorded with
    ``names``, default :func:`flow_hook_names`, when none is given), as :func:`~interp.common.checks.prepare` does.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> prepare_flow(MiniGPT(ModelConfig(norm="post"), seed=0), "hi")
        Traceback (most recent call last):
        ...
        ValueError: information flow needs each state to be the previous one plus the sublayer's parts, but \
norm='post' re-normalises the residual stream after every sublayer; use a norm='pre' or norm='none' model
    """
    model = check_model(model)
    if model.cfg.norm == "post":
        raise ValueError(
            "information flow needs each state to be the previous one plus the sublayer's parts, but norm='post' "
            "re-normalises the residual stream after every sublayer; use a norm='pre' or norm='none' model"
        )
    names = flow_hook_names(model) if names is None else names
    model, tokens, cache = prepare(model, tokens, cache, names_filter=names, what=what)
    if tokens.shape[0] != 1:
        raise ValueError(
            f"information flow follows one sequence, got a batch of {tokens.shape[0]}; pass tokens[i : i + 1]"
        )
    return model, tokens, cache


def _proximity(part: Tensor, total: Tensor) -> Tensor:
    """``max(0, |total| - |total - part|)`` over the last axis (broadcasting)."""
    return (total.norm(dim=-1) - (total - part).norm(dim=-1)).clamp_min(0)


def _head_parts(model: MiniGPT, layer: int, cache) -> Tensor:
    """``[head, q_pos, k_pos, d_model]``: head ``h``'s write at ``q_pos`` taken from key ``k_pos``."""
    attn = model.blocks[layer].attn
    pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0]  # head q k
    values = attn.write(cache[f"blocks.{layer}.attn.hook_v"][0], per_head=True).transpose(0, 1)  # head k d_model
    return pattern[..., None] * values[:, None]


@dataclass(frozen=True)
class _Update:
    """One sublayer's update of the states at every position: its parts and where they come from."""

    layer: int
    sublayer: str  # "attn" | "mlp"
    upstream: int  # stage index of the state below
    parts: Tensor  # [part, q_pos, k_pos, d_model] for heads, [1, pos, 1, d_model] otherwise
    carried: Tensor  # [pos, d_model]: the state below
    bias: Tensor | None  # b_O, [d_model]


def _updates(model: MiniGPT, cache) -> list[_Update]:
    out, stage = [], 0
    for layer, block in enumerate(model.blocks):
        b = f"blocks.{layer}."
        pre = cache[b + "hook_resid_pre"][0]
        out.append(_Update(layer, "attn", stage, _head_parts(model, layer, cache), pre, block.attn.b_O))
        stage += 1
        if block.mlp is not None:
            mid = cache[b + "hook_resid_mid"][0]
            out.append(_Update(layer, "mlp", stage, cache[b + "hook_mlp_out"][0][None, :, None], mid, None))
            stage += 1
    return out


def information_flow(model: MiniGPT, tokens: Int[Tensor, "1 pos"] | str, cache: object = None) -> pd.DataFrame:
    """Every edge of the residual stream's flow on one sequence, with its norm and importance (see the module doc).

    Per attention sublayer: one ``head`` edge per (head, query, key at or before it) and one ``residual`` edge per
    position (``L{l}.resid_pre`` carried over); per MLP sublayer: one ``mlp`` and one ``residual`` edge per position.
    """
    model, tokens, cache = prepare_flow(model, tokens, cache, what="information_flow")
    n_pos, frames = tokens.shape[1], []
    labels = np.array(token_labels(model.tokenizer, tokens[0].tolist()), dtype=object)
    q_pos, k_pos = np.tril_indices(n_pos)  # every query and the keys it may read
    every, tiny = np.arange(n_pos), torch.finfo(torch.float64).tiny
    with torch.no_grad():
        for update in _updates(model, cache):
            parts, carried = update.parts.double(), update.carried.double()
            bias = torch.zeros_like(carried) if update.bias is None else update.bias.double().expand(n_pos, -1)
            total = carried + parts.sum((0, 2)) + bias  # the state above, at every position
            carried_prox, denominator = _proximity(carried, total), _proximity(bias, total)
            denominator = denominator + carried_prox
            if update.sublayer == "attn":
                flat = parts[:, q_pos, k_pos]  # head (query, key) d_model
                head_prox = _proximity(flat, total[q_pos])
                denominator = denominator.index_add(0, torch.as_tensor(q_pos), head_prox.sum(0)).clamp_min(tiny)
                n_heads = flat.shape[0]
                names = [component_label("head", update.layer, h) for h in range(n_heads)]
                edge = {"component": np.repeat(names, len(q_pos)), "component_type": "head",
                        "head": np.repeat(np.arange(n_heads), len(q_pos)), "upstream_pos": np.tile(k_pos, n_heads),
                        "downstream_pos": np.tile(q_pos, n_heads)}  # fmt: skip
                norm, share = flat.norm(dim=-1), head_prox / denominator[q_pos]
            else:
                mlp_prox = _proximity(parts[0, :, 0], total)
                denominator = (denominator + mlp_prox).clamp_min(tiny)
                edge = {"component": component_label("mlp", update.layer), "component_type": "mlp", "head": -1,
                        "upstream_pos": every, "downstream_pos": every}  # fmt: skip
                norm, share = parts[0, :, 0].norm(dim=-1), mlp_prox / denominator
            frames.append(pd.DataFrame({"layer": update.layer, **edge, "norm": norm.flatten().numpy(),
                                        "importance": share.flatten().numpy()}))  # fmt: skip
            carried_label = component_label("resid_pre" if update.sublayer == "attn" else "resid_mid", update.layer)
            frames.append(pd.DataFrame({"layer": update.layer, "component": carried_label,
                                        "component_type": "residual", "head": -1, "upstream_pos": every,
                                        "downstream_pos": every, "norm": carried.norm(dim=-1).numpy(),
                                        "importance": (carried_prox / denominator).numpy()}))  # fmt: skip
            for piece in frames[-2:]:
                piece["upstream_stage"], piece["downstream_stage"] = update.upstream, update.upstream + 1
    frame = pd.concat(frames, ignore_index=True)
    require_finite(torch.tensor(frame["importance"].to_numpy()), "information_flow", model, tokens=tokens)
    frame["head"] = pd.array(frame["head"].where(frame["component_type"] == "head"), dtype="Int64")
    frame["layer"] = nullable_ints(frame["layer"].to_numpy())
    frame["upstream_str"], frame["downstream_str"] = labels[frame.upstream_pos], labels[frame.downstream_pos]
    return frame[COLUMNS]


def flow_routes(flow: pd.DataFrame, position: int, threshold: float = 0.04) -> pd.DataFrame:
    """The edges of ``flow`` with ``importance >= threshold`` that lead to the final state at ``position``: walked
    down from that state, one stage at a time, keeping only edges into a state already kept.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> routes = flow_routes(information_flow(model, "hello"), position=5, threshold=0.0)
        >>> sorted(set(routes.downstream_pos)) == list(range(6))  # every earlier position can reach the last one
        True
    """
    if not isinstance(flow, pd.DataFrame) or not set(COLUMNS) <= set(flow.columns):
        raise TypeError("flow must be the frame of information_flow(model, tokens)")
    n_pos = int(flow.downstream_pos.max()) + 1
    position = check_index(position, n_pos, "position")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be an importance share in [0, 1], got {threshold!r}")
    strong = flow[flow.importance >= threshold]
    reached, kept = {position}, []
    for stage in range(int(flow.downstream_stage.max()), 0, -1):
        into = strong[(strong.downstream_stage == stage) & strong.downstream_pos.isin(reached)]
        kept.append(into)
        reached = set(into.upstream_pos)
    order = ["downstream_stage", "downstream_pos", "upstream_pos"]
    return pd.concat(kept).sort_values(order) if kept else flow.iloc[:0]


@dataclass(frozen=True)
class FlowEdge:
    """One edge of a flow, checked (:func:`flow_edge` makes it): ``component`` carries it from the state at
    ``upstream_pos`` to the state above at ``downstream_pos``."""

    component: str  # L1H0, L0.mlp, L0.resid_pre (carried over the attention), L0.resid_mid (over the MLP)
    component_type: str  # head | mlp | residual
    layer: int
    head: int | None
    upstream_pos: int
    downstream_pos: int

    @property
    def sublayer(self) -> str:
        """The sublayer whose update the edge is part of: ``attn`` or ``mlp``."""
        return "mlp" if self.component.endswith((".mlp", ".resid_mid")) else "attn"

    def stage_above(self, model: MiniGPT) -> int:
        """The :func:`flow_stages` index of the state the edge adds to (``downstream_stage``)."""
        return self.layer * (1 if model.cfg.attn_only else 2) + int(self.sublayer == "mlp") + 1

    def part(self, model: MiniGPT, cache) -> Tensor:
        """The edge's part ``[d_model]`` of the state above it, on the pass ``cache`` recorded (its pattern-weighted
        value through ``W_O`` for a head, the MLP's output, or the carried state)."""
        b, i = f"blocks.{self.layer}.", self.downstream_pos
        if self.component_type == "head":
            weight = cache[b + "attn.hook_pattern"][0, self.head, i, self.upstream_pos]
            value = cache[b + "attn.hook_v"][0, self.upstream_pos]
            return weight * model.blocks[self.layer].attn.write(value, per_head=True)[self.head]
        name = "hook_mlp_out" if self.component_type == "mlp" else f"hook_{self.component.split('.')[1]}"
        return cache[b + name][0, i]


def flow_edge(model: MiniGPT, edge: object, n_pos: int) -> FlowEdge:
    """``edge`` (a row of :func:`information_flow`, or a mapping with its ``component``, ``upstream_pos`` and
    ``downstream_pos``) checked against ``model`` and ``n_pos`` positions.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> flow_edge(MiniGPT(ModelConfig(), seed=0), {"component": "L1H2", "upstream_pos": 3, "downstream_pos": 5}, 6)
        FlowEdge(component='L1H2', component_type='head', layer=1, head=2, upstream_pos=3, downstream_pos=5)
    """
    model = check_model(model)
    if isinstance(edge, pd.DataFrame):
        if len(edge) != 1:
            raise ValueError(f"edge must be one row of information_flow's frame, got {len(edge)} rows")
        edge = edge.iloc[0]
    if not hasattr(edge, "keys") or not {"component", "upstream_pos", "downstream_pos"} <= set(edge.keys()):
        raise TypeError("edge must be a row of information_flow(...) (component, upstream_pos, downstream_pos)")
    try:
        component = parse_component(str(edge["component"]))
    except ValueError:
        component = None
    if component is None or component.kind not in ("head", "mlp", "resid_pre", "resid_mid"):
        raise ValueError(
            f"edge component {edge['component']!r} carries no flow edge; use a head (L1H0), an MLP (L0.mlp) or a "
            "carried residual (L0.resid_pre, L0.resid_mid)"
        )
    cfg = model.cfg
    layer = check_index(component.layer, cfg.n_layers, "layer")
    if component.kind in ("mlp", "resid_mid") and cfg.attn_only:
        raise ValueError("this model is attention-only: it has no MLP edges")
    kind = {"head": "head", "mlp": "mlp"}.get(component.kind, "residual")
    head = check_index(component.index, cfg.n_heads, "head") if kind == "head" else None
    up, down = (check_index(int(edge[k]), n_pos, "position") for k in ("upstream_pos", "downstream_pos"))
    if up > down or (kind != "head" and up != down):
        raise ValueError(
            f"a {kind} edge cannot go from position {up} to position {down}: heads read positions at or before the "
            "query, every other edge stays at its position"
        )
    return FlowEdge(str(component), kind, layer, head, up, down)


def edge_logit_effects(
    model: MiniGPT, tokens: Int[Tensor, "1 pos"] | str, edge: object, cache: object = None
) -> pd.DataFrame:
    """What one edge's part writes towards each next token at its downstream position: the part, centred, through the
    final LayerNorm's scale there (frozen, as in direct logit attribution) and the unembedding, one row per vocabulary
    entry, largest first. Columns: ``target`` (id), ``target_str``, ``logit_effect``.

    Example:
        >>> from model import MiniGPT
        >>> model = MiniGPT.from_pretrained("induction-2l")
        >>> flow = information_flow(model, "qwertyuiop qwertyuiop")
        >>> heads = flow[(flow.component_type == "head") & (flow.layer == 1) & (flow.downstream_pos == 14)]
        >>> edge_logit_effects(model, "qwertyuiop qwertyuiop", heads.nlargest(1, "importance")).target_str.iloc[0]
        'r'
    """
    model, tokens, cache = prepare_flow(model, tokens, cache, what="edge_logit_effects")
    edge = flow_edge(model, edge, tokens.shape[1])
    with torch.no_grad():
        part = edge.part(model, cache)
        if model.ln_final is not None:
            final = cache[flow_stages(model)[-1]][0, edge.downstream_pos]
            _, rstd = model.ln_final.standardize(final)  # the final LayerNorm's scale there, frozen
            part = (part - part.mean()) * rstd * model.ln_final.w  # the LayerNorm centres every part
        effect = (part @ model.W_U).double()
    order = torch.argsort(effect, descending=True)
    ids = order.tolist()
    return pd.DataFrame({"target": ids, "target_str": token_labels(model.tokenizer, ids),
                         "logit_effect": effect[order].numpy()})  # fmt: skip


def state_readout(
    model: MiniGPT, tokens: Int[Tensor, "1 pos"] | str, stage: int, position: int, cache: object = None
) -> pd.DataFrame:
    """What one residual state (a node of the flow graph) predicts: the state at ``flow_stages(model)[stage]`` and
    ``position`` through the final LayerNorm (with its own scale, as the logit lens reads it) and the unembedding.
    One row per vocabulary entry, most likely first; the last stage gives the model's own output. Columns:
    ``target`` (id), ``target_str``, ``logit``, ``target_prob``.

    Example:
        >>> from model import MiniGPT
        >>> model = MiniGPT.from_pretrained("induction-2l")
        >>> last = len(flow_stages(model)) - 1
        >>> state_readout(model, "qwertyuiop qwertyuiop", last, 14).target_str.iloc[0]  # after the second "e"
        'r'
    """
    stages = flow_stages(model)
    stage = check_index(stage, len(stages), "stage")
    model, tokens, cache = prepare_flow(model, tokens, cache, names=[stages[stage]], what="state_readout")
    position = check_index(position, tokens.shape[1], "position")
    with torch.no_grad():
        state = cache[stages[stage]][0, position]
        logits = model.read_out(state).double()  # the model's own read-out (forward's last two steps)
        require_finite(logits, "state_readout", model, tokens=tokens)
    order = torch.argsort(logits, descending=True)
    ids = order.tolist()
    return pd.DataFrame({"target": ids, "target_str": token_labels(model.tokenizer, ids),
                         "logit": logits[order].numpy(), "target_prob": logits.softmax(-1)[order].numpy()})  # fmt: skip
