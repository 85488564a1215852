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
from model.network.labels import parse_component

EdgeKey = tuple[str, int, int]  # component, upstream_pos, downstream_pos: what names one edge of a flow


def edge_key(row) -> EdgeKey:
    """A flow row as a hashable key: its ``component`` and the positions it joins."""
    return str(row["component"]), int(row["upstream_pos"]), int(row["downstream_pos"])


def _edge(key: EdgeKey) -> dict:
    component, upstream, downstream = key
    return {"component": component, "upstream_pos": upstream, "downstream_pos": downstream}


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


def is_head(component: str) -> bool:
    """Whether a flow edge's component is a head (``L1H0``), which has an attention pattern to show."""
    return parse_component(component).kind == "head"


@cache_data(max_entries=64, show_spinner=False)
def attention_row(ref: ModelRef, ids: Ids, head: str, pos: int) -> pd.DataFrame:
    """The attention of ``head`` (a label, ``L1H0``) from query ``pos`` to every key (the rows of
    ``interp.attention_pattern_frame`` at that query): ``k_pos, k_str, weight``."""
    at = parse_component(head)
    frame = attention_pattern_frame(ref.model, tokens_of(ids), forward(ref, ids)[1], layer=at.layer, head=at.index)
    return frame[frame.q_pos == pos]


@cache_data(max_entries=64, show_spinner="Patching the edge ...")
def causal_check(ref: ModelRef, clean: Ids, corrupted: Ids, key: EdgeKey, position: int) -> dict:
    """``interp.patch_flow_edge`` as a dict: ``metric_clean, metric_patched, change, predicted_change, ...``."""
    return patch_flow_edge(ref.model, tokens_of(clean), tokens_of(corrupted), _edge(key), position=position).to_dict()
