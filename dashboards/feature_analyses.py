"""The cached ``interp.features`` calls behind the Features page (re-exported by :mod:`dashboards.analyses`, the
pages' one door to the model).

SAEs are loaded once per process (``st.cache_resource``, frozen: the sessions' threads share them, as they share
the models). Top contexts, histograms and labels are computed on :data:`VALIDATION_WINDOWS` windows of the
built-in corpus's validation split, encoded once per (model, SAE).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from interp.features.analysis import activation_histogram, feature_logit_effects, sae_activations, top_activations
from interp.features.evaluate import feature_summary
from interp.features.labels import feature_labels
from interp.features.sae import SAE, list_saes
from interp.features.steering import feature_intervention, generate_steered
from model.network.cache import ActivationCache
from model.network.minigpt import MiniGPT
from model.training.data import builtin_corpus, text_eval_batches

Ids = tuple[int, ...]
VALIDATION_WINDOWS = 256


def sae_choices(model_label: str) -> dict[str, str]:
    """Shipped SAEs trained on the model the sidebar shows (by its shipped name): name -> description."""
    return {name: text for name, text in list_saes().items() if load_sae(name).cfg.model_name == model_label}


@st.cache_resource(max_entries=8, show_spinner="Loading the SAE ...")
def load_sae(name: str) -> SAE:
    """``SAE.from_pretrained(name)``, frozen and in eval mode."""
    return SAE.from_pretrained(name).eval().requires_grad_(False)


@st.cache_resource(max_entries=4, show_spinner="Reading the validation text ...")
def validation(_model: MiniGPT, model_id: str, sae_name: str) -> tuple[torch.Tensor, ActivationCache]:
    """The validation windows and the activations the SAE reads on them (one forward pass)."""
    sae = load_sae(sae_name)
    tokens = text_eval_batches(builtin_corpus(_model.tokenizer).val, _model.cfg.n_ctx, max_windows=VALIDATION_WINDOWS)
    tokens = torch.cat(tokens).to(_model.device)
    with torch.no_grad():
        _, cache = _model.run_with_cache(
            tokens,
            names_filter=list(dict.fromkeys([sae.cfg.hook_name, sae.cfg.hook_name_out or sae.cfg.hook_name])),
            return_type=None,
        )
    return tokens, cache


@st.cache_data(max_entries=8, show_spinner="Summarising the features ...")
def summary(_model: MiniGPT, model_id: str, sae_name: str) -> pd.DataFrame:
    """``interp.feature_summary`` on the validation windows: firing rate, mean and max activation per feature."""
    tokens, _ = validation(_model, model_id, sae_name)
    return feature_summary(_model, tokens, sae=load_sae(sae_name))


@st.cache_data(max_entries=64, show_spinner=False)
def prompt_features(_model: MiniGPT, model_id: str, ids: Ids, sae_name: str) -> pd.DataFrame:
    """``interp.sae_activations`` on the prompt: every non-zero (pos, feature, activation)."""
    return sae_activations(_model, torch.tensor([ids]), sae=load_sae(sae_name))


@st.cache_data(max_entries=256, show_spinner=False)
def labels(_model: MiniGPT, model_id: str, sae_name: str, features: tuple[int, ...]) -> dict[int, str]:
    """``interp.feature_labels`` of some features, from their top contexts on the validation windows."""
    tokens, cache = validation(_model, model_id, sae_name)
    frame = feature_labels(_model, tokens, cache, sae=load_sae(sae_name), features=list(features))
    return dict(zip(frame.feature.tolist(), frame.label.tolist(), strict=True))


@st.cache_data(max_entries=64, show_spinner="Reading the feature ...")
def feature_card(
    _model: MiniGPT, model_id: str, sae_name: str, feature: int, k: int = 12
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """``(top contexts, histogram, logit effects or None)`` of one feature on the validation windows."""
    sae = load_sae(sae_name)
    tokens, cache = validation(_model, model_id, sae_name)
    top = top_activations(_model, tokens, cache, sae=sae, feature=feature, k=k, left=20, right=6)
    hist = activation_histogram(_model, tokens, cache, sae=sae, feature=feature, bins=24)
    effects = feature_logit_effects(_model, sae, feature, k=8) if sae.cfg.d_out == _model.cfg.d_model else None
    return top, hist, effects


@st.cache_data(max_entries=64, show_spinner=False)
def intervention(
    _model: MiniGPT, model_id: str, ids: Ids, sae_name: str, feature: int, mode: str, value: float
) -> pd.DataFrame:
    """``interp.feature_intervention`` at the prompt's last position."""
    return feature_intervention(_model, torch.tensor([ids]), sae=load_sae(sae_name), feature=feature, mode=mode,
                                value=value)  # fmt: skip


@st.cache_data(max_entries=64, show_spinner="Sampling ...")
def steered_text(
    _model: MiniGPT, model_id: str, prompt: str, sae_name: str, feature: int, value: float, n_new: int, seed: int
) -> tuple[str, str]:
    """``(plain, steered)`` continuations of ``prompt`` (temperature 0.8, the same seed): the text after it."""
    start = len(_model.tokenizer.normalize(prompt))
    plain = _model.generate(prompt, n_new, temperature=0.8, seed=seed)
    steered = generate_steered(_model, prompt, sae=load_sae(sae_name), feature=feature, value=value,
                               max_new_tokens=n_new, temperature=0.8, seed=seed)  # fmt: skip
    return plain[start:], steered[start:]
