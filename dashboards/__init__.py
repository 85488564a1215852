"""The MiniGPT Lens dashboard: ``streamlit run dashboards/app.py``.

``app.py`` is only the router; ``sidebar.py`` picks the checkpoint and the prompt; ``state.py`` loads
models once per process, hands them to the pages as one hashable ``ModelRef`` and checks what the user typed;
``prompts.py`` makes the prompts the pages start from; ``analyses/`` caches the one model or ``interp`` call each
chart makes (one module per page family, over one cached forward); ``plots/`` turns DataFrames into plotly figures
(no Streamlit there); ``views/`` holds one file per page. Import tiers (:data:`TIERS`, held by
``tests/test_architecture.py``): a page in ``views/`` imports only ``state``, ``analyses`` and ``plots`` of the
project, so every page reaches the model through one door.
"""

TIERS: tuple[tuple[str, ...], ...] = (
    ("dashboards.plots", "dashboards.prompts"),  # DataFrame -> Figure; the prompts pages start from: no Streamlit
    ("dashboards.state",),  # the model, loaded once, as a ModelRef; the checked prompt; the shared widgets
    ("dashboards.analyses",),  # the one cached model / interp call behind each chart, one module per page family
    ("dashboards.sidebar",),
    ("dashboards.views",),  # pages: widgets -> analyses -> plots -> st.plotly_chart
    ("dashboards.app",),  # the router
)
VIEW_IMPORTS = ("dashboards.state", "dashboards.analyses", "dashboards.plots")  # all a page may import of ours
