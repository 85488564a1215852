"""Dead features in SAE training (private helpers of the loop, which checks their inputs): reviving them by
resampling, and AuxK's auxiliary loss.

A feature is *dead* when it has not fired for a number of steps (the training loop counts them). Two remedies:

- :func:`_resample_features` (Bricken et al. 2023, "Towards Monosemanticity"): each dead feature starts again
  from an input the SAE reconstructs badly, picked with probability proportional to its squared error: its
  decoder row the normalised residual error there, its encoder column that input's direction (scaled), its bias
  0, its Adam moments cleared. An SAE subtracts ``b_dec`` from its input, so that direction is centred already; a
  transcoder reads its raw input (an MLP's, after a LayerNorm: its mean is large), so the direction is the
  input's deviation from the batch mean and the bias subtracts the mean's projection. Otherwise the new feature
  fires on nearly every token.
- :func:`_auxk_loss` (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): the ``aux_k`` largest dead
  features (by pre-activation) reconstruct the residual error ``y - y_hat`` (no bias), which gives them a
  gradient towards what the live features miss.

Example:
    >>> import torch
    >>> from interp.features.config import SAEConfig
    >>> from interp.features.sae import SAE
    >>> sae = SAE(SAEConfig("topk", d_in=4, d_sae=8, hook_name="x", k=2), seed=0)
    >>> x = torch.randn(16, 4)
    >>> error = sae(x) - x
    >>> float(_auxk_loss(sae, x, error, torch.zeros(8, dtype=torch.bool), aux_k=2))  # nothing dead: no loss
    0.0
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.features.sae import SAE


def _auxk_loss(
    sae: SAE, x: Float[Tensor, "batch d_in"], error: Float[Tensor, "batch d_out"], dead: Bool[Tensor, " d_sae"],
    aux_k: int,
) -> Float[Tensor, ""]:  # fmt: skip
    """``||e - e_hat||^2`` (summed over dimensions, averaged over the batch): ``e = -error`` the residual
    (detached; ``error = y_hat - y``), ``e_hat`` the decoding (no bias) of the ``aux_k`` largest dead features."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return error.new_zeros(())
    pre = sae._pre(x).masked_fill(~dead, float("-inf"))
    values, index = pre.topk(min(aux_k, n_dead), dim=-1)
    aux = torch.zeros_like(pre).scatter(-1, index, torch.relu(values))
    return (aux @ sae.W_dec + error.detach()).pow(2).sum(-1).mean()


@torch.no_grad()
def _resample_features(
    sae: SAE, opt: torch.optim.Optimizer, dead: Bool[Tensor, " d_sae"], x: Float[Tensor, "batch d_in"],
    error: Float[Tensor, "batch d_out"], *, gain: float, generator: torch.Generator,
) -> int:  # fmt: skip
    """Resample the ``dead`` features of ``sae`` in place (see the module docstring); returns how many.

    ``gain``: the new encoder columns' norm, as a fraction of the live features' mean encoder norm.
    """
    index = dead.nonzero()[:, 0]
    if len(index) == 0:
        return 0
    weights = error.pow(2).sum(-1).cpu().double()
    picks = torch.multinomial(weights / weights.sum(), len(index), replacement=True, generator=generator)
    picks = picks.to(x.device)
    centre = sae.b_dec if sae.cfg.apply_b_dec_to_input else x.mean(0)
    inputs = x[picks] - centre
    norm = sae.W_enc[:, ~dead].norm(dim=0).mean() if bool((~dead).any()) else torch.tensor(1.0)
    sae.W_dec[index] = -error[picks] / error[picks].norm(dim=-1, keepdim=True).clamp_min(1e-8)
    sae.W_enc[:, index] = (inputs / inputs.norm(dim=-1, keepdim=True).clamp_min(1e-8)).T * norm * gain
    sae.b_enc[index] = 0.0 if sae.cfg.apply_b_dec_to_input else -(centre @ sae.W_enc[:, index])
    for param, where in ((sae.W_dec, (index,)), (sae.W_enc, (slice(None), index)), (sae.b_enc, (index,))):
        for moment in ("exp_avg", "exp_avg_sq"):
            if moment in opt.state.get(param, {}):
                opt.state[param][moment][where] = 0.0
    return len(index)
