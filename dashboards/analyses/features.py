"""The cached ``interp.features`` calls behind the Features page (``analyses.features.<name>``).

SAEs are loaded once per process (``st.cache_resource``, frozen: the sessions' threads share them, as they share
the models). Top contexts, histograms and labels are computed on :data:`VALIDATION_WINDOWS` windows of the
built-in corpus's validation split, encoded once per (model, SAE).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from dashboards.analyses.base import Ids, cache_data, cache_resource, tokens_of
from dashboards.state import ModelRef
from interp.features.analysis import activation_histogram, feature_logit_effects, sae_activations, top_activations
from interp.features.evaluate import feature_summary
from interp.features.labels import feature_labels
from interp.features.sae import SAE, list_saes
from interp.features.steering import feature_intervention, generate_steered
from model.network.cache import ActivationCache
from model.training.data import builtin_corpus, text_eval_batches

VALIDATION_WINDOWS = 256


def sae_choices(model_label: str) -> dict[str, str]:
    """Shipped SAEs trained on the model the sidebar shows (by its shipped name): name -> description."""
    return {name: text for name, text in list_saes().items() if load_sae(name).cfg.model_name == model_label}


@st.cache_resource(max_entries=8, show_spinner="Loading the SAE ...")
def load_sae(name: str) -> SAE:
    """``SAE.from_pretrained(name)``, frozen and in eval mode."""
    return SAE.from_pretrained(name).eval().requires_grad_(False)


@cache_resource(max_entries=4, show_spinner="Reading the validation text ...")
def validation(ref: ModelRef, sae_name: str) -> tuple[torch.Tensor, ActivationCache]:
    """The validation windows and the activations the SAE reads on them (one forward pass)."""
    sae, model = load_sae(sae_name), ref.model
    tokens = text_eval_batches(builtin_corpus(model.tokenizer).val, model.cfg.n_ctx, max_windows=VALIDATION_WINDOWS)
    tokens = torch.cat(tokens).to(model.device)
    with torch.no_grad():
        _, cache = model.run_with_cache(
            tokens,
            names_filter=list(dict.fromkeys([sae.cfg.hook_name, sae.cfg.hook_name_out or sae.cfg.hook_name])),
            return_type=None,
        )
    return tokens, cache


@cache_data(max_entries=8, show_spinner="Summarising the features ...")
def summary(ref: ModelRef, sae_name: str) -> pd.DataFrame:
    """``interp.feature_summary`` on the validation windows: firing rate, mean and max activation per feature."""
    tokens, _ = validation(ref, sae_name)
    return feature_summary(ref.model, tokens, sae=load_sae(sae_name))


@cache_data(max_entries=64, show_spinner=False)
def prompt_features(ref: ModelRef, ids: Ids, sae_name: str) -> pd.DataFrame:
    """``interp.sae_activations`` on the prompt: every non-zero (pos, feature, activation)."""
    return sae_activations(ref.model, tokens_of(ids), sae=load_sae(sae_name))


@cache_data(max_entries=256, show_spinner=False)
def labels(ref: ModelRef, sae_name: str, features: tuple[int, ...]) -> dict[int, str]:
    """``interp.feature_labels`` of some features, from their top contexts on the validation windows."""
    tokens, cache = validation(ref, sae_name)
    frame = feature_labels(ref.model, tokens, cache, sae=load_sae(sae_name), features=list(features))
    return dict(zip(frame.feature.tolist(), frame.label.tolist(), strict=True))


@cache_data(max_entries=64, show_spinner="Reading the feature ...")
def feature_card(
    ref: ModelRef, sae_name: str, feature: int, k: int = 12
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """``(top contexts, histogram, logit effects or None)`` of one feature on the validation windows."""
    sae, model = load_sae(sae_name), ref.model
    tokens, cache = validation(ref, sae_name)
    top = top_activations(model, tokens, cache, sae=sae, feature=feature, k=k, left=20, right=6)
    hist = activation_histogram(model, tokens, cache, sae=sae, feature=feature, bins=24)
    effects = feature_logit_effects(model, sae, feature, k=8) if sae.cfg.d_out == model.cfg.d_model else None
    return top, hist, effects


@cache_data(max_entries=64, show_spinner=False)
def intervention(ref: ModelRef, ids: Ids, sae_name: str, feature: int, mode: str, value: float) -> pd.DataFrame:
    """``interp.feature_intervention`` at the prompt's last position."""
    return feature_intervention(ref.model, tokens_of(ids), sae=load_sae(sae_name), feature=feature, mode=mode,
                                value=value)  # fmt: skip


@cache_data(max_entries=64, show_spinner="Sampling ...")
def steered_text(
    ref: ModelRef, prompt: str, sae_name: str, feature: int, value: float, n_new: int, seed: int
) -> tuple[str, str]:
    """``(plain, steered)`` continuations of ``prompt`` (temperature 0.8, the same seed): the text after it."""
    model = ref.model
    start = len(model.tokenizer.normalize(prompt))
    plain = model.generate(prompt, n_new, temperature=0.8, seed=seed)
    steered = generate_steered(model, prompt, sae=load_sae(sae_name), feature=feature, value=value,
                               max_new_tokens=n_new, temperature=0.8, seed=seed)  # fmt: skip
    return plain[start:], steered[start:]
