"""End to end in a real headless Chromium: `streamlit run dashboards/app.py`, a typed prompt, every page.

Needs Debian's ``chromium`` (``make browser`` installs it) and the Python ``playwright`` package; it never
downloads a browser. Screenshots of every page go to ``$MINIGPT_SCREENSHOTS`` (``make screenshots``
sets it to ``docs/screenshots/``, the README's pictures) or else to a temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("MINIGPT_SCREENSHOTS") or tempfile.mkdtemp(prefix="minigpt-screenshots-"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]  # fmt: skip
PAGES = {  # sidebar link text -> screenshot name
    "Model & prediction": "prediction",
    "Model card": "model_card",
    "Attention": "attention",
    "Residual stream": "residual",
    "Direct logit attribution": "logit_attribution",
    "Ablation & patching": "ablation",
    "Circuits": "circuits",
    "Circuit discovery": "discovery",
    "Information flow": "flow",
    "Features": "features",
    "Training dynamics": "dynamics",
}
PROMPT = "the list of the names is the li"  # 31 characters: the longest prompt the locked config takes
VIEWPORT = {"width": 1440, "height": 1000}
CHIPS = '[data-testid="stSidebar"] .st-key-token_chips button'  # the sidebar's token chips (st.pills)
WAIT_MS = 180_000  # generous: CI machines are shared


def chromium_path() -> str:
    """Debian's chromium, or a failure that says how to install it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("the browser test needs Debian's chromium: run `make browser` (or `sudo apt-get install chromium`)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """A `streamlit run dashboards/app.py` on a free localhost port, stopped after the module."""
    port = free_port()
    (ROOT / "runs").mkdir(exist_ok=True)
    log = open(ROOT / "runs" / "browser-test-streamlit.log", "w")  # noqa: SIM115 (open for the server's lifetime)
    cmd = [sys.executable, "-m", "streamlit", "run", "dashboards/app.py", "--server.headless", "true",
           "--server.address", "localhost", "--server.port", str(port), "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"streamlit did not start (exit code {proc.poll()}); see runs/browser-test-streamlit.log")
        time.sleep(0.5)
    yield url
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


def save_screenshot(page, path: Path) -> None:
    """The whole page: the main pane scrolls inside the window, so grow the window to its height first."""
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(max(int(height) + 120, 900), 7000)})
    page.wait_for_timeout(800)  # let plotly re-lay out its charts
    page.screenshot(path=str(path))
    page.set_viewport_size(VIEWPORT)


def alerts(page) -> str:
    return " ".join(page.locator('[data-testid="stAlert"]').all_inner_texts())


def choose_checkpoint(page, option: str) -> None:
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def check_uploads(page) -> None:
    """A broken upload shows the reason and keeps the page drawing; the shipped pair uploads and loads."""
    choose_checkpoint(page, "an uploaded file")
    dropzone = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    dropzone.set_input_files(  # with a .json beside it: the weights alone are refused before their header is read
        [
            {"name": "broken.safetensors", "mimeType": "application/octet-stream", "buffer": b"0" * 64},
            {"name": "broken.json", "mimeType": "application/json", "buffer": b"{}"},
        ]
    )
    wait_idle(page)
    page.wait_for_selector('[data-testid="stAlert"]:has-text("not a safetensors file")', timeout=WAIT_MS)
    assert page.locator('[data-testid="stException"]').count() == 0, "a broken upload must not raise"
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 1, "the page must keep drawing after a bad upload"
    choose_checkpoint(page, "minigpt-text")  # the uploader leaves the page, and with it the broken file
    choose_checkpoint(page, "an uploaded file")
    ckpt = ROOT / "model" / "checkpoints"
    dropzone.set_input_files([str(ckpt / "minigpt-text.safetensors"), str(ckpt / "minigpt-text.json")])
    wait_idle(page)
    page.wait_for_selector('[data-testid="stSidebar"] :text("Model: minigpt-text.safetensors")', timeout=WAIT_MS)
    assert "Could not load" not in alerts(page), f"the shipped pair failed to upload: {alerts(page)}"


