"""The README cannot rot: every ```python block in it runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_python_blocks():
    """The README shows Python usage (so the test below is not vacuous)."""
    assert len(BLOCKS) >= 2, "README.md lost its ```python examples"


@pytest.mark.parametrize("source", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(source, tmp_path, monkeypatch, capsys):
    """Each README code block executes top to bottom in a fresh namespace."""
    monkeypatch.chdir(tmp_path)
    code = compile(source, f"README.md python block:\n{source}", "exec")
    exec(code, {"__name__": "__readme__"})
