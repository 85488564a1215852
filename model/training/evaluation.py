"""Evaluation used by training: validation losses and the bigram baseline.

All losses are in nats per predicted token (per character for text).

- :func:`text_val_loss` — mean next-character loss over the whole validation split, cut into
  consecutive windows of ``<bos>`` + ``n_ctx - 1`` characters (every character predicted once).
- :func:`bigram_baseline` — an add-``alpha`` bigram model counted on the train split and scored
  on every character of the validation split (each given the character before it).
- :class:`Evaluator` — what the loop calls: ``val_loss`` during training, ``final_report`` at the end. A report
  that needs an analysis (the induction report of :mod:`interp.reports.induction`) is passed in, never imported:
  the model knows nothing of the analyses that judge it.

Example:
    >>> from model.training.data import builtin_corpus
    >>> round(bigram_baseline(builtin_corpus()), 2)
    2.28
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from model.network.config import ModelConfig
from model.network.minigpt import MiniGPT
from model.training.data import TextData, repeated_segments_batch, text_eval_batches
from model.training.presets import SAMPLE_PROMPTS


def bigram_baseline(data: TextData, alpha: float = 0.1, d_vocab: int = 64) -> float:
    """Validation loss (nats/char) of an add-``alpha`` bigram model counted on ``data.train``."""
    counts = torch.full((d_vocab, d_vocab), float(alpha), dtype=torch.float64)
    counts.index_put_(
        (data.train[:-1], data.train[1:]), torch.ones(len(data.train) - 1, dtype=torch.float64), accumulate=True
    )
    logp = (counts / counts.sum(-1, keepdim=True)).log()
    prev = torch.cat([data.train[-1:], data.val[:-1]])
    return float(-logp[prev, data.val].mean())


@torch.no_grad()
def text_val_loss(model: MiniGPT, ids: Tensor, batch_size: int = 256, max_windows: int | None = None) -> float:
    """Mean next-character loss of ``model`` over consecutive windows of ``ids``."""
    total, count = 0.0, 0
    for batch in text_eval_batches(ids, model.cfg.n_ctx, batch_size, max_windows=max_windows):
        nll = model(batch.to(model.device), return_type="loss", loss_per_token=True)
        total += float(nll.sum())
        count += nll.numel()
    return total / count


class Evaluator:
    """Validation for one training task: ``val_loss(model)`` during training, ``final_report(model)`` at the end."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        task: str,
        data: TextData | None,
        seed: int = 0,
        val_windows: int | None = None,
        samples: int = len(SAMPLE_PROMPTS),
        report: Callable[[MiniGPT], dict[str, Any]] | None = None,
    ) -> None:
        self.task, self.data, self.val_windows, self.samples = task, data, val_windows, samples
        self.report = report
        if task == "induction":
            gen = torch.Generator().manual_seed(10_000 + seed)
            self.val_tokens = repeated_segments_batch(1024, model_cfg.n_ctx, gen, d_vocab=model_cfg.d_vocab)

    def val_loss(self, model: MiniGPT) -> float:
        was_training = model.training
        model.eval()
        try:
            if self.data is not None:
                return text_val_loss(model, self.data.val, max_windows=self.val_windows)
            with torch.no_grad():
                return float(model(self.val_tokens.to(model.device), return_type="loss"))
        finally:
            model.train(was_training)

    def final_report(self, model: MiniGPT) -> dict[str, Any]:
        model.eval()
        extra = self.report(model) if self.report is not None else {}
        if self.data is None:
            return {"val_loss_repeated_segments": round(self.val_loss(model), 4), **extra}
        samples = [  # task "text" always has the character tokenizer (model.train.load_data checks)
            {"prompt": p, "temperature": 0.8, "seed": i, "text": model.generate(p, 80, temperature=0.8, seed=i)}
            for i, p in enumerate(SAMPLE_PROMPTS[: self.samples])
        ]
        return {
            "val_nats_per_char": round(self.val_loss(model), 4),
            "bigram_val_nats_per_char": round(bigram_baseline(self.data), 4),
            "val_chars": len(self.data.val),
            "samples": samples,
            **extra,
        }
