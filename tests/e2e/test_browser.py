"""End to end in a real headless Chromium: `streamlit run dashboards/app.py`, a typed prompt, every page.

Needs Debian's ``chromium`` (``make browser`` installs it) and the Python ``playwright`` package; it never
downloads a browser. Screenshots of every page go to ``$MINIGPT_SCREENSHOTS`` (``make screenshots``
sets it to ``docs/screenshots/``, the README's pictures) or else to a temporary directory.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import pytest
from streamlit_server import (
    CHROMIUM_ARGS,
    RUN_COUNTER,
    WAIT_MS,
    chromium_path,
    runs,
    serve,
    sync_playwright,
    wait_idle,
    wait_runs,
)  # fmt: skip

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("MINIGPT_SCREENSHOTS") or tempfile.mkdtemp(prefix="minigpt-screenshots-"))
PAGES = {  # sidebar link text -> screenshot name
    "Model & prediction": "prediction",
    "Model card": "model_card",
    "Attention": "attention",
    "Residual stream": "residual",
    "Direct logit attribution": "logit_attribution",
    "Ablation & patching": "ablation",
    "QK / OV": "qk_ov",
    "Circuit discovery": "discovery",
    "Information flow": "flow",
    "Features": "features",
    "Training dynamics": "dynamics",
}
PROMPT = "the list of the names is the li"  # 31 characters: the longest prompt the locked config takes
VIEWPORT = {"width": 1440, "height": 1000}
CHIPS = '[data-testid="stSidebar"] .st-key-token_chips button'  # the sidebar's token chips (st.pills)


@pytest.fixture(scope="module")
def server():
    """A `streamlit run dashboards/app.py` on a free localhost port, stopped after the module."""
    with serve("browser-test") as running:
        yield running


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


def first_plot(browser, url: str) -> tuple[object, float]:
    """A new page on ``url`` (left open) and the seconds from opening it to its first drawn plot."""
    page = browser.new_page(viewport=VIEWPORT)
    page.add_init_script(RUN_COUNTER)
    start = time.perf_counter()
    page.goto(url, timeout=WAIT_MS)
    page.wait_for_selector('[data-testid="stPlotlyChart"] .main-svg', timeout=WAIT_MS)
    seconds = time.perf_counter() - start
    wait_idle(page)
    return page, seconds


def print_timings(rows: list[tuple[str, float, float]]) -> None:
    """The browser's and the server's seconds for each step (printed, never judged: CI machines are shared)."""
    print("\nbrowser test timings (browser: action to the first drawn plot; server: its script runs)")
    for what, browser_s, server_s in rows:
        print(f"  {what:42s} browser {browser_s:6.2f} s   server {server_s:6.2f} s")


def test_every_page_renders_in_chromium(server, capsys):
    """Typing a prompt and opening each page shows at least one plot and no exception; screenshots are saved.

    The time to the first plot (cold server, then a second visitor on the warm one) and of every page switch are
    printed beside the server's own time for the same script runs.
    """
    SHOTS.mkdir(parents=True, exist_ok=True)
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page, seconds = first_plot(browser, server.url)
        rows.append(("first plot, cold server (imports included)", seconds, sum(t["seconds"] for t in server.times())))
        box = page.locator('[data-testid="stSidebar"] textarea').first
        box.fill(PROMPT)
        box.press("Control+Enter")
        wait_idle(page)
        chips = page.locator(CHIPS).count()
        assert chips == len(PROMPT) + 1, (
            f"the token strip shows {chips} tokens, not <bos> + {len(PROMPT)}: prompt not applied?"
        )
        for link, name in PAGES.items():
            before, logged = runs(page), len(server.times())
            start = time.perf_counter()
            page.locator('[data-testid="stSidebarNav"] a', has_text=link).first.click()
            page.wait_for_selector(f'h1:has-text("{link}")', timeout=WAIT_MS)
            page.wait_for_selector('[data-testid="stPlotlyChart"] .main-svg', timeout=WAIT_MS)
            seconds = time.perf_counter() - start
            wait_runs(page, before)
            wait_idle(page)
            rows.append((f"switch to {link}", seconds, sum(t["seconds"] for t in server.times()[logged:])))
            errors = page.locator('[data-testid="stException"]').all_inner_texts()
            assert not errors, f"page {link!r} raised: {errors[0][:500]}"
            n_plots = page.locator('[data-testid="stPlotlyChart"]').count()
            assert n_plots >= 1, f"page {link!r} shows no plot; did its analysis fail?"
            save_screenshot(page, SHOTS / f"{name}.png")
        logged = len(server.times())
        second, seconds = first_plot(browser, server.url)
        rows.append(("first plot, second visitor (warm server)", seconds, server.times()[logged]["seconds"]))
        second.close()
        check_uploads(page)
        browser.close()
    with capsys.disabled():
        print_timings(rows)
    assert len(server.times()) > len(PAGES), "the server logged no time for its script runs (state.log_run_time)"
    for name in PAGES.values():
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000, f"screenshot {name}.png is (nearly) empty"


def launch(p):
    """Debian's chromium through playwright (never a downloaded browser)."""
    return p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


def opened(browser, url: str):
    """A new tab on the dashboard, its first page drawn."""
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url, timeout=WAIT_MS)
    page.wait_for_selector('[data-testid="stPlotlyChart"]', timeout=WAIT_MS)
    wait_idle(page)
    return page


