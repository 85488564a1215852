"""Shared timing helpers: medians of interleaved (ABBA) runs in one process."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

import torch


def time_once(fn: Callable[[], object]) -> float:
    """Seconds for one call; the result is dropped at once."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def synced(device: str, fn: Callable[[], object]) -> Callable[[], None]:
    """``fn`` followed by a device synchronisation (CUDA work is asynchronous), result dropped."""
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else None

    def timed() -> None:
        fn()
        if sync is not None:
            sync()

    return timed


def abba(variants: dict[str, Callable[[], object]], rounds: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds per variant, timing them in the order A B .. B A each round.

    Interleaving puts machine and allocator noise on every variant alike.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    gc.disable()
    try:
        for _ in range(rounds):
            for name in names + names[::-1]:
                times[name].append(time_once(variants[name]))
    finally:
        gc.enable()
    return {name: statistics.median(ts) for name, ts in times.items()}


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """A Markdown table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    lines = [fmt.format(*header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(lines)
