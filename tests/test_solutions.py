"""Every exercise has its solution: each section of instructors/solutions/NN-*.py belongs to the
matching exercise cell of its lesson and calls the same checker. That each solution, run inside the
real lesson right after its exercise cell, makes the checker say Correct is checked from the lesson's
one run, in tests/test_notebooks.py."""

from __future__ import annotations

import nbformat
import pytest
from notebook_runner import (
    CHECKER_CALL,
    LESSONS,
    NOTEBOOKS_DIR,
    SOLUTIONS_DIR,
    exercise_cells,
    solution_sections,
)

import labkit.check

SOLUTIONS = sorted(SOLUTIONS_DIR.glob("[0-9][0-9]-*.py"))


def lesson_for(solution):
    return NOTEBOOKS_DIR / f"{solution.stem}.ipynb"


def test_there_are_solutions():
    assert SOLUTIONS, "no solutions found under instructors/solutions/"


def test_every_lesson_has_a_solution_file():
    assert [p.stem for p in SOLUTIONS] == [p.stem for p in LESSONS]


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

