"""Build the notebooks from their sources in ``notebooks/src/`` and execute them, so they are committed with outputs.

Each ``notebooks/src/NAME.py`` is a plain Python file cut into cells by ``# %%`` lines (``# %% [markdown]``
starts a markdown cell whose lines are comments); lines before the first marker are a header and are
left out. This script turns each source into ``notebooks/NAME.ipynb`` and executes it top to bottom
with nbclient in a fresh kernel of *this* interpreter, working in a temporary directory, with the
repository on ``PYTHONPATH``. ``tests/test_notebooks.py`` executes the committed notebooks the same way
(without writing them) and checks that their cells still match these sources.

Usage (from the repository root)::

    .venv/bin/python notebooks/build.py                  # all notebooks
    .venv/bin/python notebooks/build.py 02_induction_heads
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent
SOURCE_DIR = NOTEBOOK_DIR / "src"
REPO_ROOT = NOTEBOOK_DIR.parent
KERNEL_NAME = "minigpt-lens-notebooks"  # a kernel spec written on the fly for this interpreter
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
CELL_TIMEOUT_S = 300
MARKER = "# %%"


def notebook_names() -> list[str]:
    """The notebooks that have a source, in order (``01_quickstart``, ...)."""
    return sorted(p.stem for p in SOURCE_DIR.glob("[0-9][0-9]_*.py"))


def parse_source(text: str) -> list[tuple[str, str]]:
    """``[(cell_type, source)]`` from a ``# %%``-delimited source (markdown lines lose their leading ``# ``)."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith(MARKER):
            kind = "markdown" if line[len(MARKER) :].strip() == "[markdown]" else "code"
            cells.append((kind, []))
        elif cells:
            cells[-1][1].append(line)
    out = []
    for kind, lines in cells:
        if kind == "markdown":
            lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines]
        source = "\n".join(lines).strip("\n")
        if source:
            out.append((kind, source))
    return out


def notebook_from_source(name: str) -> nbformat.NotebookNode:
    """An unexecuted notebook with the cells of ``src/NAME.py`` and stable cell ids."""
    cells = parse_source((SOURCE_DIR / f"{name}.py").read_text(encoding="utf-8"))
    nb = nbformat.v4.new_notebook()
    make = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell}
    nb.cells = [make[kind](source, id=f"{name[:2]}-{i:02d}") for i, (kind, source) in enumerate(cells)]
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    return nb


def kernel_environment(jupyter_dir: Path) -> dict[str, str]:
    """Environment for a kernel of this interpreter: a kernel spec under ``jupyter_dir``, the repo importable.

    One thread per kernel: the models are tiny (threads cost more than they give) and the machines shared.
    """
    spec_dir = jupyter_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "MiniGPT Lens notebooks",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    env = dict(os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(jupyter_dir), env.get("JUPYTER_PATH")]))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def execute(
    nb: nbformat.NotebookNode,
    workdir: Path,
    timeout: int = CELL_TIMEOUT_S,
    on_cell: Callable[[int], None] | None = None,
) -> float:
    """Execute ``nb`` in place in a fresh kernel working in ``workdir``; returns the seconds it took.

    Raises nbclient's ``CellExecutionError`` (or ``CellTimeoutError``) on the first failing cell;
    ``on_cell(index)`` is called as each cell starts.
    """
    env = kernel_environment(Path(workdir) / ".jupyter")
    saved = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = env["JUPYTER_PATH"]  # the kernel spec lookup happens in this process
    hook = None if on_cell is None else (lambda cell, cell_index: on_cell(cell_index))
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(workdir)}},
        record_timing=False,
        on_cell_execute=hook,
    )
    start = time.perf_counter()
    try:
        client.execute(env=env)
    finally:
        if saved is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = saved
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    return time.perf_counter() - start


def build(name: str) -> float:
    """Write ``notebooks/NAME.ipynb`` from its source, executed; returns the execution time in seconds."""
    nb = notebook_from_source(name)
    with tempfile.TemporaryDirectory() as workdir:
        seconds = execute(nb, Path(workdir))
    nbformat.validate(nb)
    nbformat.write(nb, NOTEBOOK_DIR / f"{name}.ipynb")
    return seconds


def main(argv: list[str]) -> int:
    names = argv or notebook_names()
    unknown = sorted(set(names) - set(notebook_names()))
    if unknown:
        print(f"no source for {unknown}; sources: {notebook_names()}", file=sys.stderr)
        return 2
    for name in names:
        seconds = build(name)
        size = (NOTEBOOK_DIR / f"{name}.ipynb").stat().st_size
        print(f"{name}.ipynb: executed in {seconds:.1f} s, {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
