"""MiniGPT Lens dashboard, the router: ``streamlit run dashboards/app.py --server.address localhost``.

It draws the sidebar (checkpoint, prompt, token strip) and runs the chosen page from ``views/``.
An exception on a page becomes an ``st.error`` on that page (the traceback goes to the server log),
so one failing analysis never takes the other pages down. With ``MINIGPT_DASHBOARD_TIMINGS`` set to a file,
every script run appends its server time there (``state.log_run_time``; the browser and load tests print them).
"""

import time

STARTED = time.perf_counter()  # this script run's start: on a cold start the logged time includes the imports

import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts only this file's folder on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
import torch  # noqa: E402

from dashboards import sidebar, state  # noqa: E402

# One intra-op thread: the dashboard's tensors are tiny (a 32-token prompt), so more threads only add
# synchronisation (a locked-config forward takes ~2 ms on one thread and ~15 ms on two of a busy
# machine), and Streamlit already serves each session in its own thread.
THREADS = int(os.environ.get("MINIGPT_DASHBOARD_THREADS", "1"))
if torch.get_num_threads() != THREADS:
    torch.set_num_threads(THREADS)

VIEWS = Path(__file__).resolve().parent / "views"
PAGES = [
    st.Page(VIEWS / "prediction.py", title="Model & prediction", icon=":material/psychology:", default=True),
    st.Page(VIEWS / "model_card.py", title="Model card", icon=":material/description:"),
    st.Page(VIEWS / "attention.py", title="Attention", icon=":material/grid_on:"),
    st.Page(VIEWS / "residual.py", title="Residual stream", icon=":material/stacked_bar_chart:"),
    st.Page(VIEWS / "logit_attribution.py", title="Direct logit attribution", icon=":material/bar_chart:"),
    st.Page(VIEWS / "ablation.py", title="Ablation & patching", icon=":material/content_cut:"),
    st.Page(VIEWS / "qk_ov.py", title="QK / OV", icon=":material/hub:"),
    st.Page(VIEWS / "features.py", title="Features", icon=":material/lightbulb:"),
    st.Page(VIEWS / "discovery.py", title="Circuit discovery", icon=":material/account_tree:"),
    st.Page(VIEWS / "flow.py", title="Information flow", icon=":material/route:"),
    st.Page(VIEWS / "dynamics.py", title="Training dynamics", icon=":material/timeline:"),
]

st.set_page_config(page_title="MiniGPT Lens", page_icon=":material/visibility:", layout="wide")
page = st.navigation(PAGES)
sidebar.render()
if not st.get_option("server.address"):  # started outside the repository root, without `minigpt dashboard`
    st.sidebar.warning(
        "This server listens on every network interface: start it with `minigpt dashboard` or "
        "`make dashboard` (localhost only) unless others on your network should reach it."
    )
try:
    page.run()
except Exception as err:  # one page's failure stays on that page; st.stop/st.rerun are not Exceptions
    logging.getLogger("dashboards").exception("page %s failed", page.title)
    st.error(
        f"This page stopped with an error ({type(err).__name__}: {err}). The other pages still work; "
        "this is a bug in MiniGPT Lens, please report it (the traceback is in the server log)."
    )
finally:  # also after st.stop / st.rerun, which end a run early
    state.log_run_time(page.title, time.perf_counter() - STARTED)
