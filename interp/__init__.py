"""Analyses: pure functions from ``(model, tokens, cache=None, ...)`` to tidy pandas DataFrames.

Import every public analysis from here (``from interp import direct_logit_attribution, head_sweep``): the names
are loaded lazily, so ``import interp`` (and ``minigpt --help``) imports no torch, and they survive any move of
the module that defines them.

Rooms (see docs/ARCHITECTURE.md), in import tiers (:data:`TIERS`, held by ``tests/test_architecture.py``): a
module imports only from its own tier or a lower one, and from ``model``; never from ``dashboards``/streamlit.

- ``interp.common``: argument checks, metrics, the frame vocabulary, CSV export.
- ``interp.observe``: reading activations (residual stream, DLA, logit lens, attention patterns, information flow).
- ``interp.weights``: reading weights (QK/OV circuits, copying, composition).
- ``interp.intervene``: changing activations (ablation specs, replacements, the batched engine, sweeps, patching).
- ``interp.reports``: what a training run is judged by (the induction report).
- ``interp.features``: sparse autoencoders and transcoders (training, the standard figures, feature analyses,
  steering, automatic labels).
- ``interp.discover``: circuit discovery (the edge graph, edge patching, EAP, EAP-IG, ACDC, path patching,
  circuits, and models whose circuit is known by construction).
- ``interp.compat``: TransformerLens's ``utils``, ``patching`` and ``evals`` helpers (``from interp.compat import
  utils, patching, evals``), the patching functions on the batched engine.
- ``interp.cli``: the ``minigpt`` command line, the only room that may import all the others.

Example:
    >>> import interp
    >>> interp.direct_logit_attribution.__module__
    'interp.observe.dla'
"""

from model.lazy import lazy_exports

TIERS: tuple[tuple[str, ...], ...] = (
    ("interp.common",),
    ("interp.observe", "interp.weights"),
    ("interp.intervene",),
    ("interp.reports", "interp.discover", "interp.compat"),
    ("interp.dynamics", "interp.features"),  # training dynamics over a run's snapshots; SAEs and transcoders
    ("interp.cli",),
)

_ROOMS = {
    "interp.common.checks": ["prepare"],
    "interp.common.export": ["contributions_to_csv", "read_contributions_csv", "write_csv_atomic"],
    "interp.common.metrics": ["LogitDiff", "Loss", "LossAt", "Metric", "TargetProb", "as_metric", "contrast_metric"],
    "interp.common.vocabulary": ["COLUMNS"],
    "interp.observe.residual": ["accumulated_resid", "head_writes", "residual_stack", "write_norms"],
    "interp.observe.dla": [
        "contributions_at", "direct_logit_attribution", "final_logits", "logit_difference", "resolve_target",
    ],
    "interp.observe.lens": ["logit_lens", "next_token_distribution"],
    "interp.observe.flow": ["edge_logit_effects", "flow_routes", "flow_stages", "information_flow", "state_readout"],
    "interp.observe.flow_reading": ["flow_into", "strongest_effects", "top_guess"],
    "interp.observe.attention": ["attention_pattern_frame", "classification_note", "classify_heads", "head_scores"],
    "interp.weights.qk_ov": ["copying_scores", "full_ov", "ov_matrix", "full_qk", "qk_matrix"],
    "interp.weights.composition": ["composition_score", "composition_scores"],
    "interp.intervene.specs": [
        "AttnLayerAblation", "HeadAblation", "MLPAblation", "NeuronAblation", "PositionAblation", "Spec",
    ],
    "interp.intervene.parsing": ["parse_layers", "parse_pairs", "specs_from"],
    "interp.intervene.replace": ["ablation_hooks", "corpus_reference", "replacements", "resample_rows"],
    "interp.intervene.ablate": ["AblationComparison", "AblationResult", "ablate", "compare_ablation"],
    "interp.intervene.flow": ["patch_flow_edge"],
    "interp.intervene.sweeps": ["head_sweep", "neuron_sweep"],
    "interp.intervene.patching": ["activation_patching", "attribution_patching"],
    "interp.reports.induction": ["induction_report"],
    "interp.features.config": ["SAEConfig"],
    "interp.features.sae": ["SAE", "list_saes"],
    "interp.features.toy": ["ToyFeatures", "planted_feature_recovery", "toy_features"],
    "interp.features.training": ["SAETrainConfig", "train_sae", "train_transcoder"],
    "interp.features.evaluate": ["feature_summary", "sae_metrics"],
    "interp.features.analysis": [
        "activation_histogram", "feature_dla", "feature_logit_effects", "sae_activations", "top_activations",
    ],
    "interp.features.steering": ["feature_hooks", "feature_intervention", "generate_steered"],
    "interp.features.labels": ["feature_label", "feature_labels", "label_from_contexts"],
    "interp.discover.graph": ["EdgeGraph", "circuit_graph", "edge_graph"],
    "interp.discover.patching": ["edge_patching"],
    "interp.discover.reference": ["edge_patching_reference"],
    "interp.discover.attribution": ["edge_attribution_patching"],
    "interp.discover.acdc": ["acdc"],
    "interp.discover.paths": ["path_patching"],
    "interp.discover.circuit": ["Circuit", "circuit_from_edges", "edges_above"],
    "interp.discover.scoring": ["edge_auc", "score_correlation"],
    "interp.discover.planted": ["planted_induction", "planted_lookup"],
    "interp.discover.trained": ["modular_sum_data", "train_modular_sum"],
    "interp.discover.tasks": ["KnownCircuit", "known_circuit"],
    "interp.dynamics.metrics": ["training_dynamics"],
    "interp.dynamics.phases": ["crossing", "find_phase_changes"],
}  # fmt: skip
_EXPORTS = {name: module for module, names in _ROOMS.items() for name in names}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
