"""The logit lens: the residual stream read out early, through the final LayerNorm and the unembedding.

Stage ``s`` is the residual after the embeddings and the first ``s`` blocks (``L{s}.resid_pre``; the last stage
is the final ``resid_post``). Each is normalised by ``ln_final`` with its *own* scale (the usual logit lens;
``norm="none"`` and ``"post"`` models have no final LayerNorm, so the stage goes straight to ``W_U``) and turned
into probabilities. The last stage reproduces the model's output.

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> df = logit_lens(model, model.to_tokens("hi"), k=3)
    >>> df.shape, list(df.stage_name[:3]), len(df.top_strs[0])
    ((9, 11), ['L0.resid_pre', 'L1.resid_pre', 'final'], 3)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor

from interp.common.checks import prepare, require_finite
from interp.observe.dla import TargetLike, cache_logits, resolve_target
from interp.observe.residual import _accumulated, pos_strings
from model.network.cache import ActivationCache
from model.network.labels import component_label
from model.network.minigpt import MiniGPT
from model.network.token_ids import token_labels

LENS_COLUMNS = ["batch", "pos", "pos_str", "stage", "stage_name", "target", "target_str", "target_prob"]
LENS_COLUMNS += ["target_rank", "top_strs", "top_probs"]


@torch.no_grad()
def logit_lens(
    model: MiniGPT,
    tokens: Int[Tensor, "batch pos"],
    cache: ActivationCache | None = None,
    target: TargetLike = None,
    k: int = 5,
) -> pd.DataFrame:
    """The residual at every layer boundary read out through the final LayerNorm and the unembedding.

    ``target`` is resolved as in :func:`interp.observe.dla.direct_logit_attribution` (None: the next token, and
    the model's own top guess at the last position).

    Columns (rows ordered by batch, pos, stage; see :mod:`interp.common.vocabulary`):
        batch, pos (int); pos_str; stage (int, blocks applied: 0 .. n_layers); stage_name (str,
        ``L{s}.resid_pre`` or ``final``); target (int id) and target_str; target_prob (float); target_rank
        (int, 0 = the top token); top_strs (list of k str, most likely first); top_probs (list of k floats).
    """
    model, tokens, cache = prepare(model, tokens, cache, what="logit_lens")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= model.cfg.d_vocab:
        raise ValueError(f"k must be an int in [1, {model.cfg.d_vocab}], got {k!r}")
    stages, _ = _accumulated(model, cache)
    names = [component_label("resid_pre", s) for s in range(model.cfg.n_layers)] + ["final"]
    probs = model.read_out(stages.to(model.device)).softmax(-1)  # each stage through the final norm, with its own scale
    target_ids = resolve_target(model, tokens, target, cache_logits(model, cache) if target is None else None)
    target_prob = probs.gather(-1, target_ids.expand(len(names), -1, -1)[..., None])  # stage batch pos 1
    require_finite(target_prob, "logit_lens", model, cache=cache)
    rank = (probs > target_prob).sum(-1)
    top_probs, top_ids = probs.topk(k, dim=-1)
    order = (1, 2, 0)  # -> batch pos stage
    n_stage, batch, pos = rank.shape
    ids = top_ids.permute(*order, 3).reshape(-1, k).cpu().tolist()
    target_flat = target_ids.reshape(-1).cpu().tolist()
    return pd.DataFrame(
        {
            "batch": np.repeat(np.arange(batch), pos * n_stage),
            "pos": np.tile(np.repeat(np.arange(pos), n_stage), batch),
            "pos_str": np.repeat(pos_strings(model, tokens).reshape(-1), n_stage),
            "stage": np.tile(np.arange(n_stage), batch * pos),
            "stage_name": np.tile(np.asarray(names, dtype=object), batch * pos),
            "target": np.repeat(np.asarray(target_flat, dtype=np.int64), n_stage),
            "target_str": np.repeat(np.asarray(token_labels(model.tokenizer, target_flat), dtype=object), n_stage),
            "target_prob": target_prob[..., 0].permute(*order).reshape(-1).double().cpu().numpy(),
            "target_rank": rank.permute(*order).reshape(-1).cpu().numpy(),
            "top_strs": [token_labels(model.tokenizer, row) for row in ids],
            "top_probs": top_probs.permute(*order, 3).reshape(-1, k).double().cpu().numpy().tolist(),
        }
    )
