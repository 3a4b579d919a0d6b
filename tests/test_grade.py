"""`labkit grade`: scores come from the kit's exercise list, never from the submission.

The attacks of the issue, each on a real kernel: deleting exercise cells (it used to score 0/0 and
pass), deleting two of three (1/1), one extra cell that calls every checker with right answers
(3/3 on an unanswered notebook), a checker replaced in the kernel, and a front end that renumbered
the cells. The submissions are small notebooks built from lesson 00's own cells and ids (its set-up
and its exercise cells), so each run takes a kernel start, not the whole lesson; lesson 00's full
run (tests/notebook_runner.py) gives the real unanswered and solved verdicts for the scoring test.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from notebook_runner import LESSON_TIMEOUT_S

from labkit.check.manifest import EXERCISES, derive
from labkit.course.grade import score

ROOT = Path(__file__).resolve().parent.parent
LESSON = ROOT / "notebooks" / "00-start-here.ipynb"
SETUP = "import labkit as lk\nlab = lk.start()\napi = lk.rest(lab)\nws = lk.websocket(lab, '/ws/echo')"
ANSWERS = {  # the instructor's solutions (instructors/solutions/00-start-here.py)
    "00.1": 'my_status = api.get("/where-is-this").status\nlk.check.unknown_route_status(my_status)',
    "00.2": 'my_reply = api.get("/api/echo?size=1000")\nlk.check.sized_reply(my_reply, 1000)',
    "00.3": 'my_answer = ws.echo(b"\\x00\\xff")[0]\nlk.check.binary_echo(my_answer)',
}


def lesson_cells() -> dict[str, nbformat.NotebookNode]:
    nb = nbformat.read(LESSON, as_version=4)
    return {cell["id"]: cell for cell in nb.cells}


def submission(path: Path, *, answered=(), deleted=(), extra: str | None = None,
               before: str | None = None, renumber=()) -> Path:
    """A lesson-00 submission: the set-up, then each exercise's question and cell (unanswered as
    shipped, or answered in place), with exercises deleted, cells renumbered or extra cells."""
    cells = lesson_cells()
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(SETUP))
    if before is not None:
        nb.cells.append(nbformat.v4.new_code_cell(before))
    for exercise in EXERCISES["00"]:
        if exercise.id in deleted:
            continue
        nb.cells.append(cells[exercise.prompt])
        cell = nbformat.from_dict(dict(cells[exercise.cell]))
        if exercise.id in answered:
            cell["source"] = ANSWERS[exercise.id]
        if exercise.id in renumber:
            cell["id"] = f"renumbered-{exercise.id.replace('.', '-')}"
        nb.cells.append(cell)
    if extra is not None:
        nb.cells.append(nbformat.v4.new_code_cell(extra))
    nbformat.write(nb, path)
    return path


def grade(*paths: Path, args: tuple[str, ...] = ()) -> tuple[int, object, str]:
    proc = subprocess.run([sys.executable, "-m", "labkit.cli", "grade", *map(str, paths), *args],
                          capture_output=True, text=True, timeout=600, cwd=paths[0].parent)
    out = proc.stdout
    return proc.returncode, (json.loads(out) if out.lstrip().startswith(("{", "[")) else None), out


def test_the_exercise_list_is_the_lessons_own():
    """The kit's table (what the grader scores) is what the lessons ask, id for id."""
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")):
        lesson = path.name[:2]
        assert derive(nbformat.read(path, as_version=4), lesson) == EXERCISES[lesson], (
            f"{path.name} changed its exercises: update labkit/check/manifest.py")
    assert sum(len(v) for v in EXERCISES.values()) >= 30


@pytest.mark.notebook
@pytest.mark.timeout(LESSON_TIMEOUT_S)
def test_lesson_00_scores_solved_half_and_unanswered(lesson_run):
    """Lesson 00's real verdicts (unanswered, then solved) scored by exercise and cell."""
    run = lesson_run(LESSON)
    assert run.error is None, f"lesson 00's run failed: {run.error}"
    exercises = EXERCISES["00"]
    cells = {e.id: e.cell for e in exercises}

    def given(exercise, which: int) -> dict:
        verdicts = [v for v in run.verdicts if v["exercise"] == exercise.checker]
        return {**verdicts[which], "cell": exercise.cell}

    unanswered = [given(e, 0) for e in exercises]
    solved = [given(e, -1) for e in exercises]
    total = len(exercises)
    assert score(exercises, cells, solved, [])["total"] == total
    half = total // 2 or 1
    partial = score(exercises, cells, [*unanswered, *solved[:half]], [])
    assert [r["status"] for r in partial["exercises"]] == ["correct"] * half + ["not answered"] * (
        total - half)
    empty = score(exercises, cells, unanswered, [])
    assert empty["total"] == 0 and empty["max_total"] == total
    assert all("Replace None" in r["message"] for r in empty["exercises"])
    # a verdict given by another cell, even the right one, earns nothing
    elsewhere = [{**v, "cell": "an-extra-cell"} for v in solved]
    assert score(exercises, cells, elsewhere, [])["total"] == 0


