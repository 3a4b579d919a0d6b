"""The grading recipe an instructor copies runs as written: GitHub Classroom's workflow
(instructors/github-classroom/classroom.yml) is executed here step by step, in a fresh virtual
environment and a fresh copy of the repository, as the autograder would: its setup command, then
its test commands. Last round, the recipe's `pip install -e .` left out nbclient and every student
would have scored 0 (ModuleNotFoundError, exit 2): a missing dependency now fails this test."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import venv
from pathlib import Path

import nbformat
import pytest
import yaml

from labkit.check.manifest import EXERCISES
from labkit.course.workflow import workflow

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "instructors" / "github-classroom" / "classroom.yml"

pytestmark = [pytest.mark.xdist_group("serial")]


def grader_steps() -> list[dict]:
    steps = yaml.safe_load(SHIPPED.read_text())["jobs"]["run-autograding-tests"]["steps"]
    return [s["with"] for s in steps if "autograding-command-grader" in s.get("uses", "")]


def test_the_shipped_workflow_is_the_generated_one_with_a_test_per_exercise():
    assert SHIPPED.read_text() == workflow("00")
    tests = grader_steps()
    assert [t["test-name"] for t in tests] == [f"Exercise {e.id}" for e in EXERCISES["00"]]
    assert [t["max-score"] for t in tests] == [e.points for e in EXERCISES["00"]]
    reporter = yaml.safe_load(SHIPPED.read_text())["jobs"]["run-autograding-tests"]["steps"][-1]
    assert reporter["with"]["runners"].split(",") == [f"exercise-{e.id.replace('.', '-')}"
                                                      for e in EXERCISES["00"]]


def repository_copy(target: Path) -> Path:
    """The files of the repository (what a student's assignment repository holds)."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def run(command: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


@pytest.mark.notebook
@pytest.mark.timeout(1200)
def test_the_github_classroom_workflow_runs_in_a_fresh_environment(tmp_path):
    repo = repository_copy(tmp_path / "assignment")
    environment = tmp_path / "runner"
    venv.create(environment, with_pip=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = f"{environment / 'bin'}{os.pathsep}{env['PATH']}"
    env["HOME"] = str(tmp_path / "home")  # nothing of this machine's user set-up
    tests = grader_steps()

    setup = run(tests[0]["setup-command"], repo, env)
    assert setup.returncode == 0, setup.stderr[-3000:]
    assert shutil.which("labkit", path=env["PATH"]) == str(environment / "bin" / "labkit")

    # the lesson as shipped: every exercise unanswered, every test fails, none crashes
    first = run(tests[0]["command"], repo, env)
    assert first.returncode == 1, first.stdout[-2000:] + first.stderr[-2000:]
    report = json.loads(first.stdout)
    assert [(r["exercise"], r["status"]) for r in report["exercises"]] == [("00.1", "not answered")]

    # the student answers exercise 00.1 in its own cell: that test passes
    notebook = repo / "notebooks" / "00-start-here.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    cell = next(c for c in nb.cells if c.get("id") == EXERCISES["00"][0].cell)
    cell.source = 'my_status = api.get("/where-is-this").status\nlk.check.unknown_route_status(my_status)'
    nbformat.write(nb, notebook)
    answered = run(tests[0]["command"], repo, env)
    assert answered.returncode == 0, answered.stdout[-2000:] + answered.stderr[-2000:]
    assert json.loads(answered.stdout)["exercises"][0]["status"] == "correct"

    # the nbgrader route of instructors/grading.md, its code block as written, in the same runner:
    # a course folder with two students' submissions (alice answered 00.1, bob answered nothing)
    course = tmp_path / "course"
    for student, answer in (("alice", notebook), ("bob", ROOT / "notebooks" / "00-start-here.ipynb")):
        folder = course / "submitted" / student / "lesson00"
        folder.mkdir(parents=True)
        shutil.copy2(answer, folder / "00-start-here.ipynb")
    block = nbgrader_block()
    routed = run(block, course, env)
    assert routed.returncode == 0, routed.stdout[-2000:] + routed.stderr[-2000:]
    rows = {row["student"]: row for row in csv.DictReader((course / "grades.csv").open())}
    assert sorted(rows) == ["alice", "bob"]
    assert [rows[s]["00.1"] for s in ("alice", "bob")] == ["1", "0"]
    assert {rows[s]["max_total"] for s in rows} == {str(sum(e.points for e in EXERCISES["00"]))}


def nbgrader_block() -> str:
    """The commands of the guide's nbgrader route: its fenced block that grades submitted/."""
    guide = (ROOT / "instructors" / "grading.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", guide, re.DOTALL)
    found = [b for b in blocks if "submitted/*/" in b]
    assert len(found) == 1, "instructors/grading.md should hold one nbgrader route block"
    return found[0]

