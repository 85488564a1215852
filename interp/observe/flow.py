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

Columns of :func:`information_flow`: ``layer`` (Int64), ``kind`` (``head``, ``attn_residual``, ``mlp``,
``mlp_residual``), ``head`` (Int64, <NA> unless ``kind == "head"``), ``source_stage``, ``target_stage`` (indices of
:func:`flow_stages`), ``source_pos``, ``target_pos``, ``source_token``, ``target_token`` (the characters at those
positions), ``norm``, ``importance``.

Example:
    >>> from model import MiniGPT
    >>> model = MiniGPT.from_pretrained("induction-2l")
    >>> tokens = model.to_tokens("qwertyuiop qwertyuiop")
    >>> flow = information_flow(model, tokens)
    >>> top = flow[(flow.kind == "head") & (flow.layer == 1) & (flow.target_pos == 14)].nlargest(1, "importance")
    >>> top[["source_token", "target_token"]].values.tolist()  # at the second "e" it reads the "r" after the first
    [['r', 'e']]
    >>> routes = flow_routes(flow, position=14, threshold=0.1)
    >>> bool(routes.target_stage.max() == len(flow_stages(model)) - 1)
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
from model.network.minigpt import MiniGPT
from model.network.token_ids import token_labels

KINDS = ("head", "attn_residual", "mlp", "mlp_residual")
COLUMNS = ["layer", "kind", "head", "source_stage", "target_stage", "source_pos", "target_pos", "source_token",
           "target_token", "norm", "importance"]  # fmt: skip


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


def _names(model: MiniGPT) -> list[str]:
    """What the flow reads from a cache: the states, the patterns and values, the MLP outputs."""
    return [*flow_stages(model), *(n for n in model.hook_names if n.endswith(("hook_pattern", "hook_v", "mlp_out")))]


def _check_flow_model(model: object) -> MiniGPT:
    model = check_model(model)
    if model.cfg.norm == "post":
        raise ValueError(
            "information flow needs each state to be the previous one plus the sublayer's parts, but norm='post' "
            "re-normalises the residual stream after every sublayer; use a norm='pre' or norm='none' model"
        )
    return model


def _single(tokens: Tensor) -> None:
    if tokens.shape[0] != 1:
        raise ValueError(
            f"information flow follows one sequence, got a batch of {tokens.shape[0]}; pass tokens[i : i + 1]"
        )


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
    source: int  # stage index of the state below
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

    Per attention sublayer: one ``head`` edge per (head, query, key at or before it) and one ``attn_residual``
    edge per position; per MLP sublayer: one ``mlp`` and one ``mlp_residual`` edge per position.
    """
    model = _check_flow_model(model)
    model, tokens, cache = prepare(model, tokens, cache, names_filter=_names(model), what="information_flow")
    _single(tokens)
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
                edge = {"kind": "head", "head": np.repeat(np.arange(n_heads), len(q_pos)),
                        "source_pos": np.tile(k_pos, n_heads), "target_pos": np.tile(q_pos, n_heads)}  # fmt: skip
                norm, share = flat.norm(dim=-1), head_prox / denominator[q_pos]
            else:
                mlp_prox = _proximity(parts[0, :, 0], total)
                denominator = (denominator + mlp_prox).clamp_min(tiny)
                edge = {"kind": "mlp", "head": -1, "source_pos": every, "target_pos": every}
                norm, share = parts[0, :, 0].norm(dim=-1), mlp_prox / denominator
            frames.append(pd.DataFrame({"layer": update.layer, **edge, "norm": norm.flatten().numpy(),
                                        "importance": share.flatten().numpy()}))  # fmt: skip
            frames.append(pd.DataFrame({"layer": update.layer, "kind": f"{update.sublayer}_residual", "head": -1,
                                        "source_pos": every, "target_pos": every, "norm": carried.norm(dim=-1).numpy(),
                                        "importance": (carried_prox / denominator).numpy()}))  # fmt: skip
            for piece in frames[-2:]:
                piece["source_stage"], piece["target_stage"] = update.source, update.source + 1
    frame = pd.concat(frames, ignore_index=True)
    require_finite(torch.tensor(frame["importance"].to_numpy()), "information_flow", model, tokens=tokens)
    frame["head"] = pd.array(frame["head"].where(frame["kind"] == "head"), dtype="Int64")
    frame["layer"] = nullable_ints(frame["layer"].to_numpy())
    frame["source_token"], frame["target_token"] = labels[frame.source_pos], labels[frame.target_pos]
    return frame[COLUMNS]


def flow_routes(flow: pd.DataFrame, position: int, threshold: float = 0.04) -> pd.DataFrame:
    """The edges of ``flow`` with ``importance >= threshold`` that lead to the final state at ``position``: walked
    down from that state, one stage at a time, keeping only edges into a state already kept.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> routes = flow_routes(information_flow(model, "hello"), position=5, threshold=0.0)
        >>> sorted(set(routes.target_pos)) == list(range(6))  # every earlier position can reach the last one
        True
    """
    if not isinstance(flow, pd.DataFrame) or not set(COLUMNS) <= set(flow.columns):
        raise TypeError("flow must be the frame of information_flow(model, tokens)")
    n_pos = int(flow.target_pos.max()) + 1
    position = check_index(position, n_pos, "position")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be an importance share in [0, 1], got {threshold!r}")
    strong = flow[flow.importance >= threshold]
    reached, kept = {position}, []
    for stage in range(int(flow.target_stage.max()), 0, -1):
        into = strong[(strong.target_stage == stage) & strong.target_pos.isin(reached)]
        kept.append(into)
        reached = set(into.source_pos)
    return pd.concat(kept).sort_values(["target_stage", "target_pos", "source_pos"]) if kept else flow.iloc[:0]


def _check_edge(model: MiniGPT, edge: object, n_pos: int) -> dict:
    """``edge`` (a row of :func:`information_flow`, or a mapping with its columns) as checked plain values."""
    if isinstance(edge, pd.DataFrame):
        if len(edge) != 1:
            raise ValueError(f"edge must be one row of information_flow's frame, got {len(edge)} rows")
        edge = edge.iloc[0]
    if not hasattr(edge, "keys") or not {"layer", "kind", "source_pos", "target_pos"} <= set(edge.keys()):
        raise TypeError("edge must be a row of information_flow(...) (layer, kind, head, source_pos, target_pos)")
    kind = edge["kind"]
    if kind not in KINDS:
        raise ValueError(f"edge kind {kind!r} is not one of {list(KINDS)}")
    cfg = model.cfg
    layer = check_index(int(edge["layer"]), cfg.n_layers, "layer")
    if kind.startswith("mlp") and cfg.attn_only:
        raise ValueError("this model is attention-only: it has no MLP edges")
    head = check_index(int(edge["head"]), cfg.n_heads, "head") if kind == "head" else None
    source, target = (check_index(int(edge[k]), n_pos, "position") for k in ("source_pos", "target_pos"))
    if source > target or (kind != "head" and source != target):
        raise ValueError(
            f"a {kind} edge cannot go from position {source} to position {target}: heads read positions at or "
            "before the query, every other edge stays at its position"
        )
    return {"layer": layer, "kind": kind, "head": head, "source": source, "target": target}


def _stage_above(model: MiniGPT, edge: dict) -> int:
    """The :func:`flow_stages` index of the state a checked edge adds to."""
    per_block = 1 if model.cfg.attn_only else 2
    return edge["layer"] * per_block + int(edge["kind"].startswith("mlp")) + 1


def _part(model: MiniGPT, cache, edge: dict) -> Tensor:
    """The edge's part ``[d_model]`` of the state above it, on the run ``cache`` recorded."""
    b, i = f"blocks.{edge['layer']}.", edge["target"]
    if edge["kind"] == "head":
        h, j = edge["head"], edge["source"]
        weight = cache[b + "attn.hook_pattern"][0, h, i, j]
        return weight * model.blocks[edge["layer"]].attn.write(cache[b + "attn.hook_v"][0, j], per_head=True)[h]
    name = {"attn_residual": "hook_resid_pre", "mlp": "hook_mlp_out", "mlp_residual": "hook_resid_mid"}[edge["kind"]]
    return cache[b + name][0, i]


