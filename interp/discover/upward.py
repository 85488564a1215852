"""From the middle of the model to the metric, computing only what the metric reads.

Exact edge patching runs each variant from the input it patches upwards. Below the last block every
position is needed (later keys and values read them), but the last block's attention needs queries, and
its MLP inputs, only at the positions the metric reads (``metric.read_positions``): a logit difference
at the last position then costs one query row instead of ``pos`` of them. :func:`_upward` does that for
a state at ``resid_pre``, ``attn_sum`` or ``mlp_sum`` of a block (the stages of
:mod:`interp.intervene.engine`), and unembeds only the vocabulary columns the metric reads. The tests
hold it to the model's own forward through the hooked reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from interp.common.metrics import Metric
from model.network.layers import Block
from model.network.minigpt import MiniGPT


def _rows(metric: Metric, n_pos: int) -> list[int]:
    """The positions the metric reads (all when it reads all)."""
    rows = metric.read_positions(n_pos)
    return list(range(n_pos)) if rows is None else list(rows)


def _mlp_half(block: Block, x: Tensor) -> Tensor:
    """``resid_mid -> resid_post`` (pre-norm or LayerNorm-free blocks)."""
    if block.mlp is None:
        return x
    return x + block.mlp(block.ln2(x) if block.ln2 is not None else x)


def _attention_at(block: Block, x: Tensor, rows: list[int]) -> Tensor:
    """Block attention's output ``[n, rows, d_model]`` for queries at ``rows`` only (keys and values everywhere)."""
    attn, n_pos = block.attn, x.shape[1]
    h = block.ln1(x) if block.ln1 is not None else x
    q, k, v = attn.qkv(h)  # n pos head d_head
    if attn.cfg.positional == "rotary":
        q, k = attn.rotate(q), attn.rotate(k)
    index = torch.tensor(rows, device=x.device)
    q = q.index_select(1, index)
    scores = torch.einsum("nrhe,nphe->nhrp", q, k) * attn.scale + attn.mask.index_select(0, index)[:, :n_pos]
    z = torch.einsum("nhrp,nphe->nrhe", scores.softmax(-1), v)
    return F.linear(z.flatten(2), attn.W_O.flatten(0, 1).t(), attn.b_O)


def _upward(model: MiniGPT, x: Tensor, layer: int, stage: str, rows: list[int], at_rows: bool = False) -> Tensor:
    """The final residual ``[n, rows, d_model]`` from the state ``x`` at ``stage`` of block ``layer``.

    ``at_rows``: ``x`` holds only the ``rows`` already (allowed where nothing later reads other positions: a
    state of the last block past its attention).
    """
    last = model.cfg.n_layers - 1
    index = torch.tensor(rows, device=x.device)
    if stage in ("attn_sum", "mlp_sum"):
        if layer == last:
            x = x if at_rows else x.index_select(1, index)
            return _mlp_half(model.blocks[layer], x) if stage == "attn_sum" else x
        x = _mlp_half(model.blocks[layer], x) if stage == "attn_sum" else x
        layer += 1
    for block in model.blocks[layer:last]:
        x = block(x)
    block = model.blocks[last]
    return _mlp_half(block, x.index_select(1, index) + _attention_at(block, x, rows))


def _score_rows(model: MiniGPT, resid: Tensor, metric: Metric, tokens: Tensor, unembed) -> Tensor:
    """The metric of final residuals already at the read positions: ``[variant * batch, rows, d]`` -> ``[variant]``."""
    if model.ln_final is not None:
        resid = model.ln_final(resid)
    W_U, b_U = unembed
    logits = F.linear(resid, W_U.t(), b_U)
    return metric.score(logits.unflatten(0, (-1, tokens.shape[0])), tokens)
