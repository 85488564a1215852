"""When training writes snapshots: log-spaced early (where the weights move most), then at regular steps.

A :class:`SnapshotSchedule` is part of a :class:`~model.training.presets.TrainConfig` (``snapshots=``); the loop
writes a snapshot of the weights after each step the schedule names (:mod:`model.storage.runs` stores them), step
0 being the initial weights. The last step of the run is the checkpoint itself, so it is not written twice.

With the defaults a run gets about 60 snapshots: step 0, 20 log-spaced steps from 1 to 5% of the run (fewer
when rounding merges some of the smallest), then 40 evenly spaced steps up to the end.

Plain Python (no torch), like the presets that hold it.

Example:
    >>> schedule = SnapshotSchedule(early=5, late=4, early_until=100)
    >>> schedule.steps(500)
    (0, 1, 3, 10, 32, 100, 200, 300, 400, 500)
    >>> len(SnapshotSchedule().steps(20000))
    60
    >>> SnapshotSchedule(dtype="int8")
    Traceback (most recent call last):
    ...
    ValueError: dtype='int8' is not one of ['float32', 'float16', 'bfloat16']
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SNAPSHOT_DTYPES = ("float32", "float16", "bfloat16")
EARLY_FRACTION = 0.05  # the log-spaced part covers the first 5% of the run unless early_until says otherwise


@dataclass(frozen=True)
class SnapshotSchedule:
    early: int = 20  # log-spaced snapshots over steps 1 .. early_until (0 = none)
    late: int = 40  # evenly spaced snapshots over early_until .. the last step (0 = none)
    early_until: int | None = None  # last step of the log-spaced part (None: 5% of the run, at least 1)
    dtype: str = "float32"  # how the snapshots' weights are stored (the final checkpoint stays float32)

    def __post_init__(self) -> None:
        for name in ("early", "late"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        until = self.early_until
        if until is not None and (isinstance(until, bool) or not isinstance(until, int) or until < 1):
            raise ValueError(f"early_until must be a positive integer or None, got {until!r}")
        if self.dtype not in SNAPSHOT_DTYPES:
            raise ValueError(f"dtype={self.dtype!r} is not one of {list(SNAPSHOT_DTYPES)}")

    def steps(self, total: int) -> tuple[int, ...]:
        """The sorted steps (0 .. ``total``) of a run of ``total`` optimizer steps that get a snapshot."""
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise ValueError(f"total must be a positive integer (the run's steps), got {total!r}")
        until = min(self.early_until or max(1, round(total * EARLY_FRACTION)), total)
        found = {0}
        if self.early:
            ratio = math.log(until) / max(self.early - 1, 1)
            found |= {min(until, round(math.exp(i * ratio))) for i in range(self.early)}
        if self.late:
            span = total - until
            found |= {until + round(k * span / self.late) for k in range(1, self.late + 1)}
        return tuple(sorted(found))


def about(count: int) -> SnapshotSchedule | None:
    """A default-shaped schedule of about ``count`` snapshots (a third log-spaced), or None for ``count=0``.

    Example:
        >>> about(30)
        SnapshotSchedule(early=10, late=20, early_until=None, dtype='float32')
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"the number of snapshots must be a non-negative integer, got {count!r}")
    return SnapshotSchedule(early=count // 3, late=count - count // 3) if count else None
