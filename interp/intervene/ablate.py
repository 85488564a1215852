"""Ablations as values: zero, mean and resample ablations of heads, attention layers, MLPs, neurons and positions.

An ablation spec (:mod:`interp.intervene.specs`) is a frozen dataclass that says what it replaces (``str(spec)``
says it in words); :func:`~interp.intervene.replace.ablation_hooks` hands out the hooks that do it, and running
them is a separate step: :func:`ablate` here, or ``model.run_with_hooks``. :func:`compare_ablation` puts one
sequence's prediction with and without the ablations side by side, from one forward of both.

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

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.common.checks import check_int, check_model, check_seed, require_finite
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
from model.network.token_ids import token_labels


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


# ---------------------------------------------------------------------------------------- comparing
@dataclass(frozen=True)
class AblationComparison:
    """Output of :func:`compare_ablation`: the next-token probabilities after ``pos`` without and with the ablations
    (``frame``: ``target, target_str, prob_clean, prob_ablated``, one row per vocabulary entry, in id order), the
    mean next-token loss of both runs (None for one token) and the ``ablations`` applied."""

    frame: pd.DataFrame
    loss_clean: float | None
    loss_ablated: float | None
    ablations: tuple[Spec, ...]

    def __post_init__(self) -> None:
        columns = ["target", "target_str", "prob_clean", "prob_ablated"]
        if not isinstance(self.frame, pd.DataFrame) or list(self.frame.columns) != columns:
            raise TypeError(f"an AblationComparison's frame must be a DataFrame with the columns {columns}")


def _on_second_row(fn):
    """An ablation hook built for one sequence, applied to row 1 of a [clean, ablated] pair (row 0 stays clean)."""

    def hook(act: Tensor, hook_point) -> Tensor:
        out = act.clone()
        out[1:] = fn(act[1:], hook_point)
        return out

    return hook


def compare_ablation(
    model: MiniGPT,
    tokens: Int[Tensor, "1 pos"] | str,
    *specs: Spec,
    pos: int = -1,
    heads: object = None,
    attn_layers: object = None,
    mlps: object = None,
    neurons: object = None,
    positions: object = None,
    method: str = "zero",
    reference: Int[Tensor, "ref_batch ref_pos"] | None = None,
    seed: int = 0,
) -> AblationComparison:
    """One sequence's next-token prediction after ``pos`` (negative: from the end) without and with the ablations,
    and both losses (see :class:`AblationComparison`); the ablations are given as to :func:`ablate`, whose
    replacements they use. The clean and the ablated run are one forward of a batch of two (a mean or resample
    ablation first runs its ``reference``, as :func:`ablate` does). Runs without gradients.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> result = compare_ablation(model, "hello world", heads="0.1")
        >>> list(result.frame.columns), [str(spec) for spec in result.ablations]
        (['target', 'target_str', 'prob_clean', 'prob_ablated'], ['zero-ablate head L0H1 (its z, so its write to \
the residual stream) at all positions'])
        >>> round(float(result.frame.prob_ablated.sum()), 6), result.loss_ablated != result.loss_clean
        (1.0, True)
    """
    method = check_method(method)
    tokens = check_model(model).check_tokens(tokens)
    if tokens.shape[0] != 1:
        raise ValueError(
            f"compare_ablation compares one sequence, got a batch of {tokens.shape[0]}; pass tokens[i : i + 1]"
        )
    n_pos, at = tokens.shape[1], check_int(pos, "pos")
    if not -n_pos <= at < n_pos:
        raise IndexError(f"pos {pos} is out of range for {n_pos} tokens; valid positions are {-n_pos}..{n_pos - 1}")
    named = ((heads, HeadAblation, "head"), (attn_layers, AttnLayerAblation, None), (mlps, MLPAblation, None),
             (neurons, NeuronAblation, "neuron"), (positions, PositionAblation, "pos"))  # fmt: skip
    all_specs = [*specs, *(spec for items, cls, unit in named for spec in specs_from(items, cls, method, unit))]
    hooks = _ablation_hooks(model, all_specs, tokens, reference, check_seed(seed))
    pair = tokens.repeat(2, 1) if hooks else tokens  # nothing ablated: one row is both runs
    with torch.no_grad():
        logits = model.run_with_hooks(pair, fwd_hooks=[(name, _on_second_row(fn)) for name, fn in hooks])
        require_finite(logits, "compare_ablation", model, tokens=tokens, fwd_hooks=hooks)
        logits = logits.expand(2, -1, -1)
        losses = next_token_loss(logits, tokens.expand(2, -1), per_token=True).mean(-1).tolist() if n_pos > 1 else None
        probs = logits[:, at].double().softmax(-1).cpu().numpy()
    ids = range(model.cfg.d_vocab)
    frame = pd.DataFrame({"target": ids, "target_str": token_labels(model.tokenizer, ids), "prob_clean": probs[0],
                          "prob_ablated": probs[1]})  # fmt: skip
    clean, ablated = (None, None) if losses is None else losses
    return AblationComparison(frame, clean, ablated, tuple(all_specs))
