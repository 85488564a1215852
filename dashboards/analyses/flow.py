"""The cached calls behind the Information flow page: the flow of the prompt, its routes to one prediction, what a
state predicts and what flows into it, what an edge writes, its head's attention row, and the causal check of an edge.

All but the causal check read the prompt's one cached forward (:func:`~dashboards.analyses.base.forward`); an edge
travels as the tuple of :func:`edge_key` (hashable).
"""

from __future__ import annotations

import pandas as pd

from dashboards.analyses.base import Ids, cache_data, forward, tokens_of
from dashboards.state import ModelRef
from interp.intervene.flow import patch_flow_edge
from interp.observe.attention import attention_pattern_frame
from interp.observe.flow import edge_logit_effects, flow_routes, flow_stages, information_flow, state_readout
from interp.observe.flow_reading import flow_into, strongest_effects, top_guess

EdgeKey = tuple[int, str, int, int, int]  # layer, kind, head (-1: none), source_pos, target_pos


def edge_key(row) -> EdgeKey:
    """A flow row as a hashable key (``head`` -1 where it has none)."""
    head = -1 if pd.isna(row["head"]) else int(row["head"])
    return int(row["layer"]), str(row["kind"]), head, int(row["source_pos"]), int(row["target_pos"])


def _edge(key: EdgeKey) -> dict:
    layer, kind, head, source, target = key
    return {"layer": layer, "kind": kind, "head": head, "source_pos": source, "target_pos": target}


def stages(ref: ModelRef) -> list[str]:
    """``interp.flow_stages``: the hook name of every stage of the residual stream, bottom to top."""
    return flow_stages(ref.model)


@cache_data(max_entries=16, show_spinner=False)
def flow(ref: ModelRef, ids: Ids) -> pd.DataFrame:
    """``interp.information_flow`` of the prompt."""
    return information_flow(ref.model, tokens_of(ids), forward(ref, ids)[1])


@cache_data(max_entries=64, show_spinner=False)
def routes(ref: ModelRef, ids: Ids, position: int, threshold: float) -> pd.DataFrame:
    """``interp.flow_routes``: the edges above ``threshold`` that lead to the final state at ``position``."""
    return flow_routes(flow(ref, ids), position, threshold)


@cache_data(max_entries=64, show_spinner=False)
def readout(ref: ModelRef, ids: Ids, stage: int, pos: int) -> pd.DataFrame:
    """``interp.state_readout``: what the state at ``stage`` and ``pos`` predicts, the likeliest first."""
    return state_readout(ref.model, tokens_of(ids), stage, pos, forward(ref, ids)[1])


@cache_data(max_entries=64, show_spinner=False)
def incoming(ref: ModelRef, ids: Ids, stage: int, pos: int) -> pd.DataFrame:
    """``interp.flow_into``: the edges of the prompt's flow into the state at ``stage`` and ``pos``, the most
    important first (none into the embeddings, stage 0)."""
    return flow_into(flow(ref, ids), stage, pos)


@cache_data(max_entries=64, show_spinner=False)
def effects(ref: ModelRef, ids: Ids, key: EdgeKey, position: int, top: int = 8) -> tuple[pd.DataFrame, float, str]:
    """``interp.strongest_effects`` of the edge's part (its ``top`` most promoted and suppressed next characters),
    and its direct logit effect on the model's top guess after ``position`` (``interp.top_guess``), with that guess."""
    model, tokens, cache = ref.model, tokens_of(ids), forward(ref, ids)[1]
    frame = edge_logit_effects(model, tokens, _edge(key), cache)
    guess = top_guess(model, tokens, position, cache)
    value = float(frame.logit_effect[frame.target == guess.target].iloc[0])
    return strongest_effects(frame, top), value, guess.target_str


@cache_data(max_entries=64, show_spinner=False)
def attention_row(ref: ModelRef, ids: Ids, layer: int, head: int, pos: int) -> pd.DataFrame:
    """Head ``L{layer}H{head}``'s attention from query ``pos`` to every key (``interp.attention_pattern_frame``'s
    rows at that query): ``k_pos, k_str, weight``."""
    frame = attention_pattern_frame(ref.model, tokens_of(ids), forward(ref, ids)[1], layer=layer, head=head)
    return frame[frame.q_pos == pos]


@cache_data(max_entries=64, show_spinner="Patching the edge ...")
def causal_check(ref: ModelRef, clean: Ids, corrupted: Ids, key: EdgeKey, position: int) -> dict:
    """``interp.patch_flow_edge`` as a dict: ``metric_clean, metric_patched, change, predicted_change, ...``."""
    return patch_flow_edge(ref.model, tokens_of(clean), tokens_of(corrupted), _edge(key), position=position).to_dict()
