"""What the browser and load tests share: a real `streamlit run dashboards/app.py` and Debian's headless chromium.

``serve`` starts the server on a free localhost port with ``$MINIGPT_DASHBOARD_TIMINGS`` pointing at a file, so
every script run's server time can be read back (``Server.times``); ``RUN_COUNTER`` is an init script that counts
the page's finished script runs (``window.__runs``; the last one's end: ``window.__runEnd``), so a test waits for
*its* rerun without guessing how long (a run too short for the page to show "running" is not counted: wait for
what the run shows instead, as tests/e2e/test_load.py does).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]  # fmt: skip
WAIT_MS = 180_000  # generous: CI machines are shared
RUN_COUNTER = """
window.__runs = 0;
new MutationObserver((records) => {  // one batch may hold several changes: read each record's old value
  const states = records.filter((r) => r.attributeName === 'data-test-script-state').map((r) => r.oldValue);
  const app = document.querySelector('[data-testid="stApp"]');
  states.push(app && app.getAttribute('data-test-script-state'));
  for (let i = 1; i < states.length; i++) {
    if (states[i - 1] !== 'running' || states[i] !== 'notRunning') continue;
    window.__runs++;
    window.__runEnd = performance.now();
  }
}).observe(document, {subtree: true, attributes: true, attributeOldValue: true,
                      attributeFilter: ['data-test-script-state']});
"""


def chromium_path() -> str:
    """Debian's chromium, or a failure that says how to install it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("the browser test needs Debian's chromium: run `make browser` (or `sudo apt-get install chromium`)")
    return path


def sync_playwright():
    """playwright's ``sync_playwright()``, or a failure that says how to install it (never `playwright install`)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser test needs the playwright package: pip install playwright (not `playwright install`)")
    return sync_playwright()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A running `streamlit run dashboards/app.py`: its URL, process and the file its script runs log times to."""

    url: str
    proc: subprocess.Popen
    timings: Path
    log: Path

    def times(self) -> list[dict]:
        """Every script run so far: ``{"page", "seconds", "session"}`` (``dashboards.state.log_run_time``)."""
        if not self.timings.exists():
            return []
        return [json.loads(line) for line in self.timings.read_text().splitlines() if line.strip()]

    def rss_mb(self) -> float:
        """The server's resident memory (VmRSS of /proc/<pid>/status), in MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS line for pid {self.proc.pid}")


@contextlib.contextmanager
def serve(name: str) -> Iterator[Server]:
    """A `streamlit run dashboards/app.py` on a free localhost port, its log at ``runs/<name>-streamlit.log``."""
    port = free_port()
    (ROOT / "runs").mkdir(exist_ok=True)
    log_path, timings = ROOT / "runs" / f"{name}-streamlit.log", ROOT / "runs" / f"{name}-timings.jsonl"
    timings.unlink(missing_ok=True)
    log = open(log_path, "w")  # noqa: SIM115 (open for the server's lifetime)
    cmd = [sys.executable, "-m", "streamlit", "run", "dashboards/app.py", "--server.headless", "true",
           "--server.address", "localhost", "--server.port", str(port), "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]  # fmt: skip
    env = {**os.environ, "MINIGPT_DASHBOARD_TIMINGS": str(timings)}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start (exit code {proc.poll()}); see {log_path}")
            time.sleep(0.5)
        yield Server(url, proc, timings, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def wait_idle(page) -> None:
    """Wait until the script run that the last action started has finished."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):  # the run may have finished before we looked
        page.wait_for_selector('[data-testid="stApp"][data-test-script-state="running"]', timeout=3_000)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=WAIT_MS)


def runs(page) -> int:
    """How many script runs of this page have finished (needs ``RUN_COUNTER`` as an init script)."""
    return int(page.evaluate("window.__runs"))


def wait_runs(page, more_than: int) -> None:
    """Wait until the page has finished more than ``more_than`` script runs."""
    page.wait_for_function(f"window.__runs > {more_than}", timeout=WAIT_MS)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between the sorted values."""
    ordered = sorted(values)
    at = (len(ordered) - 1) * q / 100
    lo = int(at)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (at - lo)
