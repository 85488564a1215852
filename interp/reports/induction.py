"""The induction report: what ``minigpt train`` records for the induction task, and the README's model card.

The probe is ``[BOS, r, r]`` with ``r`` 15 random non-special tokens (:func:`probe_tokens`). On it:

- the loss on the first copy (tokens 1..15: random, ideally near ``ln(61)``) and on the second copy
  (tokens 17..30: every token of the second copy but its first, which nothing predicts; ``second_copy_all``
  includes it);
- the previous-token and induction score of every head: :func:`interp.observe.attention.head_scores`, the one
  definition of the head scores in the package;
- what zero-ablating each head of the last layer does to the second-copy loss:
  :func:`interp.intervene.sweeps.head_sweep` with that loss as the metric.

Training passes :func:`induction_report` into :func:`model.training.loop.train` (``report=``); the model knows
nothing of the analyses that judge it.

Example:
    >>> from model import MiniGPT
    >>> report = induction_report(MiniGPT.from_pretrained("induction-2l"), n_seq=64)
    >>> report["second_copy_loss"] < 0.5 < report["induction_score"][1][0]
    True
"""

from __future__ import annotations

import math
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from interp.common.checks import check_int, check_model, check_seed
from interp.common.metrics import LossAt
from interp.intervene.sweeps import head_sweep
from interp.observe.attention import head_scores
from model.network.minigpt import MiniGPT
from model.training.data import repeated_pair_batch

SEG_LEN = 15  # length of r in the probe [BOS, r, r]


def probe_tokens(n_seq: int = 512, seed: int = 1234, d_vocab: int = 64, seg_len: int = SEG_LEN) -> Int[Tensor, "b p"]:
    """``[BOS, r, r]`` with ``r`` = ``seg_len`` random non-special tokens: ``[n_seq, 1 + 2 * seg_len]``."""
    n_seq, seg_len = check_int(n_seq, "n_seq", minimum=1), check_int(seg_len, "seg_len", minimum=1)
    seed, d_vocab = check_seed(seed), check_int(d_vocab, "d_vocab", minimum=4)  # 3 specials, then the tokens
    return repeated_pair_batch(n_seq, seg_len, torch.Generator().manual_seed(seed), d_vocab=d_vocab)


def copy_losses(seg_len: int = SEG_LEN) -> dict[str, LossAt]:
    """The three loss metrics on ``[BOS, r, r]``: first copy, second copy (its first token left out), all of it."""
    seg_len = check_int(seg_len, "seg_len", minimum=2)  # the second copy without its first token is not empty
    return {
        "first_copy": LossAt(range(1, seg_len + 1)),
        "second_copy": LossAt(range(seg_len + 2, 2 * seg_len + 1)),
        "second_copy_all": LossAt(range(seg_len + 1, 2 * seg_len + 1)),
    }


@torch.no_grad()
def induction_report(model: MiniGPT, n_seq: int = 512, seed: int = 1234) -> dict[str, Any]:
    """Losses, previous-token and induction scores per head, and last-layer head ablations (see the module doc)."""
    model = check_model(model)
    n_seq, seed = check_int(n_seq, "n_seq", minimum=1), check_seed(seed)
    tokens = probe_tokens(n_seq, seed, model.cfg.d_vocab).to(model.device)
    logits = model(tokens)
    losses = {name: float(metric(logits, tokens)) for name, metric in copy_losses().items()}
    scores = head_scores(model, tokens)
    grid = {
        name: [[round(float(v), 4) for v in layer[name]] for _, layer in scores.groupby("layer", sort=True)]
        for name in ("previous_token", "induction")
    }
    last = model.cfg.n_layers - 1
    sweep = head_sweep(model, tokens, metric=copy_losses()["second_copy"], layers=[last], progress=False)
    return {
        "n_sequences": n_seq,
        "seg_len": SEG_LEN,
        **{f"{k}_loss": round(v, 4) for k, v in losses.items()},
        "ln_vocab": round(math.log(model.cfg.d_vocab), 4),
        "prev_token_score": grid["previous_token"],
        "induction_score": grid["induction"],
        f"ablate_layer{last}_head_second_copy_delta": [round(float(d), 4) for d in sweep.delta],
    }
