"""The MiniGPT Lens dashboard: ``streamlit run dashboards/app.py``.

``app.py`` is only the router; ``sidebar.py`` picks the checkpoint and the prompt; ``state.py`` loads
models once per process and checks what the user typed; ``analyses.py`` caches the one model or ``interp``
call each page makes; ``plots/`` turns DataFrames into plotly figures (no Streamlit there); ``views/`` holds
one file per page. Import tiers (:data:`TIERS`, held by ``tests/test_architecture.py``): a page in ``views/``
imports only ``state``, ``analyses`` and ``plots`` of the project, so every page reaches the model through one door.
"""

TIERS: tuple[tuple[str, ...], ...] = (
    ("dashboards.plots", "dashboards.corruption"),  # DataFrame -> Figure; the corrupted prompts: no Streamlit
    ("dashboards.state",),  # the model, loaded once; the checked prompt
    # cached calls of three pages (re-exported by analyses)
    ("dashboards.feature_analyses", "dashboards.card_analyses", "dashboards.flow_analyses"),
    ("dashboards.analyses",),  # the one cached model / interp call behind each chart
    ("dashboards.sidebar",),
    ("dashboards.views",),  # pages: widgets -> analyses -> plots -> st.plotly_chart
    ("dashboards.app",),  # the router
)
VIEW_IMPORTS = ("dashboards.state", "dashboards.analyses", "dashboards.plots")  # all a page may import of ours
