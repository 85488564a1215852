"""Many users at once on the real server: 8 Chromium sessions, each its own prompt and ablation, 300 reruns.

Against `streamlit run dashboards/app.py` (``tests/e2e/streamlit_server.py``), each session opens the Ablation page,
types its own prompt and ablates its own head, then changes the neuron it ablates again and again; all 8 sessions
rerun at once. After every rerun the losses a session shows must equal ``interp.ablate`` run alone in this process
on the same prompt and components, no page may show an error or a traceback, and the server's resident memory may
grow less than 100 MB over the 300 reruns. The p50 / p95 re-render times (the browser's, from the keystroke to the
finished run showing it, and the server's own script time) and the memory growth are printed; no time is judged.
tests/model/test_concurrency.py holds the same model under 16 threads in-process; this one is the server end to end.
"""

from __future__ import annotations

import pytest
import torch
from streamlit_server import (
    CHROMIUM_ARGS,
    WAIT_MS,
    chromium_path,
    percentile,
    serve,
    sync_playwright,
)

from dashboards.state import check_prompt
from interp.intervene.ablate import ablate
from model.network.logits import next_token_loss
from model.network.minigpt import MiniGPT

pytestmark = pytest.mark.browser

SESSIONS, RERUNS = 8, 300
ROUNDS = -(-RERUNS // SESSIONS)  # rounds of one rerun per session: 38 x 8 = 304 reruns
RSS_GROWTH_MB = 100
PROMPTS = [  # one per session, each at most 31 characters (the locked config's context)
    "the value of the attribute is",
    "a list of the arguments",
    "the name of the module",
    "if the object is a class",
    "return the list of names",
    "the class returns a value",
    "a module of the object is",
    "the names of the values",
]
VIEWPORT = {"width": 1200, "height": 900}


def neurons_of(session: int, round_: int) -> str:
    """The neuron a session ablates in a round (``LAYER.NEURON``), different in every round and session."""
    return f"{round_ % 2}.{(37 * session + 11 * round_) % 256}"


def expected_losses(model: MiniGPT, prompt: str, head: tuple[int, int], neurons: str) -> tuple[str, str]:
    """The clean and the ablated loss as the page prints them, computed alone by the library."""
    tokens = torch.tensor([check_prompt(model, prompt)])
    with torch.no_grad():
        clean = next_token_loss(model(tokens), tokens).item()
    result = ablate(model, tokens, heads=[head], neurons=neurons or None, method="zero")
    return f"{clean:.3f}", f"{result.loss:.3f}"


def shown_losses(page) -> tuple[str, str]:
    """The ``Loss, clean`` and ``Loss, ablated`` metrics on the Ablation page."""
    values = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
    assert len(values) == 2, f"the Ablation page shows {len(values)} loss metrics, not 2 (clean, ablated)"
    return values[0].strip(), values[1].strip()


def assert_no_error(page, session: int) -> None:
    """No exception element, no error alert and no traceback on the page."""
    exceptions = page.locator('[data-testid="stException"]').all_inner_texts()
    assert not exceptions, f"session {session} raised: {exceptions[0][:500]}"
    errors = page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
    assert not errors, f"session {session} shows an error: {errors[0][:500]}"
    assert "Traceback" not in page.inner_text("body"), f"session {session} shows a traceback"


SHOWN = """(text) => {  // the run that shows `text` on the page has finished; its end time is kept
  const app = document.querySelector('[data-testid="stApp"]');
  const main = document.querySelector('[data-testid="stMain"]');
  if (!app || !main || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (!main.innerText.includes(text)) return false;
  window.__shownAt = performance.now();
  return true;
}"""


def wait_shown(page, text: str) -> None:
    """Wait until the page's finished run shows ``text`` (what the page echoes of the input just given)."""
    page.wait_for_function(SHOWN, arg=text, timeout=WAIT_MS)


def neuron_words(neurons: str) -> str:
    layer, neuron = neurons.split(".")
    return f"neuron {neuron} of MLP {layer} ("


def open_session(browser, url: str, prompt: str, head: tuple[int, int]):
    """A new browser context on the Ablation page with ``prompt`` typed and ``head`` ablated."""
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(f"{url}/ablation", timeout=WAIT_MS)
    wait_shown(page, "Ablation & patching")
    box = page.locator('[data-testid="stSidebar"] textarea').first
    box.fill(prompt)
    box.press("Control+Enter")
    wait_shown(page, f"Clean: {prompt}")
    page.locator('[data-testid="stMultiSelect"]').first.click()
    page.get_by_role("option", name=f"L{head[0]}H{head[1]}", exact=True).click()
    page.keyboard.press("Escape")
    wait_shown(page, f"head L{head[0]}H{head[1]} (")
    return page


def test_eight_sessions_each_see_their_own_numbers_through_300_reruns(capsys):
    """8 concurrent sessions each show interp.ablate's numbers for their own prompt and head, rerun after rerun;
    no error appears and the server's memory grows less than 100 MB over 300 reruns."""
    model = MiniGPT.from_pretrained("minigpt-text").eval()
    heads = [(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]
    assert len(heads) >= SESSIONS, "the test ablates a different head in each session"
    browser_s: list[float] = []
    with serve("load-test") as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        pages = [open_session(browser, server.url, PROMPTS[i], heads[i]) for i in range(SESSIONS)]
        for i, page in enumerate(pages):
            assert shown_losses(page) == expected_losses(model, PROMPTS[i], heads[i], ""), (
                f"session {i} shows another session's numbers (or a stale run) for {PROMPTS[i]!r}, head {heads[i]}"
            )
            assert_no_error(page, i)
        rss_before, logged = server.rss_mb(), len(server.times())
        for round_ in range(ROUNDS):
            for i, page in enumerate(pages):  # all 8 reruns are started before any is awaited: they run at once
                field = page.locator('[data-testid="stTextInput"] input').first
                field.fill(neurons_of(i, round_))
                page.evaluate("window.__typed = performance.now()")
                field.press("Enter")
            for i, page in enumerate(pages):
                wait_shown(page, neuron_words(neurons_of(i, round_)))
                browser_s.append(page.evaluate("(window.__shownAt - window.__typed) / 1000"))
                want = expected_losses(model, PROMPTS[i], heads[i], neurons_of(i, round_))
                assert shown_losses(page) == want, (
                    f"session {i}, round {round_}: the page shows {shown_losses(page)} but interp.ablate alone gives "
                    f"{want} for {PROMPTS[i]!r}, head {heads[i]}, neurons {neurons_of(i, round_)}: a session saw "
                    "another one's ablation, or a cached result under the wrong key"
                )
                assert_no_error(page, i)
        rss_after = server.rss_mb()
        browser.close()
        server_s = [t["seconds"] for t in server.times()[logged:]]
        log = server.log.read_text()
    growth = rss_after - rss_before
    with capsys.disabled():
        print(f"\nload test: {SESSIONS} sessions, {len(browser_s)} reruns on the Ablation page")
        print(f"  re-render, browser (keystroke to finished run): p50 {percentile(browser_s, 50):.3f} s, "
              f"p95 {percentile(browser_s, 95):.3f} s")  # fmt: skip
        print(f"  re-render, server (script run):                 p50 {percentile(server_s, 50):.3f} s, "
              f"p95 {percentile(server_s, 95):.3f} s")  # fmt: skip
        print(f"  server RSS {rss_before:.1f} MB -> {rss_after:.1f} MB (growth {growth:+.1f} MB)")
    assert len(server_s) >= RERUNS, f"the server logged {len(server_s)} script runs, fewer than the {RERUNS} driven"
    assert "Traceback" not in log, f"the server logged a traceback: {log[log.index('Traceback') :][:800]}"
    assert growth < RSS_GROWTH_MB, (
        f"the server's resident memory grew {growth:.1f} MB over {len(server_s)} reruns (limit {RSS_GROWTH_MB} MB): "
        "a cache without max_entries, or something kept per session that is never freed"
    )
