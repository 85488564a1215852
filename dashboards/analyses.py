"""The one model or ``interp`` call behind each chart, cached per (model, prompt, settings).

Each function takes the model as ``_model`` (not hashed by Streamlit) plus ``model_id``, a string that
changes whenever the weights do, and prompts as tuples of token ids, so a rerun with the same inputs
costs a dictionary lookup. The forward pass and its activation cache are shared
(``st.cache_resource``: read-only, never copied); frames come back copied (``st.cache_data``), so no
page can change what another one sees. No maths here beyond what ``model`` and ``interp`` return.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st
import torch

from dashboards import card_analyses as card  # noqa: F401 (the Model card page: analyses.card.<name>)
from dashboards import feature_analyses as features  # noqa: F401 (the Features page: analyses.features.<name>)
from dashboards import flow_analyses as flow  # noqa: F401 (the Information flow page: analyses.flow.<name>)
from interp.common.export import contributions_to_csv
from interp.common.metrics import LogitDiff, Loss, Metric
from interp.discover.attribution import edge_attribution_patching
from interp.discover.circuit import Circuit
from interp.discover.patching import edge_patching
from interp.discover.tasks import KnownCircuit, known_circuit
from interp.dynamics.metrics import training_dynamics
from interp.dynamics.phases import find_phase_changes
from interp.intervene.ablate import ablate
from interp.intervene.patching import activation_patching
from interp.intervene.sweeps import head_sweep
from interp.observe.attention import attention_pattern_frame, classification_note, head_scores
from interp.observe.dla import direct_logit_attribution
from interp.observe.lens import logit_lens
from interp.observe.residual import write_norms
from interp.reports.induction import probe_tokens
from interp.weights.circuits import ov_circuit, qk_circuit
from interp.weights.composition import composition_scores
from model.network.cache import ActivationCache
from model.network.logits import next_token_loss, sampling_probs
from model.network.minigpt import MiniGPT
from model.network.token_ids import token_labels
from model.storage.runs import list_runs  # noqa: F401 (the pages reach the shipped runs through here)
from model.training.data import builtin_corpus, text_batch

Ids = tuple[int, ...]
MAX_CIRCUIT_VOCAB = 512  # a d_vocab x d_vocab heatmap beyond this is neither readable nor cheap


def tokens_of(ids: Ids) -> torch.Tensor:
    """``[1, pos]`` tensor of a prompt's ids."""
    return torch.tensor([ids], dtype=torch.long)


def symbols(model: MiniGPT, ids: Ids) -> list[str]:
    """The string of every token id (``<bos>`` included), as every frame's ``*_str`` columns have them."""
    return model.to_str_tokens(list(ids))


@st.cache_resource(max_entries=32, show_spinner=False)
def forward(_model: MiniGPT, model_id: str, ids: Ids) -> tuple[torch.Tensor, ActivationCache]:
    """Logits ``[1, pos, d_vocab]`` and the full activation cache (every hook, ``hook_result`` included)."""
    with torch.no_grad():
        return _model.run_with_cache(tokens_of(ids), names_filter=lambda name: True)


@st.cache_data(max_entries=64, show_spinner=False)
def next_token_distribution(
    _model: MiniGPT,
    model_id: str,
    ids: Ids,
    pos: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
) -> pd.DataFrame:
    """Columns ``token_id, token, logit, softmax, prob`` for the prediction after ``pos``, highest logit first.

    ``softmax`` is the plain softmax of the logits; ``prob`` is what sampling uses after temperature,
    top-k and top-p (``model.network.logits.sampling_probs``).
    """
    logits = forward(_model, model_id, ids)[0][0, pos]
    return pd.DataFrame(
        {
            "token_id": range(len(logits)),
            "token": token_labels(_model.tokenizer, range(len(logits))),
            "logit": logits.tolist(),
            "softmax": sampling_probs(logits).tolist(),
            "prob": sampling_probs(logits, temperature=temperature, top_k=top_k, top_p=top_p).tolist(),
        }
    ).sort_values("logit", ascending=False, ignore_index=True)


