"""The cached calls behind the Information flow page: the flow of the prompt, its routes to one prediction, what a
state predicts and what flows into it, what an edge writes, its head's attention row, and the causal check of an edge.

Reached from the page as ``analyses.flow.<name>`` (the one door). Each takes the model as ``_model`` plus its
``model_id``, as :mod:`dashboards.analyses` does; an edge travels as the tuple of :func:`edge_key` (hashable).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from interp.intervene.flow import patch_flow_edge
from interp.observe.flow import edge_logit_effects, flow_routes, flow_stages, information_flow, state_readout
from model.network.minigpt import MiniGPT
from model.network.token_ids import token_labels

Ids = tuple[int, ...]
EdgeKey = tuple[int, str, int, int, int]  # layer, kind, head (-1: none), source_pos, target_pos


def _tokens(ids: Ids) -> torch.Tensor:
    return torch.tensor([ids], dtype=torch.long)


def edge_key(row) -> EdgeKey:
    """A flow row as a hashable key (``head`` -1 where it has none)."""
    head = -1 if pd.isna(row["head"]) else int(row["head"])
    return int(row["layer"]), str(row["kind"]), head, int(row["source_pos"]), int(row["target_pos"])


def _edge(key: EdgeKey) -> dict:
    layer, kind, head, source, target = key
    return {"layer": layer, "kind": kind, "head": head, "source_pos": source, "target_pos": target}


def stages(_model: MiniGPT, model_id: str) -> list[str]:
    return flow_stages(_model)


@st.cache_data(max_entries=16, show_spinner=False)
def flow(_model: MiniGPT, model_id: str, ids: Ids) -> pd.DataFrame:
    """``interp.information_flow`` of the prompt."""
    return information_flow(_model, _tokens(ids))


@st.cache_data(max_entries=64, show_spinner=False)
def routes(_model: MiniGPT, model_id: str, ids: Ids, position: int, threshold: float) -> pd.DataFrame:
    """``interp.flow_routes``: the edges above ``threshold`` that lead to the final state at ``position``."""
    return flow_routes(flow(_model, model_id, ids), position, threshold)


@st.cache_data(max_entries=64, show_spinner=False)
def readout(_model: MiniGPT, model_id: str, ids: Ids, stage: int, pos: int) -> pd.DataFrame:
    """``interp.state_readout``: what the state at ``stage`` and ``pos`` predicts, the likeliest first."""
    return state_readout(_model, _tokens(ids), stage, pos)


def incoming(_model: MiniGPT, model_id: str, ids: Ids, stage: int, pos: int) -> pd.DataFrame:
    """The edges of the prompt's flow into the state at ``stage`` and ``pos``, the most important first (none into
    the embeddings, stage 0)."""
    frame = flow(_model, model_id, ids)
    return frame[(frame.target_stage == stage) & (frame.target_pos == pos)].sort_values("importance", ascending=False)


@st.cache_data(max_entries=64, show_spinner=False)
def effects(_model: MiniGPT, model_id: str, ids: Ids, key: EdgeKey, position: int, top: int = 8):
    """The ``top`` most promoted and most suppressed next characters of the edge's part, and its direct logit
    attribution to the clean model's top guess after ``position`` (as ``(frame, value, guess)``)."""
    frame = edge_logit_effects(_model, _tokens(ids), _edge(key))
    with torch.no_grad():
        guess = int(_model(_tokens(ids))[0, position].argmax())
    value = float(frame.logit_effect[frame.target == guess].iloc[0])
    shown = pd.concat([frame.head(top), frame.tail(top)]).drop_duplicates("target")
    return shown, value, token_labels(_model.tokenizer, [guess])[0]


@st.cache_data(max_entries=64, show_spinner=False)
def attention_row(_model: MiniGPT, model_id: str, ids: Ids, layer: int, head: int, pos: int) -> pd.DataFrame:
    """Head ``L{layer}H{head}``'s attention from query ``pos`` to every key: ``pos, token, weight``."""
    name = f"blocks.{layer}.attn.hook_pattern"
    with torch.no_grad():
        _, cache = _model.run_with_cache(_tokens(ids), names_filter=[name])
    weights = cache[name][0, head, pos, : pos + 1]
    return pd.DataFrame({"pos": range(pos + 1), "token": token_labels(_model.tokenizer, ids[: pos + 1]),
                         "weight": weights.tolist()})  # fmt: skip


@st.cache_data(max_entries=64, show_spinner="Patching the edge ...")
def causal_check(_model: MiniGPT, model_id: str, clean: Ids, corrupted: Ids, key: EdgeKey, position: int) -> dict:
    """``interp.patch_flow_edge`` as a dict: ``metric_clean, metric_patched, change, predicted_change, ...``."""
    return patch_flow_edge(_model, _tokens(clean), _tokens(corrupted), _edge(key), position=position).to_dict()
