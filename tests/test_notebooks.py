"""Every lesson in notebooks/ runs top to bottom in a real kernel in quick mode, with no error output.

A hung cell fails after CELL_TIMEOUT_S; how long each lesson took is reported, never asserted
(tests never judge speed).
"""

from __future__ import annotations

import time

import nbformat
import pytest
from notebook_runner import LESSONS, NOTEBOOK_TIMEOUT_S, error_outputs, run_quick


def test_there_are_lessons():
    assert LESSONS, "no notebooks found under notebooks/"


@pytest.mark.notebook
@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S)
@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_notebook_runs_in_quick_mode(path, record_property):
    nb = nbformat.read(path, as_version=4)
    started = time.monotonic()
    run_quick(nb, path.name)
    record_property("quick_mode_seconds", round(time.monotonic() - started, 1))
    errors = error_outputs(nb.cells)
    assert not errors, f"{path.name} printed errors: {errors[:2]}"
