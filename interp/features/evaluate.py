"""How good an SAE is, by the standard figures: variance explained, L0, dead and dense features, and the
fraction of cross-entropy loss recovered when its reconstruction is spliced into the model.

On held-out tokens (the validation split of the built-in corpus, for the shipped SAEs):

- ``variance_explained`` = 1 - sum ||y - y_hat||^2 / sum ||y - mean(y)||^2, over every token (``y`` the
  activation the SAE reconstructs, at its write point);
- ``l0``: mean number of non-zero features per token;
- ``dead``: features that never fire on these tokens; ``dense``: features firing on more than
  ``dense_threshold`` (10%) of them;
- ``ce_recovered`` = (loss_zero_ablated - loss_spliced) / (loss_zero_ablated - loss_clean): 1 when splicing the
  reconstruction in costs nothing, 0 when it is as bad as zeroing the activation. Losses are the mean
  next-token loss in nats per token.

Example:
    >>> from model import MiniGPT
    >>> from interp.features.sae import SAE
    >>> model, sae = MiniGPT.from_pretrained("minigpt-text"), SAE.from_pretrained("minigpt-text-resid-post-1")
    >>> m = sae_metrics(model, model.to_tokens(["the value of the attribute is"] * 2), sae=sae)
    >>> bool(m.ce_recovered[0] > 0.5), m.hook_name[0]
    (True, 'blocks.1.hook_resid_post')
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor
from tqdm import tqdm

from interp.common.checks import check_int, check_model, require_finite
from interp.features.common import _check_sae, _write_point
from interp.features.sae import SAE


def _check_threshold(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValueError(f"dense_threshold must be a fraction in (0, 1), got {value!r}")
    return float(value)


@torch.no_grad()
def _passes(model, tokens: Tensor, sae: SAE, batch_size: int, progress: bool) -> dict[str, Tensor]:
    """Sums over every token of what the figures need, one chunk of ``batch_size`` sequences at a time."""
    write = _write_point(sae)
    names = [f"{write}.hook_sae_acts", f"{write}.hook_sae_recons", f"{write}.hook_sae_error"]
    zero = [(write, lambda act, hook: torch.zeros_like(act))]
    sums = {"sq_error": 0.0, "y": 0.0, "y2": 0.0, "n": 0, "l0": 0.0, "clean": 0.0, "spliced": 0.0, "zero": 0.0,
            "n_loss": 0, "fired": torch.zeros(sae.cfg.d_sae, dtype=torch.long)}  # fmt: skip
    for chunk in tqdm(tokens.split(batch_size), disable=not progress, desc="SAE metrics"):
        spliced, cache = model.run_with_cache_with_saes(chunk, [sae], names_filter=names, return_type="loss",
                                                        loss_per_token=True)  # fmt: skip
        acts, recons, error = (cache[n].flatten(0, 1).double() for n in names)
        y = recons + error
        sums["sq_error"] += float(error.pow(2).sum())
        sums["y"] = sums["y"] + y.sum(0)
        sums["y2"] += float(y.pow(2).sum())
        sums["n"] += len(y)
        sums["l0"] += float((acts > 0).sum())
        sums["fired"] += (acts > 0).sum(0).cpu()
        sums["clean"] += float(model(chunk, return_type="loss", loss_per_token=True).double().sum())
        sums["spliced"] += float(spliced.double().sum())
        sums["zero"] += float(model.run_with_hooks(chunk, zero, return_type="loss", loss_per_token=True).double().sum())
        sums["n_loss"] += spliced.numel()
    return sums


def sae_metrics(
    model: object,
    tokens: Int[Tensor, "batch pos"],
    *,
    sae: SAE,
    dense_threshold: float = 0.1,
    batch_size: int = 256,
    progress: bool = False,
) -> pd.DataFrame:
    """One row of the standard figures of ``sae`` on ``tokens`` (see the module docstring).

    Columns: hook_name (where it reads; a transcoder's row says ``in -> out``), architecture, d_sae,
    variance_explained, l0, dead, dense (feature counts), loss_clean, loss_spliced, loss_zero_ablated (nats per
    token) and ce_recovered.
    """
    model = check_model(model)
    sae = _check_sae(model, sae)
    tokens = model.check_tokens(tokens)
    if tokens.shape[1] < 2:
        raise ValueError("sae_metrics needs sequences of at least 2 tokens (the loss predicts the next one)")
    threshold = _check_threshold(dense_threshold)
    s = _passes(model, tokens, sae, check_int(batch_size, "batch_size", minimum=1), progress)
    mean = s["y"] / s["n"]
    variance = s["y2"] - s["n"] * float(mean.pow(2).sum())
    rate = s["fired"].double() / s["n"]
    clean, spliced, zero = (s[k] / s["n_loss"] for k in ("clean", "spliced", "zero"))
    require_finite(torch.tensor([clean, spliced, zero, float(variance)]), "sae_metrics", model, tokens=tokens[:1])
    where = sae.cfg.hook_name + (f" -> {sae.cfg.hook_name_out}" if sae.cfg.is_transcoder else "")
    return pd.DataFrame({
        "hook_name": [where], "architecture": [sae.cfg.architecture], "d_sae": [sae.cfg.d_sae],
        "variance_explained": [1 - s["sq_error"] / variance], "l0": [s["l0"] / s["n"]],
        "dead": [int((rate == 0).sum())], "dense": [int((rate > threshold).sum())], "loss_clean": [clean],
        "loss_spliced": [spliced], "loss_zero_ablated": [zero],
        "ce_recovered": [(zero - spliced) / (zero - clean) if zero != clean else float("nan")],
    })  # fmt: skip


@torch.no_grad()
def feature_summary(
    model: object, tokens: Int[Tensor, "batch pos"], *, sae: SAE, batch_size: int = 256
) -> pd.DataFrame:
    """One row per feature: how often it fires on ``tokens`` and how strongly.

    Columns: feature, firing_rate (fraction of tokens where it is > 0), mean_activation (over the tokens where
    it fires; NaN for a feature that never fires), max_activation.

    Example:
        >>> from model import MiniGPT
        >>> model, sae = MiniGPT.from_pretrained("minigpt-text"), SAE.from_pretrained("minigpt-text-resid-post-0")
        >>> summary = feature_summary(model, model.to_tokens("the value of the attribute is"), sae=sae)
        >>> len(summary) == sae.cfg.d_sae, bool(summary.firing_rate.between(0, 1).all())
        (True, True)
    """
    model = check_model(model)
    sae = _check_sae(model, sae)
    tokens = model.check_tokens(tokens)
    count = torch.zeros(sae.cfg.d_sae, dtype=torch.float64)
    total, peak, n = torch.zeros_like(count), torch.zeros_like(count), 0
    for chunk in tokens.split(check_int(batch_size, "batch_size", minimum=1)):
        _, cache = model.run_with_cache(chunk, names_filter=[sae.cfg.hook_name], return_type=None)
        acts = sae._encode(cache[sae.cfg.hook_name].to(sae.device)).flatten(0, 1).double().cpu()
        count += (acts > 0).sum(0)
        total += acts.sum(0)
        peak = torch.maximum(peak, acts.max(0).values)
        n += len(acts)
    mean = torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))
    return pd.DataFrame({"feature": np.arange(sae.cfg.d_sae), "firing_rate": (count / n).numpy(),
                         "mean_activation": mean.numpy(), "max_activation": peak.numpy()})  # fmt: skip
