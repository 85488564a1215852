"""The cached calls behind the Circuit discovery page: every edge's score from a clean to a corrupted prompt (or on
a model whose circuit is known by construction), the edges above a share of the largest, and their faithfulness."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards.analyses.base import Ids, cache_data, contrast, tokens_of
from dashboards.state import ModelRef
from interp.discover.attribution import edge_attribution_patching
from interp.discover.circuit import Circuit, edges_above  # noqa: F401 (the page filters the scores through here)
from interp.discover.patching import edge_patching
from interp.discover.tasks import KnownCircuit, known_circuit


def _edge_frame(model, clean, corrupted, metric, method: str) -> pd.DataFrame:
    if method == "exact":
        return edge_patching(model, clean, corrupted, metric, progress=False)
    return edge_attribution_patching(model, clean, corrupted, metric, method=method)


@cache_data(max_entries=16, show_spinner="Scoring every edge ...")
def edge_scores(ref: ModelRef, clean: Ids, corrupted: Ids, method: str) -> tuple[pd.DataFrame, str]:
    """Every edge's score by ``method`` (exact, eap, eap-ig) from ``clean`` to ``corrupted`` on
    ``interp.contrast_metric``, and the metric in words."""
    metric, words = contrast(ref, clean, corrupted)
    return _edge_frame(ref.model, tokens_of(clean), tokens_of(corrupted), metric, method), words


@cache_data(max_entries=64, show_spinner="Running the circuit alone ...")
def faithfulness(ref: ModelRef, clean: Ids, corrupted: Ids, edges: tuple) -> float:
    """``Circuit(edges).faithfulness`` with the metric of :func:`edge_scores`."""
    metric, _ = contrast(ref, clean, corrupted)
    return Circuit(edges).faithfulness(ref.model, tokens_of(clean), tokens_of(corrupted), metric)


@st.cache_resource(max_entries=4, show_spinner="Building the model with a known circuit ...")
def known_task(name: str) -> KnownCircuit:
    """``interp.discover.tasks.known_circuit(name)`` on 16 prompts (the modular-sum model trains in ~2 s)."""
    task = known_circuit(name, batch=16)
    task.model.requires_grad_(False)  # shared across sessions; EAP needs no weight gradients
    return task


@st.cache_data(max_entries=16, show_spinner="Scoring every edge ...")
def task_edge_scores(name: str, method: str) -> pd.DataFrame:
    """Every edge's score by ``method`` on the known-circuit task ``name``."""
    task = known_task(name)
    return _edge_frame(task.model, task.clean, task.corrupted, task.metric, method)


@st.cache_data(max_entries=64, show_spinner="Running the circuit alone ...")
def task_faithfulness(name: str, edges: tuple) -> float:
    """``Circuit(edges).faithfulness`` on the known-circuit task ``name``."""
    task = known_task(name)
    return Circuit(edges).faithfulness(task.model, task.clean, task.corrupted, task.metric)
