"""Every lesson in notebooks/ runs top to bottom in a real kernel in quick mode, with no error output."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]-*.ipynb"))
NOTEBOOK_BUDGET_S = 60
"""The quick-mode budget a lesson must fit in (the test allows some slack for a loaded machine)."""
CELL_TIMEOUT_S = 45


def test_there_are_lessons():
    assert NOTEBOOKS, "no notebooks found under notebooks/"


@pytest.mark.notebook
@pytest.mark.timeout(NOTEBOOK_BUDGET_S * 2 + 60)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path, monkeypatch):
    monkeypatch.setenv("LABKIT_QUICK", "1")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        allow_errors=False,
    )
    started = time.monotonic()
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        pytest.fail(f"{path.name} failed: {str(exc)[:3000]}")
    elapsed = time.monotonic() - started
    errors = [
        output
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
        or (output.get("output_type") == "stream" and output.get("name") == "stderr"
            and "Traceback" in output.get("text", ""))
    ]
    assert not errors, f"{path.name} printed errors: {errors[:2]}"
    # Budget guard (not a speed claim): a lesson that outgrows quick mode must be shrunk.
    assert elapsed < NOTEBOOK_BUDGET_S * 2, f"{path.name} took {elapsed:.0f} s in quick mode"
