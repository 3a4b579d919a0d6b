"""`labkit grade`: the scores lesson 00's real verdicts earn solved, half-solved and unanswered, and
the command itself in a real kernel, its report and its exit status following the answers.

Lesson 00 is not executed here: its one run of this test session (tests/notebook_runner.py) installs
the grader's own recorder, and runs each exercise cell unanswered, then its instructor solution, so
the recorder holds, per exercise, the unanswered and the solved verdicts of a real kernel. The
command runs on a notebook of four cells that calls lesson 00's checkers: right, unanswered, a
failing cell, wrong.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from notebook_runner import LESSON_TIMEOUT_S

from labkit.course.grade import exercises_of, score

ROOT = Path(__file__).resolve().parent.parent
LESSON = ROOT / "notebooks" / "00-start-here.ipynb"


def grade(path: Path, *args: str) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-m", "labkit.cli", "grade", str(path), *args],
                          capture_output=True, text=True, timeout=240, cwd=path.parent)
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.notebook
@pytest.mark.timeout(LESSON_TIMEOUT_S)
def test_lesson_00_scores_solved_half_and_unanswered(lesson_run):
    run = lesson_run(LESSON)
    assert run.error is None, f"lesson 00's run failed: {run.error}"
    expected = exercises_of(nbformat.read(LESSON, as_version=4))
    total = len(expected)
    assert total >= 2
    half = total // 2 or 1
    unanswered = {name: [v for v in run.verdicts if v["exercise"] == name][0] for name in expected}
    solved = {name: [v for v in run.verdicts if v["exercise"] == name][-1] for name in expected}

    report = score(expected, list(solved.values()))
    assert (report["total"], report["max_total"]) == (total, total)
    assert {e["status"] for e in report["exercises"]} == {"correct"}

    # the last verdict counts: every exercise unanswered first, then the first half solved
    partial = score(expected, [*unanswered.values(), *(solved[n] for n in expected[:half])])
    assert partial["total"] == half
    assert [e["status"] for e in partial["exercises"]] == ["correct"] * half + ["not answered"] * (
        total - half)

    empty = score(expected, list(unanswered.values()))
    assert empty["total"] == 0 and empty["max_total"] == total
    assert {e["status"] for e in empty["exercises"]} == {"not answered"}
    assert all("Replace None" in e["message"] for e in empty["exercises"])


CELLS = [
    "import labkit as lk",
    "answer = b'\\x00\\xff'\nlk.check.binary_echo(answer)",
    "reply = None\nlk.check.sized_reply(reply, 1000)",
    "1 / 0",
    "status = 'four hundred and four'\nlk.check.unknown_route_status(status)",
]


@pytest.mark.notebook
@pytest.mark.timeout(400)
def test_the_command_runs_the_notebook_and_exits_by_the_points(tmp_path):
    path = tmp_path / "submitted.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS]), path)

    code, report = grade(path)
    assert code == 1
    assert [(e["exercise"], e["status"], e["points"]) for e in report["exercises"]] == [
        ("binary_echo", "correct", 1), ("sized_reply", "not answered", 0),
        ("unknown_route_status", "wrong", 0)]
    assert (report["total"], report["max_total"]) == (1, 3)
    assert len(report["errors"]) == 1 and report["errors"][0].startswith("ZeroDivisionError")

    assert grade(path, "--exercise", "binary_echo")[0] == 0
    code, one = grade(path, "--exercise", "sized_reply")
    assert code == 1 and (one["total"], one["max_total"]) == (0, 1)


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
