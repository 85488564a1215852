"""What the analyses of every page family share: the model reference's hashing, prompts as token ids, the one cached
forward of a prompt, the reference batch of mean and resample ablations, and the metric of a clean/corrupted pair.

Every cached function takes the model as one :class:`~dashboards.state.ModelRef`, hashed by its id
(:data:`HASH_FUNCS`: never by its weights), and prompts as tuples of token ids, so a rerun with the same inputs
costs a dictionary lookup. :func:`forward` runs a prompt once with every activation recorded
(``st.cache_resource``: shared, read-only, never copied), and the analyses read their activations from it instead
of running the model again; frames come back copied (``st.cache_data``), so no page can change what another sees.
"""

from __future__ import annotations

from functools import partial

import streamlit as st
import torch
from jaxtyping import Float, Int
from torch import Tensor

from dashboards.state import ModelRef
from interp.common.metrics import Metric, contrast_metric
from interp.intervene.replace import corpus_reference
from model.network.cache import ActivationCache

Ids = tuple[int, ...]
HASH_FUNCS = {ModelRef: lambda ref: ref.id}  # Streamlit hashes a model reference by its id
cache_data = partial(st.cache_data, hash_funcs=HASH_FUNCS)  # st.cache_data that takes a ModelRef
cache_resource = partial(st.cache_resource, hash_funcs=HASH_FUNCS)  # st.cache_resource that takes a ModelRef


def tokens_of(ids: Ids) -> Int[Tensor, "1 pos"]:
    """``[1, pos]`` tensor of a prompt's ids."""
    return torch.tensor([ids], dtype=torch.long)


def symbols(ref: ModelRef, ids: Ids) -> list[str]:
    """The string of every token id (``<bos>`` included), as every frame's ``*_str`` columns have them."""
    return ref.model.to_str_tokens(list(ids))


@cache_resource(max_entries=32, show_spinner=False)
def forward(ref: ModelRef, ids: Ids) -> tuple[Float[Tensor, "1 pos d_vocab"], ActivationCache]:
    """Logits and the full activation cache (every hook, ``hook_result`` included) of one prompt."""
    with torch.no_grad():
        return ref.model.run_with_cache(tokens_of(ids), names_filter=lambda name: True)


@cache_resource(max_entries=4, show_spinner="Sampling a reference batch from the built-in corpus ...")
def reference_batch(ref: ModelRef) -> Int[Tensor, "64 n_ctx"]:
    """``interp.corpus_reference``: 64 windows of the built-in corpus, the inputs mean and resample ablations use."""
    return corpus_reference(ref.model)


@cache_data(max_entries=64, show_spinner=False)
def contrast(ref: ModelRef, clean: Ids, corrupted: Ids) -> tuple[Metric, str]:
    """``interp.contrast_metric``: the metric of the patching and discovery pages, and its words."""
    return contrast_metric(ref.model, tokens_of(clean), tokens_of(corrupted))
