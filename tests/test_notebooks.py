"""notebooks/: each notebook executes top to bottom in a fresh kernel, and the committed files are built and executed.

The notebooks are executed in memory (nbclient, working directory a temporary folder, the repository on
``PYTHONPATH``) and never written back. Rebuild the committed notebooks with ``python notebooks/build.py``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError, CellTimeoutError

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = [
    "01_quickstart", "02_induction_heads", "03_dla_and_export", "04_train_your_own", "05_from_transformerlens",
    "06_circuit_discovery", "07_training_dynamics", "08_features",
]  # fmt: skip
PLOTLY_MIME = "application/vnd.plotly.v1+json"
MAX_NOTEBOOK_BYTES = 1_000_000  # plotly.js alone is ~3.5 MB: a bigger file means it was embedded
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _load_build():
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOK_DIR / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)


def _errors(nb: nbformat.NotebookNode) -> list[tuple[int, dict]]:
    return [
        (i, out) for i, cell in enumerate(nb.cells) for out in cell.get("outputs", []) if out.output_type == "error"
    ]


def _failure(name: str, nb: nbformat.NotebookNode, index: int | None, err: Exception) -> str:
    """The failing cell's number and source, and the error (without terminal colours)."""
    errors = _errors(nb)
    if errors:
        index, out = errors[0]
        what = f"{out.ename}: {out.evalue}\n" + ANSI.sub("", "\n".join(out.traceback[-6:]))
    else:
        what = ANSI.sub("", f"{type(err).__name__}: {err}")[-3000:]
    source = nb.cells[index].source if index is not None else "(before the first cell: the kernel did not start)"
    return f"{name}.ipynb failed in cell {index}:\n{source}\n---\n{what}"


def test_notebook_list_matches_sources():
    """Every notebook source in notebooks/src has a test here and a committed notebook beside it."""
    assert build.notebook_names() == NOTEBOOKS, "a notebook source was added or removed: update NOTEBOOKS"
    missing = [n for n in NOTEBOOKS if not (NOTEBOOK_DIR / f"{n}.ipynb").is_file()]
    assert not missing, f"notebooks {missing} were never built: run python notebooks/build.py"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_matches_its_source(name):
    """The committed notebook holds exactly the cells of notebooks/src/NAME.py (stale if not: rebuild it)."""
    committed = [(c.cell_type, c.source) for c in _read(name).cells]
    expected = [(c.cell_type, c.source) for c in build.notebook_from_source(name).cells]
    assert committed == expected, (
        f"{name}.ipynb is out of date with src/{name}.py: run python notebooks/build.py {name}"
    )


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_outputs_and_figures(name):
    """The committed notebook was executed top to bottom without errors and shows inline plotly figures."""
    path = NOTEBOOK_DIR / f"{name}.ipynb"
    nb = _read(name)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), f"{name}.ipynb was not executed in order: counts {counts}"
    assert not _errors(nb), f"{name}.ipynb was committed with an error output"
    figures = [o for c in nb.cells for o in c.get("outputs", []) if PLOTLY_MIME in o.get("data", {})]
    assert figures, f"{name}.ipynb shows no plotly figure (is the renderer plotly_mimetype?)"
    size = path.stat().st_size
    assert size < MAX_NOTEBOOK_BYTES, f"{name}.ipynb is {size:,} bytes: was plotly.js embedded in it?"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes_top_to_bottom(name, tmp_path):
    """The committed notebook runs without an error in a fresh kernel, in a temporary working directory."""
    path = NOTEBOOK_DIR / f"{name}.ipynb"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    nb = _read(name)
    started: list[int] = []
    try:
        build.execute(nb, tmp_path, timeout=300, on_cell=started.append)
    except (CellExecutionError, CellTimeoutError) as err:
        pytest.fail(_failure(name, nb, started[-1] if started else None, err), pytrace=False)
    assert not _errors(nb), _failure(name, nb, None, RuntimeError("an error output without an exception"))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before, f"executing {name}.ipynb rewrote the committed file"
