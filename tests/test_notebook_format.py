"""Committed notebooks are valid, carry no outputs, and have the shape every lesson promises."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").rglob("*.ipynb"))
LESSONS = [p for p in NOTEBOOKS if re.match(r"\d\d-", p.name)]
MAX_CELL_LINES = 15


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_valid_and_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {index} has outputs: strip them"
            assert cell.execution_count is None, f"{path.name} cell {index} has an execution count"
    assert "widgets" not in nb.metadata, f"{path.name} stores widget state: strip it"


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_shape(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "learning goals" in first.source.lower()
    sources = [c.source for c in nb.cells]
    assert any("lk.start(" in s for s in sources if s), "a lesson starts the lab"
    headings = [s.lower() for c, s in zip(nb.cells, sources, strict=True) if c.cell_type == "markdown"]
    assert any(h.lstrip("# ").startswith("summary") for h in headings), "needs a Summary section"
    assert any("exercise" in h for h in headings), "needs Exercises"
    checks = [s for c, s in zip(nb.cells, sources, strict=True)
              if c.cell_type == "code" and "lk.check." in s]
    assert len(checks) >= 2, "at least two exercises checked by lk.check"
    long_cells = [s.splitlines()[0] for c, s in zip(nb.cells, sources, strict=True)
                  if c.cell_type == "code" and len(s.splitlines()) > MAX_CELL_LINES]
    assert not long_cells, f"cells over {MAX_CELL_LINES} lines belong in labkit: {long_cells}"
