"""Metrics of a forward pass: small functions of ``(logits, tokens)`` that ablations, sweeps and patching share.

A metric turns ``logits [batch, pos, d_vocab]`` into one number (a mean over the batch). Each one
also says what it reads, so that batched sweeps compute only that: ``columns`` (the vocabulary ids
it looks at, or None for the whole distribution) and ``read_positions(n_pos)`` (the query positions
whose logits it needs, or None for all). A logit difference at the last position needs two columns
of one position, so a sweep unembeds ``[batch, 1, 2]`` instead of ``[batch, pos, d_vocab]``.

Every built-in metric also works on logits with leading variant axes ``[..., batch, pos, d_vocab]``
and then returns ``[...]``, one value per variant. Plain callables ``fn(logits, tokens) -> scalar``
are accepted wherever a metric is (see :func:`as_metric`). :func:`contrast_metric` picks the metric that
tells a clean prompt from its corrupted copy.

Example:
    >>> import torch
    >>> logits = torch.zeros(2, 5, 64)
    >>> tokens = torch.zeros(2, 5, dtype=torch.long)
    >>> round(float(Loss()(logits, tokens)), 4)  # uniform over 64 symbols: log(64)
    4.1589
    >>> logits[:, -1, 7] = 2.0
    >>> float(LogitDiff(answer=7, wrong=8)(logits, tokens))
    2.0
    >>> str(LossAt([3, 4]))
    'next-token loss on the tokens at positions [3, 4]'
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from interp.common.checks import check_model
from model.network.minigpt import MiniGPT
from model.network.token_ids import token_labels


class Metric:
    """A scalar summary of logits (mean over the batch); subclasses define :meth:`score`.

    ``metric(logits, tokens)`` selects ``read_positions`` and ``columns`` from full logits and
    calls ``score``; batched code computes only the selection and calls ``score`` itself.
    """

    columns: tuple[int, ...] | None = None

    def read_positions(self, n_pos: int) -> list[int] | None:
        """Query positions (non-negative) whose logits the metric reads; None means all."""
        return None

    def score(self, logits: Float[Tensor, "... batch read_pos read_vocab"], tokens: Int[Tensor, "batch pos"]) -> Tensor:
        """The metric from logits already restricted to ``read_positions`` and ``columns``."""
        raise TypeError(
            f"{type(self).__name__} does not define score(); use Loss(), LossAt(positions), LogitDiff(answer, "
            "wrong), TargetProb(target), a subclass that defines score, or a plain fn(logits, tokens)"
        )

    def __call__(self, logits: Float[Tensor, "... batch pos d_vocab"], tokens: Int[Tensor, "batch pos"]) -> Tensor:
        if not isinstance(logits, Tensor) or not isinstance(tokens, Tensor):
            raise TypeError(
                f"a metric takes (logits, tokens) tensors, got {type(logits).__name__} and {type(tokens).__name__}"
            )
        if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
            raise TypeError(f"tokens must hold integer ids, got dtype {tokens.dtype}; use model.to_tokens(text)")
        if logits.ndim < 3 or logits.shape[-3:-1] != tokens.shape:
            raise ValueError(
                f"logits of shape {tuple(logits.shape)} do not match tokens of shape {tuple(tokens.shape)}; "
                "expected logits [..., batch, pos, d_vocab] for tokens [batch, pos]"
            )
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= logits.shape[-1]):
            raise ValueError(f"tokens hold ids outside the vocabulary [0, {logits.shape[-1]}) of the logits")
        positions = self.read_positions(tokens.shape[1])
        if positions is not None:
            logits = logits[..., positions, :]
        if self.columns is not None:
            if max(self.columns) >= logits.shape[-1]:
                raise ValueError(
                    f"{self} reads token ids {self.columns} but the vocabulary has {logits.shape[-1]} tokens"
                )
            logits = logits[..., list(self.columns)]
        return self.score(logits, tokens)


def _position_tuple(values: object, what: str) -> tuple[int, ...]:
    """``values`` (one int or a list of ints) as a tuple of ints; TypeError naming ``what`` otherwise."""
    if isinstance(values, Tensor):
        values = values.tolist()
    items = list(values) if isinstance(values, Iterable) and not isinstance(values, str) else [values]
    out = []
    for p in items:
        try:
            if isinstance(p, bool):
                raise TypeError
            out.append(operator.index(p))
        except TypeError:
            raise TypeError(f"{what} must be an int or a list of ints, got {values!r}") from None
    return tuple(out)


def _one_position(value: object) -> int:
    """A single position (an int; negative counts from the end)."""
    if isinstance(value, bool | Iterable):
        raise TypeError(f"pos must be one int position, got {value!r}")
    return _position_tuple(value, "pos")[0]


def _positions(values: int | Sequence[int], n_pos: int, what: str, lowest: int = 0) -> list[int]:
    """Resolve (possibly negative) positions against ``n_pos``, naming the valid range on error."""
    values = [values] if isinstance(values, int) else list(values)
    out = []
    for p in values:
        q = p + n_pos if p < 0 else p
        if not lowest <= q < n_pos:
            raise IndexError(
                f"{what} {p} is out of range for {n_pos} tokens; valid positions are {lowest}..{n_pos - 1}"
            )
        out.append(q)
    return out


def _ids(value: int | Sequence[int], name: str) -> int | tuple[int, ...]:
    if isinstance(value, Tensor):
        value = value.tolist()
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{name} must be a token id >= 0, got {value}")
        return value
    try:
        ids = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a token id or one id per batch row, got {value!r}") from None
    if not ids or min(ids) < 0:
        raise ValueError(f"{name} must hold token ids >= 0, got {ids}")
    return ids


def _per_row(ids: int | tuple[int, ...], batch: int, name: str) -> Tensor:
    if isinstance(ids, int):
        return torch.full((batch,), ids, dtype=torch.long)
    if len(ids) != batch:
        raise ValueError(f"{name} has {len(ids)} ids but the batch has {batch} rows; give one id per row or one id")
    return torch.tensor(ids, dtype=torch.long)


def _cross_entropy(
    logits: Float[Tensor, "... batch read_pos d_vocab"], targets: Int[Tensor, "batch read_pos"]
) -> Tensor:
    """Mean cross-entropy over ``batch, read_pos`` of each leading variant (fused kernel, no log-prob tensor)."""
    targets = targets.to(logits.device).expand(*logits.shape[:-1]).reshape(-1)
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets, reduction="none")
    return nll.view(logits.shape[:-1]).mean((-1, -2))


@dataclass(frozen=True)
class Loss(Metric):
    """Mean next-token cross-entropy over every position (what ``model(tokens, return_type="loss")`` gives)."""

    def score(self, logits: Tensor, tokens: Tensor) -> Tensor:
        if tokens.shape[1] < 2:
            raise ValueError("the next-token loss needs at least 2 tokens per sequence (it predicts tokens[:, 1:])")
        return _cross_entropy(logits[..., :-1, :], tokens[:, 1:])

    def __str__(self) -> str:
        return "next-token loss (mean over all positions)"


@dataclass(frozen=True)
class LossAt(Metric):
    """Mean next-token cross-entropy of predicting the tokens at ``positions`` (each >= 1), from the logits just before.

    ``LossAt(range(16, 31))`` is the loss on the second copy of ``BOS + r + r`` with ``len(r) == 15``.
    """

    positions: tuple[int, ...]

    def __post_init__(self) -> None:
        pos = _position_tuple(self.positions, "LossAt positions")
        if not pos:
            raise ValueError("LossAt needs at least one position")
        object.__setattr__(self, "positions", pos)

    def read_positions(self, n_pos: int) -> list[int]:
        return [p - 1 for p in _positions(self.positions, n_pos, "loss position", lowest=1)]

    def score(self, logits: Tensor, tokens: Tensor) -> Tensor:
        targets = tokens[:, _positions(self.positions, tokens.shape[1], "loss position", lowest=1)]
        return _cross_entropy(logits, targets)

    def __str__(self) -> str:
        pos = self.positions
        if len(pos) > 2 and pos == tuple(range(pos[0], pos[0] + len(pos))):
            return f"next-token loss on the tokens at positions {pos[0]}..{pos[-1]}"
        return f"next-token loss on the tokens at positions {list(pos)}"


@dataclass(frozen=True)
class LogitDiff(Metric):
    """Mean of ``logit[answer] - logit[wrong]`` at position ``pos``; ids are one per batch or one per row."""

    answer: int | tuple[int, ...]
    wrong: int | tuple[int, ...]
    pos: int = -1

    def __post_init__(self) -> None:
        object.__setattr__(self, "pos", _one_position(self.pos))
        object.__setattr__(self, "answer", _ids(self.answer, "answer"))
        object.__setattr__(self, "wrong", _ids(self.wrong, "wrong"))
        ids = {self.answer} if isinstance(self.answer, int) else set(self.answer)
        ids |= {self.wrong} if isinstance(self.wrong, int) else set(self.wrong)
        object.__setattr__(self, "columns", tuple(sorted(ids)))

    def read_positions(self, n_pos: int) -> list[int]:
        return _positions(self.pos, n_pos, "logit-difference position")

    def score(self, logits: Tensor, tokens: Tensor) -> Tensor:
        batch = tokens.shape[0]
        if logits.shape[-1] != len(self.columns):
            raise ValueError(f"score expects logits restricted to the columns {self.columns}; call the metric instead")
        lookup = {c: i for i, c in enumerate(self.columns)}
        a = _per_row(self.answer, batch, "answer").apply_(lookup.__getitem__).to(logits.device)
        w = _per_row(self.wrong, batch, "wrong").apply_(lookup.__getitem__).to(logits.device)
        last = logits[..., 0, :]  # [..., batch, read_vocab]
        a = a.expand(*last.shape[:-1])[..., None]
        w = w.expand(*last.shape[:-1])[..., None]
        return (last.gather(-1, a) - last.gather(-1, w))[..., 0].mean(-1)

    def __str__(self) -> str:
        return f"logit difference answer {self.answer} - wrong {self.wrong} at position {self.pos}"


@dataclass(frozen=True)
class TargetProb(Metric):
    """Mean probability of ``target`` (one id, or one per row) at position ``pos``."""

    target: int | tuple[int, ...]
    pos: int = -1

    def __post_init__(self) -> None:
        object.__setattr__(self, "pos", _one_position(self.pos))
        object.__setattr__(self, "target", _ids(self.target, "target"))

    def read_positions(self, n_pos: int) -> list[int]:
        return _positions(self.pos, n_pos, "target-probability position")

    def score(self, logits: Tensor, tokens: Tensor) -> Tensor:
        probs = logits[..., 0, :].softmax(-1)  # [..., batch, d_vocab]
        if max(self.target if isinstance(self.target, tuple) else (self.target,)) >= probs.shape[-1]:
            raise ValueError(f"target {self.target} is outside the vocabulary of {probs.shape[-1]} tokens")
        t = _per_row(self.target, tokens.shape[0], "target").to(logits.device)
        return probs.gather(-1, t.expand(*probs.shape[:-1])[..., None])[..., 0].mean(-1)

    def __str__(self) -> str:
        return f"probability of token {self.target} at position {self.pos}"


@dataclass(frozen=True)
class FunctionMetric(Metric):
    """A plain ``fn(logits [batch, pos, d_vocab], tokens) -> scalar``, applied once per variant."""

    fn: Callable[[Tensor, Tensor], Tensor]

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"FunctionMetric needs a callable fn(logits, tokens) -> scalar, got {self.fn!r}")

    def score(self, logits: Tensor, tokens: Tensor) -> Tensor:
        lead = logits.shape[:-3]
        flat = logits.reshape(-1, *logits.shape[-3:])
        values = []
        for variant in flat:
            out = self.fn(variant, tokens)
            try:
                value = torch.as_tensor(out, dtype=logits.dtype)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(
                    f"metric {self} returned {type(out).__name__}; a metric must return a number or a 0-d tensor"
                ) from None
            if value.numel() != 1:
                raise ValueError(f"metric {self} returned shape {tuple(value.shape)}; a metric must return a scalar")
            values.append(value.reshape(()))
        return torch.stack(values).reshape(lead).to(logits.device)

    def __str__(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


METRIC_NAMES = {"loss": Loss}


def as_metric(metric: Metric | str | Callable[[Tensor, Tensor], Tensor]) -> Metric:
    """A :class:`Metric` from a Metric, the name ``"loss"``, or a callable ``fn(logits, tokens) -> scalar``."""
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        if metric not in METRIC_NAMES:
            raise ValueError(
                f"unknown metric {metric!r}; use one of {sorted(METRIC_NAMES)} or a Metric "
                "(Loss(), LossAt(positions), LogitDiff(answer, wrong), TargetProb(target))"
            )
        return METRIC_NAMES[metric]()
    if callable(metric):
        return FunctionMetric(metric)
    raise TypeError(f"metric must be a Metric, a name or a callable fn(logits, tokens), got {type(metric).__name__}")


def contrast_metric(
    model: MiniGPT, clean: Int[Tensor, "1 pos"] | str, corrupted: Int[Tensor, "1 pos"] | str
) -> tuple[Metric, str]:
    """The metric of patching ``clean`` into ``corrupted``, and that metric in words: the last position's logit
    difference between the clean and the corrupted top guesses; when both guess the same token, the next-token loss.

    One forward of both prompts as one batch, whose last block runs only the last position and whose read-out
    unembeds only that position (``model.forward_from(..., rows=[last])``): two argmaxes, nothing else.

    Example:
        >>> from model import MiniGPT
        >>> model = MiniGPT.from_pretrained("induction-2l")
        >>> contrast_metric(model, "qwertyuiop qwer", "qwertyuiop qwex")
        (LogitDiff(answer=34, wrong=31, pos=-1), "logit of 't' (clean top guess) minus logit of 'q' (corrupted \
top guess), last position")
    """
    model = check_model(model)
    clean, corrupted = model.check_tokens(clean), model.check_tokens(corrupted).to(model.device)
    if clean.shape[0] != 1 or clean.shape != corrupted.shape:
        raise ValueError(
            f"contrast_metric takes one clean and one corrupted prompt of the same length, got token shapes "
            f"{tuple(clean.shape)} and {tuple(corrupted.shape)}; make the corrupted prompt as long as the clean one"
        )
    with torch.no_grad():
        pair = torch.cat([clean, corrupted])
        last = model.forward_from(model.embed_tokens(pair), rows=[pair.shape[1] - 1])[:, 0]
    answer, wrong = last.argmax(-1).tolist()
    if answer == wrong:
        return Loss(), "next-token loss (both prompts have the same top guess)"
    names = [repr(s) for s in token_labels(model.tokenizer, [answer, wrong])]
    words = f"logit of {names[0]} (clean top guess) minus logit of {names[1]} (corrupted top guess), last position"
    return LogitDiff(answer=answer, wrong=wrong), words
