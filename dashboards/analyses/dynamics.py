"""The cached calls behind the Training dynamics page: every metric on every snapshot of a shipped run, its phase
changes, and one snapshot's attention patterns."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards.analyses.attention import attention_patterns
from dashboards.analyses.base import symbols
from dashboards.state import ModelRef
from interp.dynamics.metrics import training_dynamics
from interp.dynamics.phases import find_phase_changes
from interp.reports.induction import probe_tokens
from model.network.minigpt import MiniGPT
from model.storage.runs import list_runs  # noqa: F401 (the page reaches the shipped runs through here)


@st.cache_data(max_entries=4, show_spinner="Measuring every snapshot of the run (once per session) ...")
def run_frame(name: str) -> pd.DataFrame:
    """``interp.training_dynamics`` of a shipped run on a 32-sequence probe: every metric at every saved step."""
    return training_dynamics(name, probe=probe_tokens(32), progress=False)


@st.cache_data(max_entries=64, show_spinner=False)
def run_phase(name: str, metric: str, component: str) -> pd.DataFrame:
    """``interp.find_phase_changes`` of one series of :func:`run_frame`."""
    return find_phase_changes(run_frame(name), metric, component)


@st.cache_data(max_entries=256, show_spinner=False)
def run_patterns(name: str, step: int) -> tuple[pd.DataFrame, list[str]]:
    """Every head's attention pattern at ``step`` on the probe's first sequence, and its token strings."""
    ref, ids = ModelRef(MiniGPT.from_pretrained(name, step=step), f"{name}@{step}"), tuple(probe_tokens(1)[0].tolist())
    return attention_patterns(ref, ids), symbols(ref, ids)
