"""The ``minigpt dashboard`` subcommand: ``streamlit run dashboards/app.py``, bound to localhost unless told otherwise.

Example:
    >>> dashboard_argv(port=8502)[-4:]
    ['--server.address', 'localhost', '--server.port', '8502']
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

USE_EXEC = os.name == "posix"  # replace this process by the server (elsewhere: run it as a child)
DASHBOARD_EXAMPLES = (
    "  minigpt dashboard                      # http://localhost:8501\n"
    "  minigpt dashboard --port 8600\n"
    "  minigpt dashboard --address 0.0.0.0    # reachable from other machines: only on a trusted network"
)


def add_dashboard_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    p.add_argument("--address", default="localhost", help="address to bind (default localhost: this machine only)")


def dashboard_app_path() -> Path:
    """``dashboards/app.py`` of the installed package, found without importing it (interp never imports dashboards).

    Example:
        >>> dashboard_app_path().name
        'app.py'
    """
    spec = importlib.util.find_spec("dashboards")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    app = Path(locations[0]) / "app.py" if locations else None
    if app is None or not app.is_file():
        raise FileNotFoundError(
            "cannot find dashboards/app.py beside the interp package; run from the repository root or "
            "install it with pip install -e ."
        )
    return app


def dashboard_argv(port: int = 8501, address: str = "localhost") -> list[str]:
    """The command ``minigpt dashboard`` runs: this Python's ``streamlit run`` on the dashboard app.

    Usage statistics are switched off (the toolkit makes no network calls of its own accord).

    Example:
        >>> dashboard_argv()[1:4]
        ['-m', 'streamlit', 'run']
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"--port must be an integer in 1..65535, got {port!r}")
    if not address or any(c.isspace() for c in address):
        raise ValueError(f"--address must be a host name or IP address such as localhost, got {address!r}")
    app = str(dashboard_app_path())
    options = ["--browser.gatherUsageStats", "false", "--server.address", address, "--server.port", str(port)]
    return [sys.executable, "-m", "streamlit", "run", app, *options]


def run_dashboard(args: argparse.Namespace) -> int:
    argv = dashboard_argv(args.port, args.address)
    if importlib.util.find_spec("streamlit") is None:
        raise ValueError(f"streamlit is not installed in {sys.executable}; install it with pip install streamlit")
    print(f"serving the dashboard on http://{args.address}:{args.port} (Ctrl-C stops it)", flush=True)
    if USE_EXEC:  # this process becomes the server: Ctrl-C and kill reach it directly, nothing is orphaned
        sys.stderr.flush()
        os.execv(argv[0], argv)
    try:
        return subprocess.run(argv, check=False).returncode
    except KeyboardInterrupt:  # Ctrl-C reaches streamlit too, which shuts down by itself
        return 130
