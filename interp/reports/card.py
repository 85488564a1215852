"""The model card: a checkpoint's final evaluation (``provenance["final_eval"]``) with what each number means.

``minigpt train`` records the final evaluation in the checkpoint's JSON: for the text task the validation loss
and the bigram baseline (``model.training.evaluation``), for the induction task the induction report
(:func:`interp.reports.induction.induction_report`). A bare "validation loss 3.313" reads as a failure; beside
its reference (the uniform guess, the bigram model, the unpredictable first copy) it says what was learned.
The judgements use stated thresholds: a loss under half the uniform guess's "is predicted"; a head score of
0.4 or more (:data:`interp.observe.attention.THRESHOLDS`) names the head's kind.

Example:
    >>> card = describe_final_eval({"second_copy_loss": 0.2755, "ln_vocab": 4.1589})
    >>> card.loc[0, "meaning"]
    'second-copy loss 0.28 nats (its first token left out) against 4.16 for a uniform guess: the copy is predicted'
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from interp.observe.attention import THRESHOLDS
from model.network.labels import component_label

SKIPPED = ("samples",)  # shown on their own (sampled text), not as a number


def _heads(grid: list[list[float]]) -> list[tuple[str, float]]:
    """``[[layer 0 heads], [layer 1 heads], ...]`` -> ``[("L0H0", v), ...]``."""
    return [
        (component_label("head", layer, head), float(v)) for layer, row in enumerate(grid) for head, v in enumerate(row)
    ]


def _score_meaning(grid: list[list[float]], kind: str, limit: float) -> str:
    heads = _heads(grid)
    listed = ", ".join(f"{name} {v:.2f}" for name, v in heads)
    best, value = max(heads, key=lambda hv: hv[1])
    verdict = f"{best} is {kind} head" if value >= limit else f"no head reaches {limit} (no {kind} head)"
    return f"{listed}: {verdict} (score >= {limit})"


def _loss_meaning(field: str, value: float, final_eval: dict[str, Any]) -> str:
    """The sentence for one loss, against the uniform guess ``ln_vocab`` (ln 64 when not recorded)."""
    uniform = float(final_eval.get("ln_vocab", math.log(64)))
    predicted = "predicted" if value < uniform / 2 else "not predicted"
    if field == "first_copy_loss":
        return (
            f"first-copy loss {value:.2f} nats against {uniform:.2f} for a uniform guess: random tokens, which nothing "
            "can predict (near the uniform guess is right)"
        )
    if field == "second_copy_loss":
        return (
            f"second-copy loss {value:.2f} nats (its first token left out) against {uniform:.2f} for a uniform "
            f"guess: the copy is {predicted}"
        )
    return f"second-copy loss {value:.2f} nats with its first token, which nothing predicts"


def _meaning(field: str, value: Any, final_eval: dict[str, Any]) -> str:
    if field in ("first_copy_loss", "second_copy_loss", "second_copy_all_loss"):
        return _loss_meaning(field, float(value), final_eval)
    if field == "prev_token_score":
        return "previous-token score per head: " + _score_meaning(
            value, "a previous-token", THRESHOLDS["previous_token"]
        )
    if field == "induction_score":
        return "induction score per head: " + _score_meaning(value, "an induction", THRESHOLDS["induction"])
    if field.startswith("ablate_layer") and field.endswith("_second_copy_delta"):
        layer = field.removeprefix("ablate_layer").removesuffix("_head_second_copy_delta")
        parts = ", ".join(f"{component_label('head', int(layer), h)} {d:+.2f}" for h, d in enumerate(value))
        return (
            f"second-copy loss change (nats) when each layer-{layer} head is zero-ablated: {parts}; "
            "a large rise: the copy needs that head"
        )
    if field == "ln_vocab":
        return f"ln of the vocabulary size: the loss of a uniform guess, {float(value):.2f} nats"
    if field == "val_loss_repeated_segments":
        return (
            f"validation loss {float(value):.2f} nats per token over whole training rows: the random first copies "
            "(about ln 64 each) keep it high even when every copy is predicted; read the copy losses instead"
        )
    if field == "val_nats_per_char":
        bigram = final_eval.get("bigram_val_nats_per_char")
        than = f", below the bigram model's {float(bigram):.2f}" if isinstance(bigram, int | float) else ""
        return f"validation loss {float(value):.2f} nats per character{than} (uniform: {math.log(64):.2f})"
    if field == "bigram_val_nats_per_char":
        return "a bigram model (counts of character pairs, add-0.1 smoothing) on the same split: the bar to beat"
    if field == "val_chars":
        return "characters in the validation split"
    if field == "n_sequences":
        return "sequences in the probe <bos> + r + r"
    if field == "seg_len":
        return "length of the random segment r in the probe"
    return ""


def describe_final_eval(final_eval: dict[str, Any] | None) -> pd.DataFrame:
    """One row per recorded number: columns ``field`` (str), ``value`` (str, as recorded), ``meaning`` (str).

    ``final_eval`` is ``model.provenance["final_eval"]`` (None or empty: an empty frame). Fields this module
    does not know keep an empty meaning; sampled text (``samples``) is left out.
    """
    if final_eval is not None and not isinstance(final_eval, dict):
        raise TypeError(f"final_eval must be the dict of a checkpoint's provenance, got {type(final_eval).__name__}")
    rows = []
    for field, value in (final_eval or {}).items():
        if field in SKIPPED:
            continue
        try:
            rows.append((field, str(value), _meaning(field, value, final_eval)))
        except (TypeError, ValueError, IndexError) as err:
            raise TypeError(
                f"final_eval[{field!r}] = {value!r} is not what minigpt train records ({err}); "
                "pass model.provenance['final_eval'] of a checkpoint"
            ) from None
    return pd.DataFrame(rows, columns=["field", "value", "meaning"])
