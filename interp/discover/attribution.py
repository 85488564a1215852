"""Edge attribution patching: EAP (Syed et al. 2023) and EAP-IG (Hanna et al. 2024), every edge at once.

Corrupting edge ``(u, d)`` adds ``delta_u = corrupted write_u - clean write_u`` to input ``d``. To first
order that changes the metric by ``delta_u . dM/d input_d``, summed over batch and positions, so one
gradient per *input* scores every edge into it:

- **EAP**: the gradient at the clean pass. Cost: one corrupted forward (no graph), one clean forward with a
  graph, one backward, whatever the number of edges.
- **EAP-IG**: the gradient averaged over ``steps`` runs whose token embeddings are interpolated from the
  corrupted to the clean ones (``alpha = 1/steps, 2/steps, ..., 1``), all in one batch, then one backward.
  It reaches edges whose gradient vanishes at the clean pass: a saturated attention pattern (a hard
  previous-token or induction head) has almost no gradient, though moving its inputs far changes a lot.

The gradient with respect to an input is read where the input is used, then taken back through the
LayerNorm by hand: ``dM/d q_h`` (``attn.hook_q``, before rotary) times ``W_Q[h]^T``, then ``ln1``'s
backward at that run's ``resid_pre``; ``dM/d ln2.hook_normalized`` (the MLP's only reader, so the backward has
already taken it through ``W_in``; ``dM/d mlp.hook_pre`` times ``W_in^T`` without a LayerNorm) and ``ln2``'s
backward; the final residual's gradient as it is. So each head's q, k and v input gets its own gradient though the
three share one residual stream.

Columns: ``upstream, downstream, score`` (the estimated ``metric_patched - metric_clean``, signed, in metric
units, comparable with :func:`~interp.discover.patching.edge_patching`'s ``score``), ``abs_score``.

Example:
    >>> import torch
    >>> from model import MiniGPT
    >>> from interp import LossAt
    >>> from model.training.data import repeated_pair_batch
    >>> model = MiniGPT.from_pretrained("induction-2l")
    >>> clean = repeated_pair_batch(8, 15, torch.Generator().manual_seed(0))
    >>> corrupted = repeated_pair_batch(8, 15, torch.Generator().manual_seed(1))
    >>> eap = edge_attribution_patching(model, clean, corrupted, LossAt(range(17, 31)))
    >>> eap.nlargest(1, "abs_score")[["upstream", "downstream"]].values.tolist()
    [['L1H0', 'logits']]
"""

from __future__ import annotations

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.common.checks import check_int, require_finite
from interp.discover.graph import EdgeGraph
from interp.discover.recording import MetricLike, _check_pair, _edge_frame, _node_writes, _record_pass, _recorded_names
from interp.intervene.engine import score_final
from model.network.layers import LayerNorm
from model.network.minigpt import MiniGPT

METHODS = ("eap", "eap-ig")
DEFAULT_IG_STEPS = 5


def _ln_backward(grad: Tensor, x: Tensor, ln: LayerNorm | None) -> Tensor:
    """``grad`` (with respect to ``ln(x)``) taken back to ``x`` (no LayerNorm: ``grad`` itself)."""
    return grad if ln is None else ln.input_grad(grad, x)


def _grad_names(graph: EdgeGraph) -> list[str]:
    """The activations whose gradients score the inputs, in input order (q, k, v per layer; MLP pre; final)."""
    names = []
    for layer in range(graph.cfg.n_layers):
        names += [f"blocks.{layer}.attn.hook_{s}" for s in "qkv"]
        if not graph.cfg.attn_only:
            names.append(f"blocks.{layer}.ln2.hook_normalized" if graph.cfg.has_ln else f"blocks.{layer}.mlp.hook_pre")
    return [*names, f"blocks.{graph.cfg.n_layers - 1}.hook_resid_post"]


def _interpolating_run(model: MiniGPT, clean: Tensor, corr_embed: Tensor, steps: int, names: list[str]):
    """The clean tokens ``steps`` times over, token embeddings ``corrupted + alpha (clean - corrupted)``, with a graph
    from the embedding up: ``(stacked batch metric input, {name: activation})``."""
    alphas = torch.arange(1, steps + 1, dtype=corr_embed.dtype, device=corr_embed.device) / steps

    def mix(act: Tensor, hook) -> Tensor:
        act = act.unflatten(0, (steps, -1))
        act = corr_embed + alphas[:, None, None, None] * (act - corr_embed)
        return act.flatten(0, 1).detach().requires_grad_(True)  # the graph starts here (frozen weights work too)

    with torch.enable_grad(), model.hooks([("hook_embed", mix)]):
        store = _record_pass(model, clean.repeat(steps, 1), names)
    return store


