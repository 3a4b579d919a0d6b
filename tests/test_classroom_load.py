"""A smaller class than the benchmark's 200 (same code: benchmarks/classroom_load.py): students in
two other processes share one classroom server's chat room; every student receives every message."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import classroom_load  # noqa: E402


@pytest.mark.timeout(120)
def test_every_student_gets_every_message():
    report = classroom_load.run_load(students=24, processes=2, messages=8)
    assert report["errors"] == []
    assert report["joined"] == 24
    assert report["missing"] == 0
    assert report["deliveries"] == report["expected_deliveries"] == 24 * 8
    assert report["delay_ms"]["n"] == 24 * 8
