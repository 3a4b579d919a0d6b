"""Every lesson in notebooks/ runs top to bottom in a real kernel in quick mode, once per test run, in
the fresh venv that holds only `pip install .` (see notebook_runner.py for the run's cells). From that
one run, for each lesson:

- no cell fails and none prints an error (the kernel is the fresh venv's, importing the installed
  labkit: an undeclared dependency shows up here);
- every code cell works when run a second time right after the first (a student who re-runs a cell
  must not meet a traceback, a leaked lab server or a second wire tap: labkit's threads are counted
  after each of the two runs);
- each exercise cell, as committed, answers "Not answered yet" (the unanswered verdict);
- each instructor solution (instructors/solutions/NN-*.py), run right after its exercise cell (twice),
  prints nothing on stderr and its checker says Correct (the solved verdict), and the grader's
  recorder saw the same verdicts.

How long each lesson took is reported (the junit property `quick_mode_seconds`), never asserted.
"""

from __future__ import annotations

import pytest
from notebook_runner import (
    CHECKER_CALL,
    LESSON_TIMEOUT_S,
    LESSONS,
    error_outputs,
    results_of,
    role,
    shows_correct,
    shows_unanswered,
)


def test_there_are_lessons():
    assert LESSONS, "no notebooks found under notebooks/"


def _printed(cell) -> dict:
    """The dict a thread-count cell printed."""
    text = [o["text"] for o in cell.outputs if o.get("name") == "stdout"]
    return eval(text[0])  # noqa: S307 - a dict of thread names and counts


def _said(cell) -> list:
    return [o.get("data", {}).get("text/plain") for o in results_of(cell)]


@pytest.mark.notebook
@pytest.mark.timeout(LESSON_TIMEOUT_S)
@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_twice_and_its_exercises_go_from_unanswered_to_correct(path, lesson_run,
                                                                           record_property):
    run = lesson_run(path)
    record_property("quick_mode_seconds", run.seconds)
    assert run.error is None, f"{path.name} failed ({run.kernel} kernel): {run.error}"
    lesson_cells = run.cells("lesson")
    assert lesson_cells and all(c.get("execution_count") is not None for c in run.cells("lesson", "again")), (
        f"{path.name}: not every cell ran twice")

    errors = error_outputs(run.nb.cells)
    assert not errors, f"{path.name} printed errors: {errors[:2]}"

    # a re-run leaves no lab server or wire tap behind: none more after a cell's second run than
    # after its first (lessons 00-02 run one of each at most, as they always did)
    after = {name: {role(c)["index"]: _printed(c) for c in run.cells(name)}
             for name in ("threads-after-first", "threads-after-again")}
    for index, first in after["threads-after-first"].items():
        again = after["threads-after-again"][index]
        grown = {n: (first.get(n, 0), again.get(n, 0)) for n in ("labkit-server", "labkit-WireTap")
                 if again.get(n, 0) > first.get(n, 0)}
        assert not grown, f"{path.name} cell {index} run twice leaves more threads (first, again): {grown}"
    threads = _printed(run.cells("threads")[0])
    if path.name[:2] in ("00", "01", "02"):
        assert threads.get("labkit-WireTap", 0) <= 1, f"{path.name} leaked wire taps: {threads}"
        assert threads.get("labkit-server", 0) <= 1, f"{path.name} leaked lab servers: {threads}"

    exercises = [c for c in lesson_cells if "lk.check." in c.source]  # see exercise_cells
    assert len(exercises) >= 2, f"{path.name}: the run holds {len(exercises)} exercise cells"
    for number, cell in enumerate(exercises, 1):
        results = results_of(cell)
        assert len(results) == 1 and shows_unanswered(results[0]), (
            f"{path.name} exercise {number} as committed did not say Not answered yet: {_said(cell)}")

    solutions = run.cells("solution", "solution-again")
    assert [role(c)["exercise"] for c in solutions] == [n for n in range(1, len(exercises) + 1)
                                                        for _ in range(2)]
    for cell in solutions:
        where = f"{path.stem} solution {role(cell)['exercise']} ({role(cell)['role']})"
        errors = error_outputs([cell], any_stderr=True)
        assert not errors, f"{where} printed errors: {errors[:2]}"
        results = results_of(cell)
        assert len(results) == 1 and shows_correct(results[0]), (
            f"{where}: the checker did not say Correct: {_said(cell)}")

    # the grader's recorder (labkit/course/grade.py) saw each exercise go from unanswered to correct
    expected = [(name, answered) for cell in exercises for name in CHECKER_CALL.findall(cell.source)
                for answered in (False, False, True, True)]
    seen = [(v["exercise"], v["answered"]) for v in run.verdicts]
    assert seen == expected, f"{path.name}: the recorder saw {run.verdicts}"
    assert all(v["ok"] == v["answered"] for v in run.verdicts), run.verdicts
