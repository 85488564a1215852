"""From logits to numbers: the next-token loss and the sampling distribution behind ``MiniGPT.generate``.

Plain functions of tensors (no model): the analyses, the dashboard and training share them.

Example:
    >>> import torch
    >>> logits = torch.tensor([[[2.0, 1.0, 0.0], [0.0, 3.0, 0.0]]])
    >>> round(next_token_loss(logits, torch.tensor([[0, 1]])).item(), 4)  # -log softmax(logits[0, 0])[1]
    1.4076
    >>> sampling_probs(logits[0, 1], top_k=1)
    tensor([0., 1., 0.])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from tqdm import tqdm


def next_token_loss(
    logits: Float[Tensor, "batch pos d_vocab"],
    tokens: Int[Tensor, "batch pos"],
    *,
    per_token: bool = False,
    attention_mask: Int[Tensor, "batch pos"] | None = None,
) -> Tensor:
    """Cross-entropy of predicting ``tokens[:, 1:]`` from ``logits[:, :-1]`` (mean, or ``[batch, pos - 1]``).
    With an ``attention_mask`` (0 on padding) a prediction counts only where it and the token before are real."""
    if not isinstance(logits, Tensor) or not isinstance(tokens, Tensor):
        raise TypeError(f"next_token_loss takes tensors, got {type(logits).__name__} and {type(tokens).__name__}")
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must hold integer ids, got dtype {tokens.dtype}")
    if logits.ndim != 3 or tuple(logits.shape[:2]) != tuple(tokens.shape):
        raise ValueError(
            f"logits {tuple(logits.shape)} do not match tokens {tuple(tokens.shape)}: "
            "expected logits [batch, pos, d_vocab] and tokens [batch, pos]"
        )
    if tokens.shape[1] < 2:
        raise ValueError("the next-token loss needs at least 2 tokens per sequence")
    logprobs = logits[:, :-1].log_softmax(-1)
    nll = -logprobs.gather(-1, tokens[:, 1:, None])[..., 0]
    if attention_mask is not None:  # TransformerLens's rule: count a prediction only if both tokens are real
        if tuple(attention_mask.shape) != tuple(tokens.shape):
            raise ValueError(f"attention_mask {tuple(attention_mask.shape)} must match tokens {tuple(tokens.shape)}")
        keep = (attention_mask[:, :-1].bool() & attention_mask[:, 1:].bool()).to(nll.device)
        nll = nll * keep
        return nll if per_token else nll.sum() / keep.sum()
    return nll if per_token else nll.mean()


def check_sampling_args(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """TypeError/ValueError naming a sampling argument that is not usable (see :func:`sampling_probs`)."""
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if (value is not None or name == "temperature") and (
            isinstance(value, bool) or not isinstance(value, numbers.Real)
        ):
            raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not 0 <= temperature < math.inf:
        raise ValueError(f"temperature must be >= 0 and finite, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


def sampling_probs(
    logits: Float[Tensor, "... d_vocab"],
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> Float[Tensor, "... d_vocab"]:
    """Next-token probabilities after temperature, top-k and top-p (nucleus) filtering.

    ``temperature=0`` puts all mass on the argmax. Tokens outside the top-k, or outside the
    smallest set whose probability reaches ``top_p``, get probability 0.
    """
    check_sampling_args(temperature, top_k, top_p)
    logits = logits.float()
    if temperature == 0:
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    if top_p is not None and top_p < 1:
        sorted_probs, order = probs.sort(-1, descending=True)
        before = sorted_probs.cumsum(-1) - sorted_probs  # mass strictly above each token
        drop = (before >= top_p).scatter(-1, order, before >= top_p)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def sample_tokens(
    next_logits: Callable[[Int[Tensor, "batch pos"]], Float[Tensor, "batch d_vocab"]],
    tokens: Int[Tensor, "batch pos"],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop_token: int | None = None,
    progress: bool = False,
) -> Int[Tensor, "batch pos"]:
    """``tokens`` extended by ``max_new_tokens`` samples, each drawn from :func:`sampling_probs` of
    ``next_logits(tokens so far)``; ``temperature=0`` is greedy, ``seed`` makes it reproducible.
    With ``stop_token`` a sequence that sampled it is padded with it from then on, and sampling stops when every
    sequence has (TransformerLens's ``stop_at_eos``); ``progress`` shows a tqdm bar.

    Example:
        >>> grow = lambda t: torch.nn.functional.one_hot(t[:, -1] + 1, 8).float() * 10  # always "the next id"
        >>> sample_tokens(grow, torch.tensor([[0]]), 3, temperature=0).tolist()
        [[0, 1, 2, 3]]
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative int, got {max_new_tokens!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise ValueError(f"seed must be None or an int in [0, 2**63), got {seed!r}")
    check_sampling_args(temperature, top_k, top_p)
    generator = torch.Generator(device=tokens.device)
    # seed=None draws the seed from the global RNG (torch.seed() would re-seed it, clobbering the user's seed)
    generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, ()).item()))
    finished = torch.zeros(tokens.shape[0], 1, dtype=torch.bool, device=tokens.device)
    for _ in tqdm(range(max_new_tokens), disable=not progress, desc="generate", leave=False):
        probs = sampling_probs(next_logits(tokens), temperature=temperature, top_k=top_k, top_p=top_p)
        greedy = temperature == 0
        nxt = probs.argmax(-1, keepdim=True) if greedy else torch.multinomial(probs, 1, generator=generator)
        if stop_token is not None:
            nxt = nxt.masked_fill(finished, stop_token)
            finished = finished | (nxt == stop_token)
        tokens = torch.cat([tokens, nxt], dim=1)
        if stop_token is not None and bool(finished.all()):
            break
    return tokens
