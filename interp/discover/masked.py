"""The masked forward: a pass in which every edge is clean or corrupted, many masks in one batch.

A mask gives each edge a weight ``m`` (1 = the edge carries its upstream node's value in this pass, 0 = it
carries the node's value on the corrupted tokens). Every input then has a residual stream of its own::

    input_d = corrupted input_d + sum over the nodes u that d reads of  m[u, d] * (write_u - corrupted write_u)

(the corrupted input is the corrupted pass's ``hook_resid_pre`` / ``hook_resid_mid`` / final residual, so
the constant biases are in it). With every ``m = 1`` this is the clean forward, with every ``m = 0`` the
corrupted one. Heads are computed from three separate inputs (``q``, ``k``, ``v``: the attention's split input,
:meth:`~model.network.attention.Attention.qkv_split`), each through the block's LayerNorm, and a node's write is
recomputed from its own inputs, so a corrupted edge changes everything downstream of it through the edges that stay
clean — the semantics of ACDC and auto-circuit. The attention and the MLP are the model's own steps.

``masks [variant, edge]`` are stacked in the batch: one pass runs many masks at once, run by the engine of
:mod:`interp.intervene.engine` from the final residual each mask builds, in chunks that keep the per-variant
streams within a memory budget.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from interp.common.metrics import Metric
from interp.discover.recording import _Recording
from interp.intervene.engine import run_variants
from model.network.minigpt import MiniGPT

CPU_BUDGET = 64 * 2**20  # bytes of per-variant streams in one chunk on CPU
ACCELERATOR_BUDGET = 1024 * 2**20


def _sequences_per_chunk(model: MiniGPT, recording: _Recording) -> int:
    """Sequences (variants x batch) per chunk so that the per-variant streams of a chunk fit the budget."""
    graph, cfg = recording.graph, model.cfg
    per_variant = recording.tokens.numel() * cfg.d_model * (len(graph.upstream) + 9 * cfg.n_heads + 4)
    budget = CPU_BUDGET if model.device.type == "cpu" else ACCELERATOR_BUDGET
    return max(1, budget // (per_variant * model.W_E.element_size())) * recording.tokens.shape[0]


def _mix(masks: Tensor, diffs: Tensor, base: Tensor) -> Tensor:
    """``base + sum_u masks[v, s, u] * diffs[v, u]``: ``[variant, slot, *base.shape]``."""
    mixed = torch.bmm(masks, diffs)  # variant slot (batch pos d_model)
    return mixed.view(*mixed.shape[:2], *base.shape) + base


def _masked_final(model: MiniGPT, recording: _Recording, masks: Float[Tensor, "variant edge"]) -> Tensor:
    """The final residual ``[variant, batch, pos, d_model]`` of each mask's pass."""
    graph, cfg = recording.graph, model.cfg
    n_var, (batch, n_pos) = masks.shape[0], recording.tokens.shape
    n_heads, width = cfg.n_heads, recording.tokens.numel() * cfg.d_model
    clean, corr = recording.clean_writes[: graph.n_first], recording.corr_writes[: graph.n_first]
    first = (clean - corr).reshape(graph.n_first, width)
    diffs = list(first[None].expand(n_var, -1, -1).unbind(1))  # per node: its write minus its corrupted write
    done = 0  # inputs handled
    for layer, block in enumerate(model.blocks):
        b, n = f"blocks.{layer}.", graph.attn_reads(layer)
        off = graph.offsets[done]
        slot_masks = masks[:, off : off + 3 * n_heads * n].view(n_var, 3 * n_heads, n)
        x = _mix(slot_masks, torch.stack(diffs, 1), recording.corr[b + "hook_resid_pre"])  # variant slot batch pos d
        x = block.attn_input(x).view(n_var, n_heads, 3, batch, n_pos, -1)  # slots in edge order: head, then q/k/v
        q, k, v = (x[:, :, s].permute(0, 2, 3, 1, 4).flatten(0, 1) for s in range(3))  # (variant batch) pos head d
        attn = block.attn
        q, k, v = attn.qkv_split(q, k, v)
        if cfg.positional == "rotary":
            q, k = attn.rotate(q), attn.rotate(k)
        result = attn.write(attn.mix(attn.pattern(attn.scores(q, k)), v), per_head=True)  # (variant batch) pos head d
        head0 = graph.head_node(layer, 0)
        corr_heads = recording.corr_writes[head0 : head0 + n_heads].permute(1, 2, 0, 3)  # batch pos head d_model
        change = result.view(n_var, batch, n_pos, n_heads, -1) - corr_heads
        diffs += list(change.permute(3, 0, 1, 2, 4).reshape(n_heads, n_var, width).unbind(0))
        done += 3 * n_heads
        if block.mlp is not None:
            off, n = graph.offsets[done], graph.mlp_reads(layer)
            x = _mix(masks[:, None, off : off + n], torch.stack(diffs, 1), recording.corr[b + "hook_resid_mid"])[:, 0]
            diffs.append((block.mlp_write(x) - recording.corr_writes[graph.mlp_node(layer)]).reshape(n_var, width))
            done += 1
    off = graph.offsets[done]
    return _mix(masks[:, None, off:], torch.stack(diffs, 1), recording.corr[recording.final_name])[:, 0]


def _masked_metrics(
    model: MiniGPT, recording: _Recording, masks: Float[Tensor, "variant edge"], metric: Metric, on_chunk=None
) -> Float[Tensor, " variant"]:
    """The metric of each mask's pass (read against the clean tokens), in chunks of variants, without gradients."""
    if masks.ndim != 2 or masks.shape[1] != recording.graph.n_edges:
        raise ValueError(f"masks must be [variant, {recording.graph.n_edges} edges], got {tuple(masks.shape)}")
    masks = masks.to(dtype=recording.clean_writes.dtype, device=recording.clean_writes.device)
    with torch.no_grad():
        return run_variants(
            model, lambda start, stop: _masked_final(model, recording, masks[start:stop]), masks.shape[0], 0, "final",
            metric, recording.tokens, _sequences_per_chunk(model, recording), on_chunk,
        )  # fmt: skip


def _circuit_mask(n_edges: int, keep: list[int], like: Tensor) -> Tensor:
    """``[1, edge]``: 1 on the edges kept (clean), 0 on every other edge (corrupted)."""
    mask = torch.zeros(1, n_edges, dtype=like.dtype, device=like.device)
    mask[0, keep] = 1.0
    return mask
