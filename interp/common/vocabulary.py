"""The one vocabulary of the analyses: every frame column and tensor axis name, what it means, and its type.

Every DataFrame that :mod:`interp` returns uses these column names and only these
(``tests/interp/common/test_vocabulary.py`` walks every public analysis and checks). Three rules hold everywhere:

- a column of token ids has its strings beside it: ``target`` and ``target_str``;
- "not applicable" is a missing value, never a sentinel: ``head`` is ``<NA>`` on an MLP row, in a pandas
  nullable integer column (``Int64``), so ``frame.head.isna()`` finds the rows that are not heads;
- each word means one thing: ``layer`` is always a block index, ``component_type`` says what a residual writer
  is, ``head_class`` what a head does, ``composition`` which input of a later head is read (Q, K or V).

Tensor axes (jaxtyping names) follow the model's glossary: ``batch pos q_pos k_pos d_model head d_head d_mlp
d_vocab layer``; ``read_pos`` and ``read_vocab`` are the positions and vocabulary columns a metric reads.

Example:
    >>> import pandas as pd
    >>> COLUMNS["head"].dtype, COLUMNS["target_str"].meaning
    ('Int64', 'the string of target')
    >>> nullable_ints([0, None, 3]).tolist()
    [0, <NA>, 3]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Column:
    """One frame column: its pandas dtype (``Int64`` is nullable) and what it means."""

    dtype: str
    meaning: str

    def __post_init__(self) -> None:
        if not isinstance(self.dtype, str) or not isinstance(self.meaning, str):
            raise TypeError(
                f"a Column's dtype and meaning must be str, got {type(self.dtype).__name__} and "
                f"{type(self.meaning).__name__}"
            )


_ID = "Int64"
COLUMNS: dict[str, Column] = {
    # where in the input
    "batch": Column("int64", "sequence index in the batch"),
    "pos": Column("int64", "token position (<bos> is 0)"),
    "pos_str": Column("object", "the token at pos"),
    "q_pos": Column("int64", "query position of an attention pattern (the position reading)"),
    "k_pos": Column("int64", "key position of an attention pattern (the position read)"),
    "q_str": Column("object", "the token at q_pos"),
    "k_str": Column("object", "the token at k_pos"),
    # where in the model
    "layer": Column(_ID, "block index; <NA> outside the blocks (embeddings, final biases)"),
    "head": Column(_ID, "attention head index within its layer; <NA> unless the row is one head"),
    "neuron": Column(_ID, "MLP neuron index within its layer; <NA> unless the row is one neuron"),
    "component": Column(
        "object",
        "a component by its label (model.network.labels): a residual writer, embed, pos_embed, L{l}H{h}, "
        "L{l}.attn_bias, L{l}.mlp, L{l}N{n}, ...; information flow: also the residual carried over a sublayer, "
        "L{l}.resid_pre or L{l}.resid_mid (training dynamics: also model, a head pair L0H0->L1H0, or a weight's name)",
    ),
    "component_type": Column(
        "object", "what a component is: embed, pos_embed, head, attn, attn_bias, mlp, ... (information flow: residual)"
    ),
    "stage": Column("int64", "logit lens: blocks applied before the read-out (0 = embeddings only)"),
    "stage_name": Column("object", "logit lens: the residual stream read, e.g. L1.resid_pre or final"),
    "src_layer": Column("int64", "composition: the earlier head's layer"),
    "src_head": Column("int64", "composition: the earlier head"),
    "dst_layer": Column("int64", "composition: the later head's layer"),
    "dst_head": Column("int64", "composition: the later head"),
    "composition": Column("object", "which input of the later head reads the earlier one's output: Q, K or V"),
    "upstream": Column("object", "circuit graph: the node an edge leaves (embed, pos_embed, L{l}H{h}, L{l}.mlp)"),
    "downstream": Column(
        "object",
        "circuit graph: the input an edge enters (L{l}H{h}.q/.k/.v, L{l}.mlp, logits); path patching: the "
        "receiver inputs, comma-separated",
    ),
    # tokens
    "target": Column("int64", "token id whose logit is explained"),
    "target_str": Column("object", "the string of target"),
    "contrast": Column(_ID, "token id subtracted (a logit difference); <NA> without a contrast"),
    "contrast_str": Column("object", "the string of contrast; <NA> without a contrast"),
    "top_strs": Column("object", "the most likely tokens, as strings, most likely first (a list)"),
    "top_probs": Column("object", "their probabilities (a list of floats)"),
    # values
    "contribution": Column("float64", "direct contribution to the logit (or logit difference)"),
    "norm": Column("float64", "L2 norm of a component's write (a flow edge's part) at one position"),
    "weight": Column("float64", "attention weight A[q_pos, k_pos]"),
    "target_prob": Column("float64", "probability of target"),
    "target_rank": Column("int64", "rank of target among all tokens (0 = the top token)"),
    "score": Column(
        "float64",
        "composition: the score in [0, 1]; circuit discovery: an edge's (or path's) effect, metric_patched - "
        "metric_clean when it alone carries its corrupted value (exact, or estimated by EAP / EAP-IG)",
    ),
    "abs_score": Column("float64", "|score|: how much an edge matters, whatever the sign"),
    "baseline": Column("float64", "the same score for random matrices of the same shapes"),
    "ratio": Column("float64", "score / baseline"),
    "copying_score": Column("float64", "how often attending to a token most raises that token's logit"),
    "head_class": Column(
        "object",
        "what a head does, from its scores: induction, previous_token, ..., other; undefined when no token "
        "repeats and the head shows no other pattern (induction cannot be told from a resting place)",
    ),
    **{
        name: Column("float64", f"head score: {text}")
        for name, text in {
            "previous_token": "mean attention to the previous token",
            "current_token": "mean attention to the token itself",
            "first_token": "mean attention to position 0 (<bos>)",
            "duplicate_token": "mean attention to earlier copies of the current token",
            "induction": "mean attention to the tokens that followed earlier copies of the current token",
            "entropy": "mean entropy of the attention pattern (nats)",
        }.items()
    },
    "metric_clean": Column("float64", "the metric on the clean (unablated, unpatched) pass"),
    "metric_ablated": Column("float64", "the metric with one component ablated"),
    "metric_corrupted": Column(
        "float64", "the metric on the corrupted pass (circuit discovery: its logits read against the clean tokens)"
    ),
    "metric_patched": Column(
        "float64",
        "the metric with the row's patch: activation patching puts one clean activation into the corrupted pass; "
        "edge and path patching put one edge's (path's) corrupted value into the clean pass",
    ),
    "delta": Column("float64", "metric_ablated - metric_clean"),
    # training dynamics (interp.dynamics): one row per (saved step, metric, component)
    "step": Column("int64", "training dynamics: the optimizer step of a saved snapshot (0 = the initial weights)"),
    "metric": Column(
        "object", "training dynamics: what is measured (second_copy_loss, icl_score, induction, K_composition, ...)"
    ),
    "value": Column("float64", "training dynamics: the metric's value at that step for that component"),
    "start_step": Column("int64", "phase change: the first saved step of the window of fastest change"),
    "end_step": Column("int64", "phase change: the last saved step of that window"),
    "start_value": Column("float64", "phase change: the series' value at start_step"),
    "end_value": Column("float64", "phase change: the series' value at end_step"),
    "change": Column("float64", "phase change: end_value - start_value"),
    "share": Column("float64", "phase change: |change| over the series' range (max - min) across the run"),
    "normalized": Column("float64", "(metric_patched - metric_corrupted) / (metric_clean - metric_corrupted)"),
    # features (sparse autoencoders and transcoders, interp.features)
    "feature": Column(_ID, "SAE feature (latent) index; <NA> on an SAE's bias and error rows"),
    "activation": Column("float64", "a feature's activation (NaN on rows that are not one feature)"),
    "next_str": Column("object", "the token after pos (<NA> at the last position)"),
    "context": Column("object", "text around pos with the token at pos marked «c»"),
    "context_left": Column("object", "the text just before pos"),
    "context_right": Column("object", "the text just after pos"),
    "bin_start": Column("float64", "histogram bin: lower edge"),
    "bin_end": Column("float64", "histogram bin: upper edge"),
    "count": Column("int64", "how many values fall in the bin"),
    "firing_rate": Column("float64", "fraction of tokens on which a feature is non-zero (or falls in the bin)"),
    "mean_activation": Column("float64", "a feature's mean activation where it fires (NaN if it never does)"),
    "max_activation": Column("float64", "a feature's largest activation"),
    "side": Column("object", "logit effect: promoted or suppressed"),
    "rank": Column("int64", "0 = the strongest on its side"),
    "logit_effect": Column(
        "float64", "a feature's decoder direction (or a flow edge's part) through the final LayerNorm and W_U"
    ),
    "upstream_stage": Column("int64", "information flow: the stage (flow_stages index) an edge reads"),
    "downstream_stage": Column("int64", "information flow: the stage an edge adds to (upstream_stage + 1)"),
    "upstream_pos": Column("int64", "information flow: the position an edge reads (a head's key position)"),
    "downstream_pos": Column("int64", "information flow: the position an edge writes to (a head's query position)"),
    "upstream_str": Column("object", "the token at upstream_pos"),
    "downstream_str": Column("object", "the token at downstream_pos"),
    "logit": Column("float64", "a token's logit when one residual state is read out (final LayerNorm, then W_U)"),
    "importance": Column("float64", "information flow: the part's proximity share of the state it adds to"),
    "prob_clean": Column("float64", "probability of target without the intervention"),
    "prob_intervened": Column("float64", "probability of target with the feature ablated, steered or clamped"),
    "prob_delta": Column("float64", "prob_intervened - prob_clean"),
    "prob_ablated": Column("float64", "probability of target with the ablations applied"),
    "sample_prob": Column("float64", "probability of target when sampling: after temperature, top-k and top-p"),
    "true_feature": Column("int64", "a planted (ground-truth) feature of synthetic data"),
    "cosine": Column("float64", "cosine similarity of a planted direction and its closest decoder direction"),
    "hook_name": Column("object", "where an SAE reads (a transcoder: 'in -> out')"),
    "architecture": Column("object", "SAE architecture: standard, topk, (topk_)transcoder, (topk_)skip_transcoder"),
    "d_sae": Column("int64", "number of SAE features"),
    "variance_explained": Column("float64", "1 - squared reconstruction error / variance of the activation"),
    "l0": Column("float64", "mean number of non-zero features per token"),
    "dead": Column("int64", "features that never fire on the tokens"),
    "dense": Column("int64", "features firing on more than dense_threshold of the tokens"),
    "loss_clean": Column("float64", "next-token loss of the model (nats per token)"),
    "loss_spliced": Column("float64", "next-token loss with the SAE's reconstruction spliced in"),
    "loss_zero_ablated": Column("float64", "next-token loss with the SAE's activation set to zero"),
    "ce_recovered": Column("float64", "(loss_zero_ablated - loss_spliced) / (loss_zero_ablated - loss_clean)"),
    "label": Column("object", "a feature's automatic label, derived from its top-activating contexts"),
}


def nullable_ints(values: Iterable[int | None], *, missing: bool = False) -> pd.api.extensions.ExtensionArray:
    """An ``Int64`` array in which None is ``<NA>`` (the vocabulary's "not applicable"); ``missing=True`` makes
    every entry ``<NA>``. An integer numpy array is wrapped without a per-entry conversion."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        return pd.arrays.IntegerArray(values.astype(np.int64), np.full(values.shape, bool(missing)))
    if not isinstance(values, Iterable) or isinstance(values, str | bytes):
        raise TypeError(f"nullable_ints takes a list of integers or None, got {type(values).__name__}")
    try:
        return pd.array(list(values), dtype=_ID)
    except (TypeError, ValueError) as err:
        raise ValueError(f"nullable_ints takes integers or None (<NA>): {err}") from None


def undocumented(columns: Sequence[str]) -> list[str]:
    """The columns of a frame that this vocabulary does not define (a test keeps this empty)."""
    if not isinstance(columns, Iterable) or isinstance(columns, str | bytes):
        raise TypeError(f"columns must be a list of column names, got {type(columns).__name__}")
    return [c for c in columns if c not in COLUMNS]