@pytest.mark.notebook
@pytest.mark.timeout(900)
def test_the_issues_attacks_score_what_they_should(tmp_path):
    cheat = "\n".join(ANSWERS.values())
    paths = {
        "solved": submission(tmp_path / "00-solved.ipynb", answered=ANSWERS),
        "all deleted": submission(tmp_path / "00-all-deleted.ipynb", deleted=ANSWERS),
        "two deleted": submission(tmp_path / "00-two-deleted.ipynb", answered=ANSWERS,
                                  deleted=("00.2", "00.3")),
        "extra cell": submission(tmp_path / "00-extra-cell.ipynb", extra=cheat),
        "patched": submission(tmp_path / "00-patched.ipynb", answered=ANSWERS, before=(
            "import labkit.check as c\n"
            "c.sized_reply = lambda *a, **k: c.Feedback(True, 'fine', 'sized_reply')")),
        "renumbered": submission(tmp_path / "00-renumbered.ipynb", answered=ANSWERS,
                                 renumber=("00.2",)),
        "patched data": submission(tmp_path / "00-patched-data.ipynb", answered=ANSWERS, before=(
            "import labkit.check.lesson00 as l0\nl0._STATUS_HINTS[200] = 'anything goes'")),
    }
    book = tmp_path / "gradebook.csv"
    code, reports, _ = grade(*paths.values(), args=("--csv", str(book)))
    assert code == 0  # every notebook was graded
    by_name = {r["notebook"]: r for r in reports}
    report = {key: by_name[path.name] for key, path in paths.items()}

    assert (report["solved"]["total"], report["solved"]["max_total"]) == (3, 3)
    assert report["solved"]["tampered"] == []
    assert (report["all deleted"]["total"], report["all deleted"]["max_total"]) == (0, 3)
    assert {r["status"] for r in report["all deleted"]["exercises"]} == {"missing"}
    assert (report["two deleted"]["total"], report["two deleted"]["max_total"]) == (1, 3)
    assert (report["extra cell"]["total"], report["extra cell"]["max_total"]) == (0, 3)
    assert {r["status"] for r in report["extra cell"]["exercises"]} == {"not answered"}
    assert report["patched"]["total"] == 0 and report["patched"]["tampered"] == ["sized_reply"]
    assert {r["status"] for r in report["patched"]["exercises"]} == {"tampered"}
    assert report["renumbered"]["total"] == 3  # found after its question
    assert report["patched data"]["tampered"] == ["labkit.check's code"]  # a checker's table changed
    assert report["patched data"]["total"] == 0

    rows = list(csv.DictReader(io.StringIO(book.read_text())))
    assert [row["submission"] for row in rows] == [str(p) for p in paths.values()]
    assert {row["student"] for row in rows} == {""}  # no nbgrader layout: nobody named
    assert [row["total"] for row in rows] == ["3", "0", "1", "0", "0", "3", "0"]
    assert rows[0]["00.1"] == "1" and rows[4]["tampered"] == "sized_reply"

    # one notebook: the exit status follows the points (GitHub Classroom's test passes on 0)
    assert grade(paths["solved"])[0] == 0
    assert grade(paths["two deleted"])[0] == 1
    code, one, _ = grade(paths["two deleted"], args=("--exercise", "00.1"))
    assert code == 0 and (one["total"], one["max_total"]) == (1, 1)


def test_a_notebook_of_no_known_lesson_or_unreadable_exits_2(tmp_path):
    bad = tmp_path / "broken.ipynb"
    bad.write_text("{ not json")
    anonymous = tmp_path / "homework.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), anonymous)
    reports = {}
    for path in (bad, anonymous):
        code, reports[path], _ = grade(path)
        assert code == 2 and "error" in reports[path]
    assert "--lesson" in reports[anonymous]["error"]  # the same run's report, not a second one


def test_the_student_comes_from_nbgraders_submitted_folder():
    from labkit.course.grade import student_of

    assert student_of("course/submitted/alice/lesson03/03-latency-lab.ipynb") == "alice"
    assert student_of("submitted/bob/lesson03/03-latency-lab.ipynb") == "bob"
    assert student_of("downloads/03-latency-lab.ipynb") == ""
    assert student_of("submitted/03-latency-lab.ipynb") == ""  # no student folder under it

