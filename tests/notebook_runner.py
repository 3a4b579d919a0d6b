"""Run a lesson notebook in a real kernel in quick mode, as the notebook and solution tests do."""

from __future__ import annotations

from pathlib import Path

import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from labkit._env import environment

NOTEBOOKS_DIR = Path(__file__).parent.parent / "notebooks"
LESSONS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]-*.ipynb"))
CELL_TIMEOUT_S = 45
"""A cell that runs longer fails the test: a hung cell must never hang CI."""
NOTEBOOK_TIMEOUT_S = 180
"""Whole-notebook limit for pytest-timeout (lessons aim for under 60 s in quick mode)."""


def run_quick(nb, label: str) -> None:
    """Execute `nb` in place with LABKIT_QUICK=1, working in notebooks/; fail the test on any error."""
    env = {"LABKIT_QUICK": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    with environment(env):
        try:
            NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", allow_errors=False,
                           resources={"metadata": {"path": str(NOTEBOOKS_DIR)}}).execute()
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
            pytest.fail(f"{label} failed: {str(exc)[:3000]}")


def error_outputs(cells, *, any_stderr: bool = False) -> list:
    """Error outputs of `cells`, plus stderr text (only tracebacks unless `any_stderr`)."""
    return [
        output
        for cell in cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
        or (output.get("output_type") == "stream" and output.get("name") == "stderr"
            and (any_stderr or "Traceback" in output.get("text", "")))
    ]
