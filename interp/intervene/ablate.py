"""Ablations as values: zero, mean and resample ablations of heads, attention layers, MLPs, neurons and positions.

An ablation spec (:mod:`interp.intervene.specs`) is a frozen dataclass that says what it replaces (``str(spec)``
says it in words); :func:`~interp.intervene.replace.ablation_hooks` hands out the hooks that do it, and running
them is a separate step: :func:`ablate` here, or ``model.run_with_hooks``.

=====================  ===================================  ===================================
spec                   replaces                             hook
=====================  ===================================  ===================================
``HeadAblation``       head ``h``'s ``z`` (so its write)     ``blocks.l.attn.hook_z [.., h, :]``
``AttnLayerAblation``  the whole attention output           ``blocks.l.hook_attn_out``
``MLPAblation``        the whole MLP output                 ``blocks.l.hook_mlp_out``
``NeuronAblation``     one MLP neuron's activation          ``blocks.l.mlp.hook_post [.., n]``
``PositionAblation``   the residual stream at one position  ``blocks.l.hook_resid_pre [:, pos]``
=====================  ===================================  ===================================

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> from interp import HeadAblation, ablate
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> tokens = model.to_tokens("the cat sat on the mat")
    >>> print(HeadAblation(1, 2, method="zero"))
    zero-ablate head L1H2 (its z, so its write to the residual stream) at all positions
    >>> reference = model.to_tokens(["the dog sat on the log", "a bird flew to the sky"])
    >>> result = ablate(model, tokens, heads="1.2,0.3", method="mean", reference=reference)
    >>> result.logits.shape
    torch.Size([1, 23, 64])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.common.checks import check_model, check_seed, require_finite
from interp.common.metrics import Metric, as_metric
from interp.intervene.parsing import specs_from
from interp.intervene.replace import _ablation_hooks
from interp.intervene.specs import (
    AttnLayerAblation,
    HeadAblation,
    MLPAblation,
    NeuronAblation,
    PositionAblation,
    Spec,
    check_method,
)
from model.network.logits import next_token_loss
from model.network.minigpt import MiniGPT


# ---------------------------------------------------------------------------------------- running
@dataclass(frozen=True)
class AblationResult:
    """Output of :func:`ablate`: ``logits [batch, pos, d_vocab]``, mean next-token ``loss`` (None for 1 token),
    ``loss_per_token [batch, pos - 1]``, the ``tokens`` and the ``ablations`` applied."""

    logits: Float[Tensor, "batch pos d_vocab"]
    loss: float | None
    loss_per_token: Float[Tensor, "batch pos_minus_1"] | None
    tokens: Int[Tensor, "batch pos"]
    ablations: tuple[Spec, ...]

    def metric(self, metric: Metric | str | object) -> float:
        """Value of a metric (``"loss"``, ``LogitDiff(...)``, a callable) on the ablated logits."""
        return float(as_metric(metric)(self.logits, self.tokens))

    def __str__(self) -> str:
        what = "\n".join(f"  {spec}" for spec in self.ablations) or "  nothing ablated"
        return f"{what}\nloss {self.loss:.4f}" if self.loss is not None else what


def ablate(
    model: MiniGPT,
    tokens: Int[Tensor, "batch pos"] | str,
    *specs: Spec,
    heads: object = None,
    attn_layers: object = None,
    mlps: object = None,
    neurons: object = None,
    positions: object = None,
    method: str = "zero",
    reference: Int[Tensor, "ref_batch ref_pos"] | None = None,
    seed: int = 0,
) -> AblationResult:
    """Run ``model`` on ``tokens`` with the given components ablated together.

    ``heads="1.2,0.3"`` or ``[(1, 2)]``, ``neurons="1.37"``, ``positions="0.5"`` (residual entering
    layer 0 at position 5), ``mlps="0,1"``, ``attn_layers=[1]``; ``method`` applies to these, while
    spec objects passed positionally keep their own. Ablating nothing gives the plain forward's
    logits bit for bit. Runs without gradients.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> tokens = model.to_tokens("hello world")
        >>> result = ablate(model, tokens, heads="0.1", mlps=[1])
        >>> print(result)  # doctest: +ELLIPSIS
          zero-ablate head L0H1 (its z, so its write to the residual stream) at all positions
          zero-ablate the MLP output of layer 1 (including b_out) at all positions
        loss ...
    """
    method = check_method(method)
    tokens = check_model(model).check_tokens(tokens)
    all_specs = list(specs)
    all_specs += specs_from(heads, HeadAblation, method, "head")
    all_specs += specs_from(attn_layers, AttnLayerAblation, method, None)
    all_specs += specs_from(mlps, MLPAblation, method, None)
    all_specs += specs_from(neurons, NeuronAblation, method, "neuron")
    all_specs += specs_from(positions, PositionAblation, method, "pos")
    hooks = _ablation_hooks(model, all_specs, tokens, reference, check_seed(seed))
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
        require_finite(logits, "ablate", model, tokens=tokens, fwd_hooks=hooks)
        per_token = next_token_loss(logits, tokens, per_token=True) if tokens.shape[1] > 1 else None
    loss = None if per_token is None else float(per_token.mean())
    return AblationResult(logits, loss, per_token, tokens, tuple(all_specs))
