"""The masked forward: a run in which every edge is clean or corrupted, many masks in one batch.

A mask gives each edge a weight ``m`` (1 = the edge carries its upstream node's value in this run, 0 = it
carries the node's value on the corrupted tokens). Every input then has a residual stream of its own::

    input_d = corrupted input_d + sum over the nodes u that d reads of  m[u, d] * (write_u - corrupted write_u)

(the corrupted input is the corrupted run's ``hook_resid_pre`` / ``hook_resid_mid`` / final residual, so
the constant biases are in it). With every ``m = 1`` this is the clean forward, with every ``m = 0`` the
corrupted one. Heads are computed from three separate inputs (``q``, ``k``, ``v``), each through the
block's LayerNorm, and a node's write is recomputed from its own inputs, so a corrupted edge changes
everything downstream of it through the edges that stay clean — the semantics of ACDC and auto-circuit.

``masks [variant, edge]`` are stacked in the batch: one pass runs many masks at once (chunked so that the
per-variant streams fit a memory budget).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from interp.common.metrics import Metric
from interp.discover.runs import _Runs, _score_final
from interp.intervene.engine import unembedding
from model.network.layers import Attention
from model.network.minigpt import MiniGPT

CPU_BUDGET = 64 * 2**20  # bytes of per-variant streams in one chunk on CPU
ACCELERATOR_BUDGET = 1024 * 2**20


def _variants_per_chunk(model: MiniGPT, runs: _Runs) -> int:
    graph, cfg = runs.graph, model.cfg
    per_variant = runs.tokens.numel() * cfg.d_model * (len(graph.upstream) + 9 * cfg.n_heads + 4)
    budget = CPU_BUDGET if model.device.type == "cpu" else ACCELERATOR_BUDGET
    return max(1, budget // (per_variant * model.W_E.element_size()))


def _heads(attn: Attention, inputs: Float[Tensor, "variant head 3 batch pos d_model"]) -> Tensor:
    """Every head's write ``[variant, batch, pos, head, d_model]`` from its own q, k and v inputs (after LN)."""
    n_var, n_heads, _, batch, n_pos, _ = inputs.shape
    weight = torch.stack([attn.W_Q, attn.W_K, attn.W_V], dim=1)  # head 3 d_model d_head
    proj = torch.einsum("vhsbpd,hsde->svbphe", inputs, weight)
    if attn.b_Q is not None:
        proj = proj + torch.stack([attn.b_Q, attn.b_K, attn.b_V])[:, None, None, None]
    q, k, v = (x.reshape(n_var * batch, n_pos, n_heads, -1) for x in proj.unbind(0))
    if attn.cfg.positional == "rotary":
        q, k = attn.rotate(q), attn.rotate(k)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (variant batch) head pos d_head
    scores = torch.baddbmm(
        attn.mask[:n_pos, :n_pos], q.flatten(0, 1), k.flatten(0, 1).transpose(1, 2), alpha=attn.scale
    )
    z = (scores.softmax(-1) @ v.flatten(0, 1)).view(n_var * batch, n_heads, n_pos, -1).transpose(1, 2)
    return torch.einsum("bphe,hed->bphd", z, attn.W_O).reshape(n_var, batch, n_pos, n_heads, -1)


def _mix(masks: Tensor, diffs: Tensor, base: Tensor) -> Tensor:
    """``base + sum_u masks[v, s, u] * diffs[v, u]``: ``[variant, slot, *base.shape]``."""
    mixed = torch.bmm(masks, diffs)  # variant slot (batch pos d_model)
    return mixed.view(*mixed.shape[:2], *base.shape) + base


def _masked_chunk(model: MiniGPT, runs: _Runs, masks: Tensor, metric: Metric, unembed) -> Tensor:
    graph, cfg = runs.graph, model.cfg
    n_var, (batch, n_pos) = masks.shape[0], runs.tokens.shape
    n_heads, width = cfg.n_heads, runs.tokens.numel() * cfg.d_model
    first = (runs.clean_writes[: graph.n_first] - runs.corr_writes[: graph.n_first]).reshape(graph.n_first, width)
    diffs = list(first[None].expand(n_var, -1, -1).unbind(1))  # per node: its write minus its corrupted write
    done = 0  # inputs handled
    for layer, block in enumerate(model.blocks):
        b, n = f"blocks.{layer}.", graph.attn_reads(layer)
        off = graph.offsets[done]
        slot_masks = masks[:, off : off + 3 * n_heads * n].view(n_var, 3 * n_heads, n)
        x = _mix(slot_masks, torch.stack(diffs, 1), runs.corr[b + "hook_resid_pre"])  # variant slot batch pos d
        if block.ln1 is not None:
            x = block.ln1(x)
        result = _heads(block.attn, x.view(n_var, n_heads, 3, batch, n_pos, -1))  # variant batch pos head d
        head0 = graph.head_node(layer, 0)
        corr = runs.corr_writes[head0 : head0 + n_heads].permute(1, 2, 0, 3)  # batch pos head d_model
        diffs += list((result - corr).permute(3, 0, 1, 2, 4).reshape(n_heads, n_var, width).unbind(0))
        done += 3 * n_heads
        if block.mlp is not None:
            off, n = graph.offsets[done], graph.mlp_reads(layer)
            x = _mix(masks[:, None, off : off + n], torch.stack(diffs, 1), runs.corr[b + "hook_resid_mid"])[:, 0]
            out = block.mlp(block.ln2(x) if block.ln2 is not None else x)
            diffs.append((out - runs.corr_writes[graph.mlp_node(layer)]).reshape(n_var, width))
            done += 1
    off = graph.offsets[done]
    final = _mix(masks[:, None, off:], torch.stack(diffs, 1), runs.corr[runs.final_name])[:, 0]
    return _score_final(model, final, metric, runs.tokens, unembed)


def _masked_metrics(
    model: MiniGPT, runs: _Runs, masks: Float[Tensor, "variant edge"], metric: Metric, on_chunk=None
) -> Float[Tensor, " variant"]:
    """The metric of each mask's run (read against the clean tokens), in chunks of variants, without gradients."""
    if masks.ndim != 2 or masks.shape[1] != runs.graph.n_edges:
        raise ValueError(f"masks must be [variant, {runs.graph.n_edges} edges], got {tuple(masks.shape)}")
    masks = masks.to(dtype=runs.clean_writes.dtype, device=runs.clean_writes.device)
    per_chunk, values = _variants_per_chunk(model, runs), []
    unembed = unembedding(model, metric)
    with torch.no_grad():
        for start in range(0, masks.shape[0], per_chunk):
            chunk = masks[start : start + per_chunk]
            values.append(_masked_chunk(model, runs, chunk, metric, unembed))
            if on_chunk is not None:
                on_chunk(chunk.shape[0])
    return torch.cat(values) if values else masks.new_zeros(0)


def _circuit_mask(n_edges: int, keep: list[int], like: Tensor) -> Tensor:
    """``[1, edge]``: 1 on the edges kept (clean), 0 on every other edge (corrupted)."""
    mask = torch.zeros(1, n_edges, dtype=like.dtype, device=like.device)
    mask[0, keep] = 1.0
    return mask
