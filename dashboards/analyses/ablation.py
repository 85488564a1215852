"""The cached calls behind the Ablation & patching page: one ablation beside the clean run, every head ablated on
its own, and activation patching from the clean prompt into a corrupted one."""

from __future__ import annotations

import pandas as pd

from dashboards.analyses.base import Ids, cache_data, contrast, reference_batch, tokens_of
from dashboards.state import ModelRef
from interp.intervene.ablate import AblationComparison, compare_ablation
from interp.intervene.patching import activation_patching
from interp.intervene.sweeps import head_sweep
from model.network.labels import component_label


def head_labels(ref: ModelRef) -> list[str]:
    """Every head's label (``L0H0``, ``L0H1``, ...), what the Ablation page offers and ``compare_ablation`` reads."""
    cfg = ref.model.cfg
    return [component_label("head", layer, head) for layer in range(cfg.n_layers) for head in range(cfg.n_heads)]


def _reference(ref: ModelRef, method: str):
    return None if method == "zero" else reference_batch(ref)


@cache_data(max_entries=64, show_spinner=False)
def ablation_effect(
    ref: ModelRef, ids: Ids, heads: tuple, mlps: tuple, neurons: str, method: str, pos: int
) -> AblationComparison:
    """``interp.compare_ablation``: the next-token probabilities after ``pos`` before and after, both losses, and
    what was ablated (``frame`` columns ``target, target_str, prob_clean, prob_ablated``)."""
    return compare_ablation(ref.model, tokens_of(ids), pos=pos, heads=list(heads) or None, mlps=list(mlps) or None,
                            neurons=neurons or None, method=method, reference=_reference(ref, method))  # fmt: skip


@cache_data(max_entries=32, show_spinner="Ablating every head ...")
def sweep(ref: ModelRef, ids: Ids, method: str) -> pd.DataFrame:
    """``interp.head_sweep`` on the loss: columns ``layer, head, metric_clean, metric_ablated, delta``."""
    return head_sweep(ref.model, tokens_of(ids), method=method, metric="loss", reference=_reference(ref, method),
                      progress=False)  # fmt: skip


@cache_data(max_entries=32, show_spinner="Patching ...")
def patching(ref: ModelRef, clean: Ids, corrupted: Ids, grid: str) -> tuple[pd.DataFrame, str]:
    """``interp.activation_patching`` from ``clean`` into ``corrupted`` on ``interp.contrast_metric``, and the
    metric in words."""
    metric, words = contrast(ref, clean, corrupted)
    frame = activation_patching(ref.model, tokens_of(clean), tokens_of(corrupted), metric, grid=grid, progress=False)
    return frame, words
