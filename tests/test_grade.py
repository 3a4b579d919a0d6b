"""`labkit grade` on three notebooks built from lesson 00 and its solution file: solved, half-solved
and unanswered; each runs in a real kernel, the report and the exit status follow the answers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from labkit.course.grade import exercises_of, score

ROOT = Path(__file__).resolve().parent.parent
LESSON = ROOT / "notebooks" / "00-start-here.ipynb"
SOLUTION = ROOT / "instructors" / "solutions" / "00-start-here.py"
SECTION = re.compile(r"^# %%.*$", re.MULTILINE)


def build(tmp_path: Path, solved: int, label: str) -> Path:
    """Lesson 00 with its first `solved` exercise cells replaced by the solution's sections."""
    nb = nbformat.read(LESSON, as_version=4)
    sections = [part.strip("\n") + "\n" for part in SECTION.split(SOLUTION.read_text())[1:]]
    cells = [c for c in nb.cells if c.cell_type == "code" and "lk.check." in c.source]
    assert len(cells) == len(sections) >= 2
    for cell, section in list(zip(cells, sections, strict=True))[:solved]:
        cell.source = section
    path = tmp_path / f"{label}.ipynb"
    nbformat.write(nb, path)
    return path


def grade(path: Path, *args: str) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-m", "labkit.cli", "grade", str(path), *args],
                          capture_output=True, text=True, timeout=240, cwd=path.parent)
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.notebook
@pytest.mark.timeout(400)
def test_grade_solved_half_and_unanswered(tmp_path):
    total = len(exercises_of(nbformat.read(LESSON, as_version=4)))
    half = total // 2 or 1

    code, solved = grade(build(tmp_path, total, "solved"))
    assert code == 0
    assert (solved["total"], solved["max_total"]) == (total, total)
    assert {e["status"] for e in solved["exercises"]} == {"correct"}

    code, partial = grade(build(tmp_path, half, "half"))
    assert code == 1
    assert partial["total"] == half
    assert [e["status"] for e in partial["exercises"]] == ["correct"] * half + ["not answered"] * (
        total - half)
    first, last = partial["exercises"][0]["exercise"], partial["exercises"][-1]["exercise"]
    assert grade(build(tmp_path, half, "half-first"), "--exercise", first)[0] == 0
    assert grade(build(tmp_path, half, "half-last"), "--exercise", last)[0] == 1

    code, empty = grade(build(tmp_path, 0, "unanswered"))
    assert code == 1
    assert empty["total"] == 0 and empty["max_total"] == total
    assert {e["status"] for e in empty["exercises"]} == {"not answered"}


def test_score_counts_the_last_verdict_and_missing_checkers():
    verdicts = [{"exercise": "a", "ok": False, "answered": True, "message": "hint"},
                {"exercise": "a", "ok": True, "answered": True, "message": "yes"},
                {"exercise": "b", "ok": False, "answered": True, "message": "hint"}]
    report = score(["a", "b", "c"], verdicts)
    assert [(e["status"], e["points"]) for e in report["exercises"]] == [
        ("correct", 1), ("wrong", 0), ("not run", 0)]
    assert (report["total"], report["max_total"]) == (1, 3)


def test_unreadable_notebook_exits_2(tmp_path):
    bad = tmp_path / "broken.ipynb"
    bad.write_text("{ not json")
    proc = subprocess.run([sys.executable, "-m", "labkit.cli", "grade", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "error" in json.loads(proc.stdout)