def go_to(page, link: str) -> None:
    """Open the sidebar page ``link`` and wait until its run has finished."""
    page.locator('[data-testid="stSidebarNav"] a', has_text=link).first.click()
    page.wait_for_selector(f'h1:has-text("{link}")', timeout=WAIT_MS)
    wait_idle(page)


def test_a_clicked_token_chip_is_the_position_of_every_page(server):
    """Clicking a sidebar chip lights it, and another page opens with its position picker on that token."""
    with sync_playwright() as p:
        browser = launch(p)
        page = opened(browser, server.url)
        page.locator(CHIPS).nth(7).click()  # the default prompt "the value of ...": position 7 is its 'l'
        wait_idle(page)
        lit = page.locator('[data-testid="stSidebar"] .st-key-token_chips button[aria-checked="true"]')
        assert lit.all_inner_texts() == ["7 l"], f"the clicked chip must be the one lit: {lit.all_inner_texts()}"
        go_to(page, "Direct logit attribution")
        picker = page.locator(".st-key-dla_pos input").input_value()  # the selectbox shows its value in an input
        assert "7: 'l'" in picker, f"the DLA page's position picker must show the clicked chip's position: {picker!r}"
        page.wait_for_selector('[data-testid="stPlotlyChart"] .gtitle:has-text("after position 7")', timeout=WAIT_MS)
        go_to(page, "Residual stream")
        picker = page.locator(".st-key-resid_pos input").input_value()
        assert "7: 'l'" in picker, f"the residual page's picker must follow the chip: {picker!r}"
        assert not page.locator('[data-testid="stException"]').all_inner_texts(), "a page raised"
        browser.close()


def test_flow_graph_click_and_causal_check_in_chromium(server):
    """Information flow on induction-2l: clicking an edge of the graph picks it, and the causal check runs on it and
    shows the exact change beside attribution's prediction; clicking a node shows what that state predicts."""
    with sync_playwright() as p:
        browser = launch(p)
        page = opened(browser, server.url)
        choose_checkpoint(page, "induction-2l")
        go_to(page, "Information flow")
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
        state_box = page.locator('[data-testid="stSelectbox"]:has-text("State")').first
        before = state_box.locator("input").input_value()
        nodes = page.locator('[data-testid="stPlotlyChart"]').first.locator(".scatterlayer .trace").nth(-1)
        nodes.locator("path.point").nth(0).click(force=True)  # the lowest state at the first position drawn
        wait_idle(page)
        page.wait_for_timeout(500)
        after = state_box.locator("input").input_value()
        assert after != before, f"clicking a node must select its state (still {after!r})"
        title = f"What {after} predicts next"
        page.wait_for_selector(f'[data-testid="stPlotlyChart"] .gtitle:has-text("{title}")', timeout=WAIT_MS)
        assert page.locator('[data-testid="stException"]').count() == 0
        save_screenshot(page, SHOTS / "flow_causal_check.png")
        browser.close()


def hover_labels(page, chart) -> list[str]:
    """Hover the middle of ``chart``'s first subplot; the texts of every hover label then drawn."""
    chart.scroll_into_view_if_needed()
    box = chart.locator(".draglayer .nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector('[data-testid="stPlotlyChart"] .hoverlayer .hovertext', timeout=WAIT_MS)
    page.wait_for_timeout(300)  # the linked panels' labels come in the same frame; let plotly finish drawing
    return chart.locator(".hoverlayer .hovertext").all_text_contents()


def test_hover_on_one_panel_shows_the_same_token_on_the_others(server):
    """Linked hover: on the residual page one position hovered in the writes panel shows its label in the logit-lens
    panel too; on the attention grid one cell hovered shows the same query and key in every head of its row."""
    with sync_playwright() as p:
        browser = launch(p)
        page = opened(browser, server.url)
        go_to(page, "Residual stream")
        page.wait_for_selector('[data-testid="stPlotlyChart"] .main-svg', timeout=WAIT_MS)
        labels = hover_labels(page, page.locator('[data-testid="stPlotlyChart"]').first)
        positions = {m.group(1) for m in (re.search(r" at (\d+ \S)", text) for text in labels) if m}
        print(f"\nresidual page, one hover: {labels}")
        assert len(labels) == 2 and len(positions) == 1, f"both panels must label one position: {labels}"
        assert "|write|" in labels[0] and "next" in labels[1], f"the writes, then the logit lens: {labels}"
        go_to(page, "Attention")
        chart = page.locator('[data-testid="stPlotlyChart"]').first
        chart.locator(".main-svg").first.wait_for(timeout=WAIT_MS)
        n_cells = chart.locator(".draglayer .nsewdrag").count()
        labels = hover_labels(page, chart)
        reads = {re.sub(r"^.*?(query)", r"\1", text).split("weight")[0] for text in labels}
        print(f"attention grid ({n_cells} panels), one hover: {labels}")
        assert len(labels) >= 2 and len(reads) == 1, f"every head of the row must label one query and key: {labels}"
        assert len({text.split("query")[0] for text in labels}) == len(labels), f"one label per head: {labels}"
        assert not page.locator('[data-testid="stException"]').all_inner_texts(), "a page raised"
        browser.close()
