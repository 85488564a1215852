"""The logit lens: the residual stream read out early, through the final LayerNorm and the unembedding.

Stage ``s`` is the residual after the embeddings and the first ``s`` blocks (``L{s}.resid_pre``; the last stage
is the final ``resid_post``). Each is normalised by ``ln_final`` with its *own* scale (the usual logit lens;
``norm="none"`` and ``"post"`` models have no final LayerNorm, so the stage goes straight to ``W_U``) and turned
into probabilities. The last stage reproduces the model's output; :func:`next_token_distribution` reads that
output at one position, with the probabilities sampling draws from.

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

from interp.common.checks import check_int, prepare, require_finite
from interp.observe.dla import TargetLike, cache_logits, resolve_target
from interp.observe.residual import _accumulated, _final_resid_name, pos_strings
from model.network.cache import ActivationCache
from model.network.labels import component_label
from model.network.logits import sampling_probs
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


@torch.no_grad()
def next_token_distribution(
    model: MiniGPT,
    tokens: Int[Tensor, "batch pos"] | str,
    pos: int = -1,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    cache: ActivationCache | None = None,
    batch: int = 0,
) -> pd.DataFrame:
    """The model's prediction after ``pos`` (negative: from the end) of sequence ``batch``, and what sampling draws
    from there: one row per vocabulary entry, highest logit first. Columns: ``target``, ``target_str``, ``logit``,
    ``target_prob`` (the softmax of the logits) and ``sample_prob`` (after ``temperature``, ``top_k`` and
    ``top_p``, as ``model.generate`` samples). Reads only the final residual, from ``cache`` when one is given.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> dist = next_token_distribution(model, "hello", top_k=2)
        >>> top = int(model(model.to_tokens("hello"))[0, -1].argmax())
        >>> int(dist.target[0]) == top, int((dist.sample_prob > 0).sum())
        (True, 2)
    """
    model, tokens, cache = prepare(model, tokens, cache, names_filter=lambda name: name.endswith("hook_resid_post"),
                                   what="next_token_distribution")  # fmt: skip
    n_batch, n_pos = tokens.shape
    batch, at = check_int(batch, "batch", minimum=0), check_int(pos, "pos")
    if batch >= n_batch or not -n_pos <= at < n_pos:
        raise IndexError(f"(batch, pos) = ({batch}, {pos}) is out of range for tokens of shape {(n_batch, n_pos)}")
    logits = model.read_out(cache[_final_resid_name(model)][batch, at]).double()
    require_finite(logits, "next_token_distribution", model, cache=cache)
    sampled = sampling_probs(logits, temperature=temperature, top_k=top_k, top_p=top_p)
    order = torch.argsort(logits, descending=True, stable=True)
    ids = order.tolist()
    return pd.DataFrame(
        {
            "target": ids,
            "target_str": token_labels(model.tokenizer, ids),
            "logit": logits[order].numpy(),
            "target_prob": logits.softmax(-1)[order].numpy(),
            "sample_prob": sampled[order].numpy(),
        }
    )