def _head_scores(block, pre: Tensor, grads: list[Tensor], delta: Tensor, steps: int) -> Tensor:
    """Scores ``[node, head * 3 + q/k/v]`` of every edge into one layer's heads, without forming each input's
    gradient in the residual stream: with ``g_s`` the gradient of q/k/v (``[step * batch, pos, head, d_head]``),
    the gradient of input ``s, h`` is ``ln1``'s backward of ``w * (W_s[h] g)``, i.e.
    ``rstd * (gw - mean(gw) - xhat * mean(gw * xhat))``; its dot product with a delta splits into one matmul
    (``delta . rstd gw``, summed over the steps in head space) and two small ones (``mean`` terms times
    ``sum(delta)`` and ``delta . xhat``), where both means are head-space dot products."""
    attn, ln = block.attn, block.ln1
    n_heads, d_model, d_head = attn.cfg.n_heads, attn.cfg.d_model, attn.cfg.d_head
    weight = torch.stack([attn.W_Q, attn.W_K, attn.W_V], dim=1)  # head 3 d_model d_head: slots in edge order
    g = torch.stack(grads, dim=3)  # (step batch) pos head 3 d_head
    flat = delta.flatten(1)  # node (batch pos d_model)

    def widen(head_space: Tensor, matrix: Tensor) -> Tensor:  # slot (batch pos d_model), summed over the steps
        summed = head_space if steps == 1 else head_space.unflatten(0, (steps, -1)).sum(0)
        summed = summed.reshape(-1, 3 * n_heads, d_head).transpose(0, 1).contiguous()  # contiguous: a fast bmm
        return torch.bmm(summed, matrix.reshape(3 * n_heads, d_model, d_head).transpose(1, 2).contiguous()).flatten(1)

    if ln is None:
        return flat @ widen(g, weight).t()
    xhat, rstd = ln.standardize(pre)  # rstd: (step batch) pos 1
    g = g * rstd[..., None, None]
    gw = widen(g, weight * ln.w[:, None])  # slot (batch pos d_model): rstd * w * (W g), summed over the steps
    m1 = (g * (ln.w @ weight)).sum(-1).flatten(2)  # rstd * mean(gw) * d_model: (step batch) pos slot
    if steps == 1:  # mean(gw * xhat) straight from gw; with several steps each step has its own xhat
        m2 = (gw.view(3 * n_heads, -1, d_model) * xhat.reshape(1, -1, d_model)).sum(-1).t()
    else:
        m2 = (g * torch.einsum("bpd,hsde->bphse", xhat * ln.w, weight)).sum(-1).flatten(2).flatten(0, 1)
    sums = delta.sum(-1).flatten(1)  # node (batch pos)
    dots = torch.einsum("nbpd,sbpd->nsbp", delta, xhat.unflatten(0, (steps, -1))).flatten(1)  # node (step batch pos)
    m1 = m1.unflatten(0, (steps, -1)).sum(0).flatten(0, 1)  # (batch pos) slot
    return flat @ gw.t() - (sums @ m1 + dots @ m2) / d_model


def _edge_scores(
    model: MiniGPT, graph: EdgeGraph, store: dict[str, Tensor], grads: list[Tensor | None], delta: Tensor, steps: int
) -> Float[Tensor, " edge"]:
    """``delta_u . mean gradient of input d`` for every edge, in edge order (inputs read a prefix of the nodes)."""
    names, out, i = _grad_names(graph), [], 0
    grads = [g if g is not None else torch.zeros_like(store[n]) for g, n in zip(grads, names, strict=True)]
    for layer, block in enumerate(model.blocks):
        n = graph.attn_reads(layer)
        pre = store[f"blocks.{layer}.hook_resid_pre"]
        out.append(_head_scores(block, pre, grads[i : i + 3], delta[:n], steps).t().flatten())
        i += 3
        if block.mlp is not None:
            back = grads[i] if block.ln2 is not None else grads[i] @ block.mlp.W_in.t()
            mid = store[f"blocks.{layer}.hook_resid_mid"]
            g = _ln_backward(back, mid, block.ln2).unflatten(0, (steps, -1)).sum(0)
            out.append(delta[: graph.mlp_reads(layer)].flatten(1) @ g.flatten())
            i += 1
    out.append(delta.flatten(1) @ grads[i].unflatten(0, (steps, -1)).sum(0).flatten())
    return torch.cat(out) / steps


def _check_steps(method: object, steps: object) -> int:
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {list(METHODS)}")
    if steps is None:
        return 1 if method == "eap" else DEFAULT_IG_STEPS
    steps = check_int(steps, "steps", minimum=1)
    if method == "eap" and steps != 1:
        raise ValueError(f"steps={steps} is for method='eap-ig'; plain EAP takes one gradient (steps=None or 1)")
    return steps


def edge_attribution_patching(
    model: MiniGPT,
    clean: Int[Tensor, "batch pos"] | str,
    corrupted: Int[Tensor, "batch pos"] | str,
    metric: MetricLike,
    method: str = "eap",
    steps: int | None = None,
) -> pd.DataFrame:
    """Estimated effect of corrupting each edge, every edge at once: ``method="eap"`` (gradient at the clean pass)
    or ``"eap-ig"`` (integrated gradients over ``steps`` interpolated embeddings, default 5); see the module doc.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> frame = edge_attribution_patching(model, "abcabc", "abdabd", "loss", method="eap-ig", steps=3)
        >>> list(frame.columns), len(frame)
        (['upstream', 'downstream', 'score', 'abs_score'], 137)
    """
    if torch.is_inference_mode_enabled():
        raise ValueError("edge attribution patching needs gradients; call it outside torch.inference_mode()")
    model, graph, clean, corrupted, metric = _check_pair(model, clean, corrupted, metric)
    steps = _check_steps(method, steps)
    names = _recorded_names(graph)
    with torch.inference_mode():  # the corrupted pass needs no graph
        corr = _record_pass(model, corrupted, names)
    store = _interpolating_run(model, clean, corr["hook_embed"], steps, [*names, *_grad_names(graph)])
    grad_names = _grad_names(graph)
    with torch.enable_grad():
        values = score_final(model, store[names[-1]].unflatten(0, (steps, -1)), metric, clean)
        targets = [store[n] for n in grad_names]
        grads = torch.autograd.grad(values.sum(), targets, allow_unused=True)
    delta = _node_writes(model, graph, {n: store[n].detach().unflatten(0, (steps, -1))[-1] for n in names}, corr)
    del corr
    with torch.no_grad():
        detached = {k: v.detach() for k, v in store.items()}
        scores = _edge_scores(model, graph, detached, list(grads), delta, steps)
    require_finite(scores, "edge_attribution_patching", model, tokens=clean)
    return _edge_frame(graph, range(graph.n_edges), scores)
