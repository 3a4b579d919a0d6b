"""Every exercise can be solved: each section of instructors/solutions/NN-*.py replaces the matching
exercise cell of its lesson, the lesson runs in a real kernel in quick mode, and every checker
answers Correct."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from notebook_runner import LESSONS, NOTEBOOK_TIMEOUT_S, NOTEBOOKS_DIR, error_outputs, run_quick

import labkit.check

SOLUTIONS_DIR = NOTEBOOKS_DIR.parent / "instructors" / "solutions"
"""Outside notebooks/, the folder students open, so the answers are not one click away."""
SOLUTIONS = sorted(SOLUTIONS_DIR.glob("[0-9][0-9]-*.py"))
SECTION_MARK = re.compile(r"^# %%.*$", re.MULTILINE)
CHECKER_CALL = re.compile(r"\blk\.check\.(\w+)\(")


def exercise_cells(nb) -> list:
    """The lesson's code cells that call a checker, in notebook order."""
    return [c for c in nb.cells if c.cell_type == "code" and "lk.check." in c.source]


def solution_sections(path: Path) -> list[str]:
    """The code of each `# %%` section (the text before the first one is the file's header)."""
    return [part.strip("\n") + "\n" for part in SECTION_MARK.split(path.read_text())[1:]]


def lesson_for(solution: Path) -> Path:
    return NOTEBOOKS_DIR / f"{solution.stem}.ipynb"


def shows_correct(output) -> bool:
    """A displayed Feedback that says Correct (see labkit/check/_core.py)."""
    data = output.get("data", {})
    return "✔ Correct" in data.get("text/html", "") or data.get("text/plain", "").startswith("Correct")


def test_there_are_solutions():
    assert SOLUTIONS, "no solutions found under instructors/solutions/"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_one_section_per_exercise_calling_the_same_checker(solution):
    lesson = lesson_for(solution)
    assert lesson.exists(), f"{solution.name} has no lesson {lesson.name}"
    cells = exercise_cells(nbformat.read(lesson, as_version=4))
    sections = solution_sections(solution)
    assert len(sections) == len(cells), (
        f"{lesson.name} has {len(cells)} exercise cells, {solution.name} {len(sections)} sections")
    for index, (cell, section) in enumerate(zip(cells, sections, strict=True), 1):
        assert CHECKER_CALL.findall(section) == CHECKER_CALL.findall(cell.source), (
            f"{solution.name} section {index} calls another checker than the exercise cell")


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_exercise_cells_call_existing_checkers(lesson):
    cells = exercise_cells(nbformat.read(lesson, as_version=4))
    names = [name for cell in cells for name in CHECKER_CALL.findall(cell.source)]
    assert names, f"{lesson.name} calls no checker"
    missing = [name for name in names if not callable(getattr(labkit.check, name, None))]
    assert not missing, f"{lesson.name} calls checkers lk.check does not have: {missing}"


@pytest.mark.notebook
@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S)
@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_solutions_are_correct_in_the_lesson(solution):
    lesson = lesson_for(solution)
    nb = nbformat.read(lesson, as_version=4)
    cells, sections = exercise_cells(nb), solution_sections(solution)
    assert len(sections) == len(cells), "one solution section per exercise cell"
    for cell, section in zip(cells, sections, strict=True):
        cell.source = section
    run_quick(nb, f"{lesson.name} with {solution.name}")
    for index, cell in enumerate(cells, 1):
        errors = error_outputs([cell], any_stderr=True)
        assert not errors, f"{solution.name} section {index} printed errors: {errors[:2]}"
        results = [o for o in cell.outputs if o.get("output_type") == "execute_result"]
        assert len(results) == 1 and shows_correct(results[0]), (
            f"{solution.name} section {index}: the checker did not say Correct: "
            f"{[o.get('data', {}).get('text/plain') for o in results]}")
