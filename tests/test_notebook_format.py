"""Committed notebooks are valid, carry no outputs, and have the shape every lesson promises."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").rglob("*.ipynb"))
LESSONS = [p for p in NOTEBOOKS if re.match(r"\d\d-", p.name)]
MAX_CELL_LINES = 15


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_valid_and_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {index} has outputs: strip them"
            assert cell.execution_count is None, f"{path.name} cell {index} has an execution count"
    assert "widgets" not in nb.metadata, f"{path.name} stores widget state: strip it"


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_shape(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "learning goals" in first.source.lower()
    sources = [c.source for c in nb.cells]
    assert any("lk.start(" in s for s in sources if s), "a lesson starts the lab"
    headings = [s.lower() for c, s in zip(nb.cells, sources, strict=True) if c.cell_type == "markdown"]
    assert any(h.lstrip("# ").startswith("summary") for h in headings), "needs a Summary section"
    assert any("exercise" in h for h in headings), "needs Exercises"
    checks = [s for c, s in zip(nb.cells, sources, strict=True)
              if c.cell_type == "code" and "lk.check." in s]
    assert len(checks) >= 2, "at least two exercises checked by lk.check"
    long_cells = [s.splitlines()[0] for c, s in zip(nb.cells, sources, strict=True)
                  if c.cell_type == "code" and len(s.splitlines()) > MAX_CELL_LINES]
    assert not long_cells, f"cells over {MAX_CELL_LINES} lines belong in labkit: {long_cells}"


# -- the exercise rules, for every lesson -----------------------------------------------------------
PLACEHOLDER = re.compile(r"^\s*(\w+)\s*=\s*None\b", re.MULTILINE)


def exercise_cells(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code" and "lk.check." in c.source]


def checker_call(source: str) -> ast.Call:
    """The `lk.check.<name>(...)` call of an exercise cell."""
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and ast.unparse(node.func.value) == "lk.check"):
            return node
    raise AssertionError(f"no lk.check call in {source!r}")


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_every_exercise_starts_unanswered_with_none(path):
    """An exercise cell assigns None to the answer it passes to its checker: the student fills it
    in. A cell that computes its own answer would be a worked example, not an exercise."""
    for source in exercise_cells(nbformat.read(path, as_version=4)):
        placeholders = PLACEHOLDER.findall(source)
        assert placeholders, f"{path.name}: an exercise cell without `answer = None`:\n{source}"
        call = checker_call(source)
        passed = {n.id for arg in [*call.args, *(k.value for k in call.keywords)]
                  for n in ast.walk(arg) if isinstance(n, ast.Name)}
        assert set(placeholders) & passed, (
            f"{path.name}: the checker is not given the placeholder {placeholders}:\n{source}")


class _Anything(dict):
    """Names an exercise cell takes from earlier cells: a stand-in, since None must come first."""

    def __missing__(self, name):
        return f"<{name} from an earlier cell>"


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_a_checker_given_the_placeholder_says_not_answered_yet(path):
    """Run each exercise's checker call as the cell stands (answer None), with no lab running: the
    answer is a kind "not answered yet", before the checker needs a lab or data."""
    import labkit as lk

    lk.stop()
    for source in exercise_cells(nbformat.read(path, as_version=4)):
        names = _Anything({"lk": lk, **{name: None for name in PLACEHOLDER.findall(source)}})
        feedback = eval(compile(ast.Expression(checker_call(source)), path.name, "eval"),  # noqa: S307
                        {"lk": lk, "__builtins__": __builtins__}, names)
        assert not feedback, f"{path.name}: the placeholder was accepted:\n{source}"
        assert "not answered yet" in repr(feedback).lower(), (
            f"{path.name}: the placeholder got {feedback!r} instead of 'not answered yet':\n{source}")


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_no_cell_in_the_exercises_closes_what_exercises_use(path):
    """Run All, then the exercises: nothing in the Exercises section may close or stop a client, a
    tap or the lab (an exercise run afterwards would meet a closed socket)."""
    nb = nbformat.read(path, as_version=4)
    heading = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
                   and c.source.lstrip("# ").lower().startswith("exercises"))
    closing = re.compile(r"\w+\.(close|stop)\(\)")
    offenders = [c.source for c in nb.cells[heading:] if c.cell_type == "code"
                 and "lk.check." not in c.source and closing.search(c.source)]
    assert not offenders, f"{path.name}: cells after the exercises close resources: {offenders}"


# -- keeping notebooks clean in git ---------------------------------------------------------------
def _run_notebook_copy(source: Path) -> dict:
    """A lesson as a session leaves it: outputs, execution counts, widget state, run timings."""
    nb = nbformat.read(source, as_version=4)
    for count, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), 1):
        cell.execution_count = count
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n"),
                        nbformat.v4.new_output("display_data", data={"text/plain": "a figure"})]
        cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def test_the_git_filter_stores_notebooks_without_outputs_or_widget_state(tmp_path):
    """A real git repository with the repository's .gitattributes and the filter configured as the
    README says: what `git add` stores has no outputs, counts or widget state; the working copy
    keeps them; and the stored text is byte for byte what the lesson file is."""
    import shutil
    import subprocess
    import sys

    root = Path(__file__).parent.parent
    lesson = LESSONS[0]

    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True,
                              text=True).stdout

    git("init", "-q")
    git("config", "filter.labkit-notebook.clean", f'"{sys.executable}" -m labkit clean-notebook')
    git("config", "filter.labkit-notebook.smudge", "cat")
    shutil.copy(root / ".gitattributes", tmp_path / ".gitattributes")
    nbformat.write(_run_notebook_copy(lesson), tmp_path / lesson.name)
    git("add", lesson.name)
    stored = nbformat.reads(git("show", f":{lesson.name}"), as_version=4)
    assert all(c.outputs == [] and c.execution_count is None
               for c in stored.cells if c.cell_type == "code")
    assert "widgets" not in stored.metadata
    assert not any("execution" in c.metadata for c in stored.cells)
    assert git("show", f":{lesson.name}") == lesson.read_text(encoding="utf-8")
    working = nbformat.read(tmp_path / lesson.name, as_version=4)
    assert any(c.get("outputs") for c in working.cells), "the working copy keeps its outputs"
