"""MiniGPT Lens dashboard, the router: ``streamlit run dashboards/app.py --server.address localhost``.

It draws the sidebar (checkpoint, prompt, token strip) and runs the chosen page from ``views/``.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts only this file's folder on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboards import sidebar  # noqa: E402

VIEWS = Path(__file__).resolve().parent / "views"
PAGES = [
    st.Page(VIEWS / "prediction.py", title="Model & prediction", icon=":material/psychology:", default=True),
    st.Page(VIEWS / "attention.py", title="Attention", icon=":material/grid_on:"),
    st.Page(VIEWS / "residual.py", title="Residual stream", icon=":material/stacked_bar_chart:"),
    st.Page(VIEWS / "logit_attribution.py", title="Direct logit attribution", icon=":material/bar_chart:"),
    st.Page(VIEWS / "ablation.py", title="Ablation & patching", icon=":material/content_cut:"),
    st.Page(VIEWS / "circuits.py", title="Circuits", icon=":material/hub:"),
]

st.set_page_config(page_title="MiniGPT Lens", page_icon=":material/visibility:", layout="wide")
page = st.navigation(PAGES)
sidebar.render()
page.run()
