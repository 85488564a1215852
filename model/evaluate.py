"""Evaluation used by training: validation losses, the bigram baseline, the induction report.

All losses are in nats per predicted token (per character for text).

- :func:`text_val_loss` — mean next-character loss over the whole validation split, cut into
  consecutive windows of ``<bos>`` + ``n_ctx - 1`` characters (every character predicted once).
- :func:`bigram_baseline` — an add-``alpha`` bigram model counted on the train split and scored
  on every character of the validation split (each given the character before it).
- :func:`repeat_losses` / :func:`induction_report` — on ``[BOS, r, r]`` (``r`` 15 random
  non-special tokens): loss on the first copy (tokens 1..15, unpredictable, ideally ln 61),
  loss on the second copy (tokens 17..30: every token of the second copy but its first, which
  nothing predicts; ``second_copy_all`` includes it), the previous-token score of every head
  (mean attention from position q to q - 1, q >= 1), the induction score of every head (mean
  attention from each second-copy position q to q - 14, the token after the earlier occurrence),
  and what zero-ablating each head of the last layer (its ``hook_z``) does to the second-copy loss.

Example:
    >>> from model.data import builtin_corpus
    >>> round(bigram_baseline(builtin_corpus()), 2)
    2.28
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from model.config import ModelConfig
from model.data import TextData, repeated_pair_batch, repeated_segments_batch, text_eval_batches
from model.minigpt import MiniGPT

SEG_LEN = 15  # length of r in the induction evaluation [BOS, r, r]
SAMPLE_PROMPTS = ("the ", "a class ", "if the ")


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


@torch.no_grad()
def repeat_losses(model: MiniGPT, tokens: Tensor, fwd_hooks: list | tuple = ()) -> dict[str, float]:
    """First-copy, second-copy (tokens 17..30) and whole-second-copy losses on ``[BOS, r, r]`` tokens."""
    nll = model.run_with_hooks(tokens, fwd_hooks=fwd_hooks, return_type="loss", loss_per_token=True)
    n = (tokens.shape[1] - 1) // 2  # nll[:, p - 1] is the loss of predicting token p
    return {
        "first_copy": float(nll[:, :n].mean()),
        "second_copy": float(nll[:, n + 1 :].mean()),
        "second_copy_all": float(nll[:, n:].mean()),
    }


@torch.no_grad()
def induction_report(model: MiniGPT, n_seq: int = 512, seed: int = 1234) -> dict[str, Any]:
    """Losses, previous-token and induction scores per head, and last-layer head ablations (see module doc)."""
    tokens = repeated_pair_batch(n_seq, SEG_LEN, torch.Generator().manual_seed(seed), d_vocab=model.cfg.d_vocab)
    tokens = tokens.to(model.device)
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
    q = torch.arange(SEG_LEN + 1, 2 * SEG_LEN + 1)
    prev, induct = [], []
    for layer in range(model.cfg.n_layers):
        pattern = cache["pattern", layer]  # [batch, head, q_pos, k_pos]
        prev.append(pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean((0, 2)).tolist())
        induct.append(pattern[:, :, q, q - SEG_LEN + 1].mean((0, 2)).tolist())
    base = repeat_losses(model, tokens)
    last = model.cfg.n_layers - 1
    ablated = []
    for head in range(model.cfg.n_heads):

        def zero_head(z: Tensor, hook: Any, head: int = head) -> Tensor:
            z = z.clone()
            z[:, :, head] = 0.0
            return z

        hooked = repeat_losses(model, tokens, [(f"blocks.{last}.attn.hook_z", zero_head)])
        ablated.append(hooked["second_copy"] - base["second_copy"])
    return {
        "n_sequences": n_seq,
        "seg_len": SEG_LEN,
        **{f"{k}_loss": round(v, 4) for k, v in base.items()},
        "ln_vocab": round(math.log(model.cfg.d_vocab), 4),
        "prev_token_score": [[round(s, 4) for s in row] for row in prev],
        "induction_score": [[round(s, 4) for s in row] for row in induct],
        f"ablate_layer{last}_head_second_copy_delta": [round(d, 4) for d in ablated],
    }


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
    ) -> None:
        self.task, self.data, self.val_windows, self.samples = task, data, val_windows, samples
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
        if self.data is None:
            return {"val_loss_repeated_segments": round(self.val_loss(model), 4), **induction_report(model)}
        samples = [  # task "text" always has the character tokenizer (model.train.load_data checks)
            {"prompt": p, "temperature": 0.8, "seed": i, "text": model.generate(p, 80, temperature=0.8, seed=i)}
            for i, p in enumerate(SAMPLE_PROMPTS[: self.samples])
        ]
        return {
            "val_nats_per_char": round(self.val_loss(model), 4),
            "bigram_val_nats_per_char": round(bigram_baseline(self.data), 4),
            "val_chars": len(self.data.val),
            "samples": samples,
        }
