"""Metrics over a training run: the analyses, as they are, on every snapshot of a :class:`~model.storage.runs.Run`.

:func:`training_dynamics` loads each saved step once, runs the probe once (one cache for every analysis) and
returns one tidy frame ``step, metric, component, value``. The metric groups (``metrics=``):

- ``"losses"``: ``first_copy_loss`` and ``second_copy_loss`` on the probe ``[BOS, r, r]``
  (:func:`interp.reports.induction.copy_losses`) and ``icl_score`` = second-copy loss minus first-copy loss:
  Olsson et al.'s in-context learning score (late-position loss minus early-position loss; negative once the
  model uses its context). Component ``model``.
- ``"head_scores"``: every score of :func:`interp.observe.attention.head_scores` for every head (component
  ``L{l}H{h}``, metric the score's name: ``previous_token``, ``induction``, ...).
- ``"composition"``: :func:`interp.weights.composition.composition_scores` for every head pair (metric
  ``Q_composition`` / ``K_composition`` / ``V_composition``, component ``L0H0->L1H0``).
- ``"dla"``: each head's direct logit attribution to the correct next token
  (:func:`interp.observe.dla.direct_logit_attribution`), averaged over the second copy (metric ``dla``).
- ``"weight_norms"``: the Frobenius norm of every weight tensor (metric ``weight_norm``, component its name),
  computed for all snapshots at once on the stacked weights.

Example:
    >>> frame = training_dynamics("induction-2l", probe=probe_tokens(8), steps=[0, 20000], progress=False)
    >>> sorted(frame.metric.unique())[:4]
    ['K_composition', 'Q_composition', 'V_composition', 'current_token']
    >>> row = frame[(frame.metric == "induction") & (frame.component == "L1H0")]
    >>> bool(row.value.iloc[0] < 0.5 < row.value.iloc[1])
    True
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor
from tqdm import tqdm

from interp.common.checks import check_int
from interp.observe.attention import SCORE_COLUMNS, head_scores
from interp.observe.dla import direct_logit_attribution
from interp.reports.induction import SEG_LEN, copy_losses, probe_tokens
from interp.weights.composition import composition_scores
from model.network.loading import tokenizer_from_dict
from model.network.minigpt import MiniGPT
from model.storage.runs import Run

METRIC_GROUPS = ("losses", "head_scores", "composition", "dla", "weight_norms")
FRAME_COLUMNS = ["step", "metric", "component", "value"]
RunLike = Run | str | os.PathLike


def _as_run(run: object) -> Run:
    """``run`` itself, or the run of a shipped name / checkpoint path (TypeError for anything else)."""
    if isinstance(run, Run):
        return run
    if isinstance(run, (str, os.PathLike)):
        return Run.load(run)
    raise TypeError(f"run must be a Run or a run name / path (e.g. 'induction-2l'), got {type(run).__name__}")


def _checked_metrics(metrics: object) -> tuple[str, ...]:
    if metrics is None:
        return METRIC_GROUPS
    if isinstance(metrics, str) or not isinstance(metrics, Iterable):
        raise TypeError(f"metrics must be a list of metric groups from {list(METRIC_GROUPS)}, got {metrics!r}")
    chosen = tuple(metrics)
    bad = [m for m in chosen if m not in METRIC_GROUPS]
    if bad or not chosen:
        raise ValueError(f"metrics {bad or '[]'} not known: choose from {list(METRIC_GROUPS)}")
    return chosen


def _checked_steps(run: Run, steps: object) -> tuple[int, ...]:
    if steps is None:
        return run.steps
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Iterable):
        raise TypeError(f"steps must be a list of saved steps (run.steps), got {steps!r}")
    chosen = tuple(check_int(s, "step", minimum=0) for s in steps)
    for step in chosen:
        run.path(step)  # an unknown step names the nearest saved ones
    if not chosen:
        raise ValueError("steps is empty: pass None for every saved step, or some of run.steps")
    return tuple(sorted(set(chosen)))


def _model_at(run: Run, step: int) -> MiniGPT:
    ckpt = run.checkpoint(step)
    model = MiniGPT(ckpt.cfg, tokenizer_from_dict(ckpt.tokenizer, ckpt.cfg.d_vocab) if ckpt.tokenizer else None)
    model.load_state_dict(ckpt.state_dict)
    return model.eval()


def _loss_rows(step: int, logits: Tensor, tokens: Tensor) -> list[tuple]:
    losses = {name: float(metric(logits, tokens)) for name, metric in copy_losses().items()}
    first, second = losses["first_copy"], losses["second_copy"]
    return [
        (step, "first_copy_loss", "model", first),
        (step, "second_copy_loss", "model", second),
        (step, "icl_score", "model", second - first),
    ]


def _score_rows(step: int, model: MiniGPT, tokens: Tensor, cache) -> list[tuple]:
    scores = head_scores(model, tokens, cache)
    return [
        (step, name, comp, float(v))
        for name in SCORE_COLUMNS
        for comp, v in zip(scores.component, scores[name], strict=True)
    ]


def _composition_rows(step: int, model: MiniGPT) -> list[tuple]:
    comp = composition_scores(model)
    pairs = "L" + comp.src_layer.astype(str) + "H" + comp.src_head.astype(str)
    pairs += "->L" + comp.dst_layer.astype(str) + "H" + comp.dst_head.astype(str)
    return [
        (step, f"{c}_composition", p, float(s)) for c, p, s in zip(comp.composition, pairs, comp.score, strict=True)
    ]


def _dla_rows(step: int, model: MiniGPT, tokens: Tensor, cache) -> list[tuple]:
    dla = direct_logit_attribution(model, tokens, cache, per="head")  # target: the next token
    heads = dla[(dla.component_type == "head") & (dla.pos >= SEG_LEN + 1) & (dla.pos < 2 * SEG_LEN)]
    means = heads.groupby("component", sort=True).contribution.mean()
    return [(step, "dla", comp, float(v)) for comp, v in means.items()]


def _norm_rows(run: Run, steps: Sequence[int], states: list[dict[str, Tensor]]) -> list[tuple]:
    rows = []
    for name in states[0]:
        stacked = torch.stack([state[name].float() for state in states])  # one op for every snapshot
        norms = stacked.flatten(1).norm(dim=1).tolist()
        rows += [(step, "weight_norm", name, value) for step, value in zip(steps, norms, strict=True)]
    return rows


@torch.no_grad()
def training_dynamics(
    run: RunLike,
    probe: Int[Tensor, "batch pos"] | None = None,
    metrics: Sequence[str] | None = None,
    steps: Sequence[int] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Every metric of ``metrics`` (groups of :data:`METRIC_GROUPS`; None = all) at every saved step of ``run``.

    ``probe``: ``[BOS, r, r]`` token ids with ``len(r) = 15`` (default :func:`probe_tokens` ``(64)``); ``steps``:
    some of ``run.steps`` (None = all). Columns: step (int), metric (str), component (str: ``model``, a head
    ``L{l}H{h}``, a head pair ``L0H0->L1H0`` or a weight name), value (float); rows sorted by step, metric,
    component.
    """
    run, chosen = _as_run(run), _checked_metrics(metrics)
    steps = _checked_steps(run, steps)
    first = _model_at(run, steps[0])
    tokens = first.check_tokens(probe_tokens(64, d_vocab=first.cfg.d_vocab) if probe is None else probe)
    if tokens.shape[1] != 2 * SEG_LEN + 1:
        raise ValueError(
            f"probe must be [BOS, r, r] with len(r) = {SEG_LEN}: shape [batch, 31], got {tuple(tokens.shape)}"
        )
    rows: list[tuple] = []
    states = []
    for step in tqdm(steps, desc=f"dynamics {run.name}", disable=not progress):
        model = first if step == steps[0] else _model_at(run, step)
        states.append(model.state_dict())
        if not {"losses", "head_scores", "dla"}.isdisjoint(chosen):
            logits, cache = model.run_with_cache(tokens)
            rows += _loss_rows(step, logits, tokens) if "losses" in chosen else []
            rows += _score_rows(step, model, tokens, cache) if "head_scores" in chosen else []
            rows += _dla_rows(step, model, tokens, cache) if "dla" in chosen else []
        rows += _composition_rows(step, model) if "composition" in chosen else []
    rows += _norm_rows(run, steps, states) if "weight_norms" in chosen else []
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS).astype({"step": "int64", "value": "float64"})
    return frame.sort_values(["step", "metric", "component"], ignore_index=True)
