"""Every cell of lessons 00-02 works when run a second time right after the first (a student who
re-runs a cell must not meet a traceback, a leaked server or a second wire tap)."""

from __future__ import annotations

import nbformat
import pytest
from notebook_runner import LESSONS, NOTEBOOK_TIMEOUT_S, error_outputs, run_quick

TWICE = [p for p in LESSONS if p.name[:2] in ("00", "01", "02")]
COUNT_THREADS = """import collections, threading
print(dict(collections.Counter(t.name for t in threading.enumerate() if t.name.startswith("labkit-"))))"""


@pytest.mark.notebook
@pytest.mark.timeout(2 * NOTEBOOK_TIMEOUT_S)
@pytest.mark.parametrize("path", TWICE, ids=[p.stem for p in TWICE])
def test_every_cell_runs_twice(path):
    nb = nbformat.read(path, as_version=4)
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        if cell.cell_type == "code":
            cells.append(nbformat.v4.new_code_cell(cell.source))
    cells.append(nbformat.v4.new_code_cell(COUNT_THREADS))
    nb.cells = cells
    run_quick(nb, f"{path.name}, every cell twice")
    assert not error_outputs(nb.cells), f"{path.name}: {error_outputs(nb.cells)[:2]}"
    threads = eval(nb.cells[-1].outputs[0]["text"])  # noqa: S307 - a dict the cell printed
    assert threads.get("labkit-WireTap", 0) <= 1, f"{path.name} leaked wire taps: {threads}"
    assert threads.get("labkit-server", 0) <= 1, f"{path.name} leaked lab servers: {threads}"