def edge_logit_effects(
    model: MiniGPT, tokens: Int[Tensor, "1 pos"] | str, edge: object, cache: object = None
) -> pd.DataFrame:
    """What one edge's part writes towards each next token at its target position: the part, centred, through the
    final LayerNorm's scale there (frozen, as in direct logit attribution) and the unembedding, one row per vocabulary
    entry, largest first. Columns: ``target`` (id), ``target_str``, ``logit_effect``.

    Example:
        >>> from model import MiniGPT
        >>> model = MiniGPT.from_pretrained("induction-2l")
        >>> flow = information_flow(model, "qwertyuiop qwertyuiop")
        >>> edge = flow[(flow.kind == "head") & (flow.layer == 1) & (flow.target_pos == 14)].nlargest(1, "importance")
        >>> edge_logit_effects(model, "qwertyuiop qwertyuiop", edge).target_str.iloc[0]  # it writes the "r"
        'r'
    """
    model = _check_flow_model(model)
    model, tokens, cache = prepare(model, tokens, cache, names_filter=_names(model), what="edge_logit_effects")
    _single(tokens)
    edge = _check_edge(model, edge, tokens.shape[1])
    with torch.no_grad():
        part = _part(model, cache, edge)
        if model.ln_final is not None:
            final = cache[flow_stages(model)[-1]][0, edge["target"]]
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
    model = _check_flow_model(model)
    stages = flow_stages(model)
    stage = check_index(stage, len(stages), "stage")
    model, tokens, cache = prepare(model, tokens, cache, names_filter=[stages[stage]], what="state_readout")
    _single(tokens)
    position = check_index(position, tokens.shape[1], "position")
    with torch.no_grad():
        state = cache[stages[stage]][0, position]
        logits = model.read_out(state).double()  # the model's own read-out (forward's last two steps)
        require_finite(logits, "state_readout", model, tokens=tokens)
    order = torch.argsort(logits, descending=True)
    ids = order.tolist()
    return pd.DataFrame({"target": ids, "target_str": token_labels(model.tokenizer, ids),
                         "logit": logits[order].numpy(), "target_prob": logits.softmax(-1)[order].numpy()})  # fmt: skip
