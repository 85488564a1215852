"""Dashboard safety: localhost by default, pages and sessions isolated.

Checked uploads that keep the previous model: tests/model/checkpoint_safety/test_checkpoint_uploads.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import streamlit
import tomllib
from conftest import assert_renders, errors, open_page
from streamlit.testing.v1 import AppTest

from dashboards import analyses, state
from interp.cli import dashboard as cli_dashboard
from interp.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["prediction", "attention", "residual", "logit_attribution", "ablation", "qk_ov", "discovery"]
pytestmark = pytest.mark.usefixtures("restore_torch_threads")


# ------------------------------------------------------------------------------------------- binding
def test_config_binds_localhost_and_caps_uploads():
    """.streamlit/config.toml: localhost only, XSRF/CORS protection not turned off, the code's upload limit."""
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server = config["server"]
    assert server["address"] in ("localhost", "127.0.0.1"), f"the dashboard must bind to localhost: {server}"
    assert server.get("enableXsrfProtection", True) and server.get("enableCORS", True), "protection switched off"
    assert server["maxUploadSize"] * 2**20 == state.MAX_UPLOAD_BYTES, "config and code disagree on the upload limit"
    assert config["browser"]["gatherUsageStats"] is False, "the dashboard must make no network calls of its own"


def test_cli_and_make_serve_on_localhost():
    """`minigpt dashboard` and `make dashboard` both pass --server.address localhost unless told otherwise."""
    assert build_parser().parse_args(["dashboard"]).address == "localhost", "minigpt dashboard's default address"
    argv = cli_dashboard.dashboard_argv()
    assert argv[argv.index("--server.address") + 1] == "localhost", argv
    recipe = re.search(r"^dashboard:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert recipe, "no dashboard target in the Makefile"
    assert "dashboards/app.py" in recipe.group(1) and "--server.address localhost" in recipe.group(1), recipe.group(1)


def test_app_warns_when_it_listens_on_every_interface(monkeypatch):
    """Started without an address (outside the repository root), the sidebar says so; normally it does not."""
    assert not open_page().sidebar.warning, "a warning although the server is bound to localhost"
    real = streamlit.get_option
    monkeypatch.setattr(streamlit, "get_option", lambda key: None if key == "server.address" else real(key))
    at = open_page()
    assert any("every network interface" in w.value for w in at.sidebar.warning), "no warning on 0.0.0.0"


# ------------------------------------------------------------------------------------------- isolation
def test_error_on_one_page_stays_on_that_page(monkeypatch):
    """An analysis that raises shows st.error on its page; the other pages, and later that one, still render."""

    def broken(*args, **kwargs):
        raise RuntimeError("attention analysis broke (test)")

    monkeypatch.setattr(analyses.attention, "attention_patterns", broken)
    at = open_page("attention")
    assert not at.exception, "the page's exception reached the user as a traceback"
    assert any("attention analysis broke (test)" in e and "other pages still work" in e for e in errors(at)), errors(at)
    for page in PAGES:
        if page != "attention":
            at.switch_page(f"views/{page}.py").run()
            assert_renders(at)
    monkeypatch.undo()
    at.switch_page("views/attention.py").run()
    assert_renders(at, 3)


def test_failing_section_keeps_the_rest_of_its_page(monkeypatch):
    """A section whose analysis refuses its input shows why; the page's other sections still draw."""
    refuse = lambda *a, **k: (_ for _ in ()).throw(ValueError("lens refused (test)"))  # noqa: E731
    monkeypatch.setattr(analyses.residual, "lens", refuse)
    at = open_page("residual")
    assert not at.exception and "Logit lens: lens refused (test)" in errors(at), errors(at)
    assert len(at.get("plotly_chart")) == 1, "the residual-writes chart must still be drawn"


def charts(at: AppTest) -> list[str]:
    return [chart.proto.spec for chart in at.get("plotly_chart")]


def test_sessions_do_not_see_each_others_state():
    """Two sessions: changing model, prompt and settings in one leaves the other's selection and charts as they were."""
    a, b = open_page(), open_page()
    before = charts(b)
    a.sidebar.selectbox(key="checkpoint_choice").set_value("induction-2l").run()
    a.text_area(key="prompt").input("abcabc").run()
    a.slider(key="pred_temperature").set_value(0.0).run()
    a.sidebar.selectbox(key="checkpoint_choice").set_value("a .safetensors path").run()
    a.sidebar.text_input(key="checkpoint_path").input("/no/such.safetensors").run()
    b.run()
    sel_a, sel_b = a.session_state["selection"], b.session_state["selection"]
    assert (sel_a.label, sel_a.prompt) == ("induction-2l", "abcabc"), "session a lost its own choices"
    assert (sel_b.label, sel_b.prompt) == ("minigpt-text", state.DEFAULT_PROMPT), "session b sees session a's state"
    assert b.slider(key="pred_temperature").value == 1.0 and not errors(b), "a's settings or errors leaked into b"
    assert charts(b) == before, "session b's charts changed when session a changed its inputs"


def test_cached_frames_are_copies():
    """A page that mutates a cached frame cannot change what the next caller (another session) gets."""
    model = state.random_model(0)
    ids = state.check_prompt(model, "hello")
    first = analyses.model.next_token_distribution(state.ModelRef(model, "random:0"), ids, 2)
    first.loc[:, "sample_prob"] = -1.0
    again = analyses.model.next_token_distribution(state.ModelRef(model, "random:0"), ids, 2)
    assert (again["sample_prob"] >= 0).all(), "st.cache_data handed out a shared, mutable frame"


def test_cached_analyses_key_on_the_model_id_not_the_weights():
    """A ModelRef is hashed by its id: the same id is one cache entry (the weights are never hashed), a new id a
    new one; every cached analysis takes the model as one ModelRef."""
    import inspect

    model = state.random_model(0)
    ids = state.check_prompt(model, "hello")
    first = analyses.model.next_token_distribution(state.ModelRef(model, "random:0"), ids, 2)
    other = state.random_model(1)
    same_id = analyses.model.next_token_distribution(state.ModelRef(other, "random:0"), ids, 2)
    assert same_id.equals(first), "the same id must be one cache entry, whatever object carries it"
    new_id = analyses.model.next_token_distribution(state.ModelRef(other, "random:1"), ids, 2)
    assert not new_id.equals(first), "a new id (new weights) must be computed again"
    for family in (analyses.model, analyses.attention, analyses.residual, analyses.ablation, analyses.qk_ov,
                   analyses.graph, analyses.features, analyses.flow):  # fmt: skip
        cached = [fn for fn in vars(family).values() if hasattr(fn, "__wrapped__")]
        assert cached, f"{family.__name__} has no cached function: is the check blind?"
        for fn in cached:
            params = list(inspect.signature(fn).parameters)
            assert "model_id" not in params and "_model" not in params, f"{fn.__name__} takes {params}"
