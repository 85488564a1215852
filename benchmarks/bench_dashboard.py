"""Dashboard re-render time after a prompt change, per page, on the shipped minigpt-text (locked config).

Each page runs in a ``streamlit.testing.v1.AppTest`` session (the real script, widgets and caches, in
this process). After a warm-up on two prompts, the prompt is changed to one the page has never seen
(so every analysis is recomputed, nothing comes from the cache) and the script run is timed: that
is the server time of the re-render, plus AppTest's own small bookkeeping. Target: <= 0.5 s.
The CPU column (all threads of this process) is what the run costs without other load on the machine.

Before that, the first paint: the very first script run of this process (cold: the imports included), then
after a warm start (the modules imported, every Streamlit cache cleared, a new session) the first page's run,
which loads the model and computes its analysis (budget 2 s), and every page switch after it (the Attention
page's budget: 1 s), as seconds and as a ratio to the budget.

    python -m benchmarks.bench_dashboard [--rounds 8]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import table

APP = str(Path(__file__).resolve().parents[1] / "dashboards" / "app.py")
PAGES = ["prediction", "attention", "residual", "logit_attribution", "ablation", "qk_ov", "discovery"]
WARMUP = ["the value of the attribute is", "a list of the arguments"]
BUDGET_S = 0.5
FIRST_PAGE_BUDGET_S, SWITCH_BUDGET_S = 2.0, 1.0
SWITCHES = ["model_card", "attention", "residual", "logit_attribution", "ablation", "qk_ov", "features",
            "discovery", "dynamics", "prediction", "attention"]  # fmt: skip


def fresh_prompts(n: int) -> list[str]:
    """``n`` distinct prompts of 25-31 characters that no warm-up run has seen."""
    words = ["the", "value", "list", "object", "name", "module", "class", "returns", "of", "is", "a", "if"]
    return [" ".join(words[(i + j * 5) % len(words)] for j in range(7))[:31] for i in range(n)]


def time_page(page: str, rounds: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds (this process, all threads) of each script run that follows a prompt change on ``page``."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page(f"views/{page}.py").run()
    for prompt in WARMUP:
        at.text_area(key="prompt").input(prompt).run()
    wall, cpu = [], []
    for prompt in fresh_prompts(rounds):
        at.text_area(key="prompt").input(prompt)
        start, start_cpu = time.perf_counter(), time.process_time()
        at.run()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        if at.exception:
            raise RuntimeError(f"page {page} raised on {prompt!r}: {at.exception[0].message}")
    return wall, cpu


def timed_run(at) -> float:
    """Seconds of one AppTest script run; an exception on the page is an error here."""
    start = time.perf_counter()
    at.run()
    if at.exception:
        raise RuntimeError(f"the dashboard raised: {at.exception[0].message}")
    return time.perf_counter() - start


def first_paint() -> list[tuple[str, float, float]]:
    """(step, seconds, budget) for the cold first run, the first page after a warm start and every page switch."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    rows = [("first run of this process (cold: imports)", timed_run(AppTest.from_file(APP, default_timeout=300)), 0)]
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=300)
    rows.append(("first page after a warm start (model + analysis)", timed_run(at), FIRST_PAGE_BUDGET_S))
    seen = set()
    for page in SWITCHES:
        at.switch_page(f"views/{page}.py")
        what = f"switch to {page}" + (" (again)" if page in seen else "")
        rows.append((what, timed_run(at), SWITCH_BUDGET_S if page == "attention" else 0))
        seen.add(page)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="prompt changes timed per page")
    args = parser.parse_args()
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    paint = [
        (what, f"{sec:.3f}", f"{sec / budget:.2f} of {budget:g} s" if budget else "")
        for what, sec, budget in first_paint()
    ]
    print("First paint and page switches (server time, minigpt-text)")
    print(table(paint, ("step", "seconds", "ratio to budget")))
    rows = []
    for page in PAGES:
        wall, cpu = time_page(page, args.rounds)
        ok = "yes" if max(wall) <= BUDGET_S else "NO"
        rows.append((page, f"{statistics.median(wall):.3f}", f"{max(wall):.3f}", f"{statistics.median(cpu):.3f}", ok))
    what = f"minigpt-text, torch threads {torch.get_num_threads()} as set by dashboards/app.py, {args.rounds} prompts"
    print(f"Re-render after a prompt change ({what})")
    print(table(rows, ("page", "median s", "max s", "median CPU s", f"max <= {BUDGET_S} s")))


if __name__ == "__main__":
    main()