@st.cache_data(max_entries=32, show_spinner="Generating ...")
def generate(
    _model: MiniGPT,
    model_id: str,
    prompt: str,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float,
    seed: int,
) -> str:
    """The sampled continuation of ``prompt`` (the text after it), reproducible by ``seed``."""
    text = _model.generate(prompt, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    return text[len(_model.tokenizer.normalize(prompt)) :]


@st.cache_data(max_entries=8, show_spinner=False)
def config_frame(_model: MiniGPT, model_id: str) -> pd.DataFrame:
    """The model's config as a two-column table: ``field, value`` (values as text), only the fields that apply.

    Left out: ``d_ff`` and ``act`` of an attention-only model (no MLP), ``ln_eps`` without LayerNorm, and
    ``rotary_base`` unless the positions are rotary.
    """
    cfg = _model.cfg
    unused = {"d_ff": cfg.attn_only, "act": cfg.attn_only, "ln_eps": cfg.norm == "none"}
    unused["rotary_base"] = cfg.positional != "rotary"
    fields = {k: v for k, v in cfg.to_dict().items() if not unused.get(k, False)}
    return pd.DataFrame({"field": list(fields), "value": [str(v) for v in fields.values()]})


@st.cache_data(max_entries=8, show_spinner=False)
def inventory(_model: MiniGPT, model_id: str) -> pd.DataFrame:
    """``model.parameter_inventory()``: columns ``tensor, shape, count``."""
    return _model.parameter_inventory()


@st.cache_data(max_entries=64, show_spinner=False)
def attention_patterns(_model: MiniGPT, model_id: str, ids: Ids) -> pd.DataFrame:
    """``interp.attention_pattern_frame`` of every head, with ``layer, head`` columns in front."""
    cache, tokens = forward(_model, model_id, ids)[1], tokens_of(ids)
    frames = [
        attention_pattern_frame(_model, tokens, cache, layer=layer, head=head).assign(layer=layer, head=head)
        for layer in range(_model.cfg.n_layers)
        for head in range(_model.cfg.n_heads)
    ]
    return pd.concat(frames, ignore_index=True)


@st.cache_data(max_entries=64, show_spinner=False)
def attention_scores(_model: MiniGPT, model_id: str, ids: Ids) -> pd.DataFrame:
    """``interp.head_scores`` on the prompt (one row per head, with its ``head_class``)."""
    return head_scores(_model, tokens_of(ids), forward(_model, model_id, ids)[1])


def head_class_note(scores: pd.DataFrame) -> str | None:
    """``interp.classification_note``: why the head classes are limited on this prompt, or None."""
    return classification_note(scores)


@st.cache_data(max_entries=64, show_spinner=False)
def residual_writes(_model: MiniGPT, model_id: str, ids: Ids) -> pd.DataFrame:
    """``interp.write_norms``: the norm of every component's write at every position."""
    return write_norms(_model, tokens_of(ids), forward(_model, model_id, ids)[1])


@st.cache_data(max_entries=64, show_spinner=False)
def lens(_model: MiniGPT, model_id: str, ids: Ids, k: int) -> pd.DataFrame:
    """``interp.logit_lens`` with the next token as target and the top ``k`` guesses."""
    return logit_lens(_model, tokens_of(ids), forward(_model, model_id, ids)[1], k=k)


@st.cache_data(max_entries=64, show_spinner=False)
def dla(_model: MiniGPT, model_id: str, ids: Ids, target: str | None, contrast: str | None, per: str) -> pd.DataFrame:
    """``interp.direct_logit_attribution`` at every position (``target=None``: the next token)."""
    cache = forward(_model, model_id, ids)[1]
    return direct_logit_attribution(_model, tokens_of(ids), cache, target=target, contrast=contrast, per=per)


def dla_at(frame: pd.DataFrame, pos: int, top: int | None = None) -> tuple[pd.DataFrame, float]:
    """The rows of one position (only the ``top`` largest by magnitude, when given) and the sum of all of them.

    The one-prompt ``batch`` column (always 0 here) is left out; the CSV download keeps the library's layout.
    """
    here = frame[frame["pos"] == pos].drop(columns="batch")
    total = float(here["contribution"].sum())
    if top is not None:
        here = here.loc[here["contribution"].abs().nlargest(top).index]
    return here, total


@st.cache_data(max_entries=16, show_spinner=False)
def dla_csv(_model: MiniGPT, model_id: str, ids: Ids, target: str | None, contrast: str | None, per: str) -> bytes:
    """The CSV that ``interp.contributions_to_csv`` writes for :func:`dla`'s frame, as bytes to download."""
    frame = dla(_model, model_id, ids, target, contrast, per)
    with tempfile.TemporaryDirectory(prefix="minigpt-dla-") as tmp:
        return contributions_to_csv(frame, Path(tmp) / "contributions.csv").read_bytes()


@st.cache_resource(max_entries=4, show_spinner="Sampling a reference batch from the built-in corpus ...")
def reference_batch(n_ctx: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """``size`` random windows of the built-in corpus's validation split: the inputs mean/resample ablations use."""
    return text_batch(builtin_corpus().val, size, n_ctx, torch.Generator().manual_seed(seed))


@st.cache_data(max_entries=64, show_spinner=False)
def ablation_effect(
    _model: MiniGPT, model_id: str, ids: Ids, heads: tuple, mlps: tuple, neurons: str, method: str, pos: int
) -> tuple[pd.DataFrame, float | None, float | None, list[str]]:
    """``interp.ablate``: next-token probabilities at ``pos`` before and after, both losses, and what was done.

    The frame has columns ``token_id, token, prob_clean, prob_ablated``.
    """
    logits = forward(_model, model_id, ids)[0]
    reference = None if method == "zero" else reference_batch(_model.cfg.n_ctx)
    result = ablate(
        _model, tokens_of(ids), heads=list(heads) or None, mlps=list(mlps) or None, neurons=neurons or None,
        method=method, reference=reference,
    )  # fmt: skip
    clean = next_token_loss(logits, tokens_of(ids)).item() if len(ids) > 1 else None
    frame = pd.DataFrame(
        {
            "token_id": range(logits.shape[-1]),
            "token": token_labels(_model.tokenizer, range(logits.shape[-1])),
            "prob_clean": sampling_probs(logits[0, pos]).tolist(),
            "prob_ablated": sampling_probs(result.logits[0, pos]).tolist(),
        }
    )
    return frame, clean, result.loss, [str(spec) for spec in result.ablations]


@st.cache_data(max_entries=32, show_spinner="Ablating every head ...")
def sweep(_model: MiniGPT, model_id: str, ids: Ids, method: str) -> pd.DataFrame:
    """``interp.head_sweep`` on the loss: columns ``layer, head, metric_clean, metric_ablated, delta``."""
    reference = None if method == "zero" else reference_batch(_model.cfg.n_ctx)
    return head_sweep(_model, tokens_of(ids), method=method, metric="loss", reference=reference, progress=False)


@st.cache_data(max_entries=32, show_spinner="Patching ...")
def patching(_model: MiniGPT, model_id: str, clean: Ids, corrupted: Ids, grid: str) -> tuple[pd.DataFrame, str]:
    """``interp.activation_patching`` from ``clean`` into ``corrupted``, and the metric in words.

    The metric is the last position's logit difference between the clean and the corrupted top guesses;
    when both runs guess the same token, the next-token loss.
    """
    metric, words = contrast_metric(_model, model_id, clean, corrupted)
    frame = activation_patching(_model, tokens_of(clean), tokens_of(corrupted), metric, grid=grid, progress=False)
    return frame, words


def contrast_metric(_model: MiniGPT, model_id: str, clean: Ids, corrupted: Ids) -> tuple[Metric, str]:
    """The metric of the patching views, and its words: the last position's logit difference between the clean and
    the corrupted top guesses; when both runs guess the same token, the next-token loss."""
    answer = int(next_token_distribution(_model, model_id, clean, len(clean) - 1)["token_id"].iloc[0])
    wrong = int(next_token_distribution(_model, model_id, corrupted, len(corrupted) - 1)["token_id"].iloc[0])
    if answer == wrong:
        return Loss(), "next-token loss (both prompts have the same top guess)"
    names = [repr(s) for s in _model.to_str_tokens([answer, wrong])]
    words = f"logit of {names[0]} (clean top guess) minus logit of {names[1]} (corrupted top guess), last position"
    return LogitDiff(answer=answer, wrong=wrong), words


def _edge_frame(model: MiniGPT, clean, corrupted, metric: Metric, method: str) -> pd.DataFrame:
    if method == "exact":
        return edge_patching(model, clean, corrupted, metric, progress=False)
    return edge_attribution_patching(model, clean, corrupted, metric, method=method)


@st.cache_data(max_entries=16, show_spinner="Scoring every edge ...")
def edge_scores(_model: MiniGPT, model_id: str, clean: Ids, corrupted: Ids, method: str) -> tuple[pd.DataFrame, str]:
    """Every edge's score by ``method`` (exact, eap, eap-ig) from ``clean`` to ``corrupted``; the metric in words."""
    metric, words = contrast_metric(_model, model_id, clean, corrupted)
    return _edge_frame(_model, tokens_of(clean), tokens_of(corrupted), metric, method), words


@st.cache_data(max_entries=64, show_spinner="Running the circuit alone ...")
def faithfulness(_model: MiniGPT, model_id: str, clean: Ids, corrupted: Ids, edges: tuple) -> float:
    """``Circuit(edges).faithfulness`` with the metric of :func:`edge_scores`."""
    metric, _ = contrast_metric(_model, model_id, clean, corrupted)
    return Circuit(edges).faithfulness(_model, tokens_of(clean), tokens_of(corrupted), metric)


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
    task = known_task(name)
    return Circuit(edges).faithfulness(task.model, task.clean, task.corrupted, task.metric)


@st.cache_data(max_entries=8, show_spinner="Scoring composition ...")
def composition(_model: MiniGPT, model_id: str) -> pd.DataFrame:
    """``interp.composition_scores``: every Q/K/V composition score with its random baseline."""
    return composition_scores(_model)


@st.cache_data(max_entries=32, show_spinner=False)
def circuit(_model: MiniGPT, model_id: str, kind: str, layer: int, head: int, specials: bool = True) -> pd.DataFrame:
    """The full QK or OV circuit (``kind``) of one head as a token x token frame (``interp.qk_circuit`` /
    ``interp.ov_circuit``; 64 x 64 is small); ``specials=False`` leaves out the special tokens' rows and columns."""
    n = _model.cfg.d_vocab
    if n > MAX_CIRCUIT_VOCAB:
        raise ValueError(
            f"the full {kind} circuit would be {n} x {n}; the dashboard draws vocabularies of at most "
            f"{MAX_CIRCUIT_VOCAB} tokens (use interp.{kind.lower()}_circuit(...).rows(...) in a notebook)"
        )
    full = (qk_circuit if kind == "QK" else ov_circuit)(_model, layer, head).full()
    names = token_labels(_model.tokenizer, range(n))
    frame = pd.DataFrame(full.numpy(), index=names, columns=names)
    if specials or _model.tokenizer is None:
        return frame
    keep = [i for i in range(n) if i not in _model.tokenizer.special_ids]
    return frame.iloc[keep, keep]


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
    model, ids = MiniGPT.from_pretrained(name, step=step), tuple(probe_tokens(1)[0].tolist())
    return attention_patterns(model, f"{name}@{step}", ids), symbols(model, ids)
