"""The MiniGPT Lens dashboard: ``streamlit run dashboards/app.py``.

``app.py`` is only the router; ``sidebar.py`` picks the checkpoint and the prompt; ``state.py`` loads
models once per process; ``analyses.py`` caches the one model or ``interp`` call each page makes;
``plots.py`` turns DataFrames into plotly figures (no Streamlit there); ``views/`` holds one file per page.
"""