def test_every_page_renders_in_chromium(server):
    """Typing a prompt and opening each page shows at least one plot and no exception; screenshots are saved."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the browser test needs the playwright package: pip install playwright (never `playwright install`)"
        )
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(server, timeout=WAIT_MS)
        page.wait_for_selector('[data-testid="stPlotlyChart"]', timeout=WAIT_MS)
        wait_idle(page)
        box = page.locator('[data-testid="stSidebar"] textarea').first
        box.fill(PROMPT)
        box.press("Control+Enter")
        wait_idle(page)
        chips = page.locator(CHIPS).count()
        assert chips == len(PROMPT) + 1, (
            f"the token strip shows {chips} tokens, not <bos> + {len(PROMPT)}: prompt not applied?"
        )
        for link, name in PAGES.items():
            page.locator('[data-testid="stSidebarNav"] a', has_text=link).first.click()
            page.wait_for_selector(f'h1:has-text("{link}")', timeout=WAIT_MS)
            wait_idle(page)
            page.wait_for_selector('[data-testid="stPlotlyChart"] .main-svg', timeout=WAIT_MS)
            errors = page.locator('[data-testid="stException"]').all_inner_texts()
            assert not errors, f"page {link!r} raised: {errors[0][:500]}"
            n_plots = page.locator('[data-testid="stPlotlyChart"]').count()
            assert n_plots >= 1, f"page {link!r} shows no plot; did its analysis fail?"
            save_screenshot(page, SHOTS / f"{name}.png")
        check_uploads(page)
        browser.close()
    for name in PAGES.values():
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000, f"screenshot {name}.png is (nearly) empty"


def playwright():
    """``sync_playwright()``, or a failure saying what to install."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the browser test needs the playwright package: pip install playwright (never `playwright install`)"
        )
    return sync_playwright()


def launch(p):
    """Debian's chromium through playwright (never a downloaded browser)."""
    return p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


def test_a_clicked_token_chip_is_the_position_of_every_page(server):
    """Clicking a sidebar chip lights it, and another page opens with its position picker on that token."""
    with playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(server, timeout=WAIT_MS)
        page.wait_for_selector('[data-testid="stPlotlyChart"]', timeout=WAIT_MS)
        wait_idle(page)
        page.locator(CHIPS).nth(7).click()  # the default prompt "the value of ...": position 7 is its 'l'
        wait_idle(page)
        lit = page.locator('[data-testid="stSidebar"] .st-key-token_chips button[aria-checked="true"]')
        assert lit.all_inner_texts() == ["7 l"], f"the clicked chip must be the one lit: {lit.all_inner_texts()}"
        page.locator('[data-testid="stSidebarNav"] a', has_text="Direct logit attribution").first.click()
        page.wait_for_selector('h1:has-text("Direct logit attribution")', timeout=WAIT_MS)
        wait_idle(page)
        picker = page.locator(".st-key-dla_pos input").input_value()  # the selectbox shows its value in an input
        assert "7: 'l'" in picker, f"the DLA page's position picker must show the clicked chip's position: {picker!r}"
        page.wait_for_selector('[data-testid="stPlotlyChart"] .gtitle:has-text("after position 7")', timeout=WAIT_MS)
        page.locator('[data-testid="stSidebarNav"] a', has_text="Residual stream").first.click()
        page.wait_for_selector('h1:has-text("Residual stream")', timeout=WAIT_MS)
        wait_idle(page)
        picker = page.locator(".st-key-resid_pos input").input_value()
        assert "7: 'l'" in picker, f"the residual page's picker must follow the chip: {picker!r}"
        assert not page.locator('[data-testid="stException"]').all_inner_texts(), "a page raised"
        browser.close()


def test_flow_graph_click_and_causal_check_in_chromium(server):
    """Information flow on induction-2l: clicking an edge of the graph picks it, and the causal check runs on it and
    shows the exact change beside attribution's prediction."""
    with playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(server, timeout=WAIT_MS)
        page.wait_for_selector('[data-testid="stPlotlyChart"]', timeout=WAIT_MS)
        wait_idle(page)
        choose_checkpoint(page, "induction-2l")
        page.locator('[data-testid="stSidebarNav"] a', has_text="Information flow").first.click()
        page.wait_for_selector('h1:has-text("Information flow")', timeout=WAIT_MS)
        wait_idle(page)
        page.wait_for_selector('[data-testid="stPlotlyChart"] .main-svg', timeout=WAIT_MS)
        edge_box = page.locator('[data-testid="stSelectbox"]:has-text("Edge")').first
        before = edge_box.locator("input").input_value()
        marks = page.locator('[data-testid="stPlotlyChart"]').first.locator(".scatterlayer .trace").nth(-2)
        points = marks.locator("path.point")
        assert points.count() >= 2, "the graph's edges carry clickable midpoints"
        points.nth(0).click(force=True)  # another edge than the top one, which the selectbox starts on
        wait_idle(page)
        page.wait_for_timeout(500)
        after = edge_box.locator("input").input_value()
        assert after != before, f"clicking an edge must select it (still {after!r})"
        page.get_by_role("button", name="Patch this edge from the corrupted prompt").click()
        wait_idle(page)
        page.wait_for_selector('[data-testid="stMetric"]:has-text("Exact change when patched")', timeout=WAIT_MS)
        values = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
        assert len(values) == 3 and all(v.strip() for v in values), f"the causal check shows three numbers: {values}"
        assert page.locator('[data-testid="stException"]').count() == 0
        save_screenshot(page, SHOTS / "flow_causal_check.png")
        browser.close()
