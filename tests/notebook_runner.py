"""Each lesson runs ONCE per test run, and every lesson check reads that one run.

The run (see `checked_lesson`) is the lesson as committed, with, after each code cell, the same cell
a second time (every cell must be safe to run twice), a cell counting labkit's threads after each
of the two (a re-run must leave no lab server or wire tap behind), and after each exercise cell
(still unanswered) its instructor solution (instructors/solutions/NN-*.py, one `# %%` section per
exercise cell), itself run twice. Four cells come first: one that proves which Python and which
labkit the kernel uses, the grader's verdict recorder (labkit/course/grade.py), the book's figure
export (labkit/course/book.py) and the thread counter; one cell comes last and counts labkit's
threads. So one run shows: no error anywhere, every cell re-runnable, each exercise's unanswered
verdict (before its solution) and its solved verdict (after it), and what the book and the grader
need (tests/test_book.py, tests/test_grade.py reuse the run instead of executing the lesson again).

The kernel is the fresh venv's that `shared_fresh_venv` builds: only `pip install .` (no extras),
held to the term's lock file, so the same run proves the declared dependencies suffice
(tests/test_packaging.py). LABKIT_SKIP_FRESH_VENV=1 uses this venv's `python3` kernel instead (a
quicker local run; CI never sets it).

Runs are shared between pytest-xdist workers through files under the run's shared temporary folder,
each behind a file lock: the first worker that needs a lesson (or the venv) makes it, the others wait
for it and read it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from filelock import FileLock
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from labkit._env import environment
from labkit.course.kernels import AsyncIpcKernelManager

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = ROOT / "notebooks"
LESSONS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]-*.ipynb"))
SOLUTIONS_DIR = ROOT / "instructors" / "solutions"
"""Outside notebooks/, the folder students open, so the answers are not one click away."""
LOCK_FILE = ROOT / "requirements" / "lab-lock.txt"
CELL_TIMEOUT_S = 90
"""A cell that runs longer fails its lesson: a hung cell must never hang CI."""
LESSON_TIMEOUT_S = 900
"""pytest-timeout for a test that may have to build the venv and run a lesson (twice over)."""
SKIP_FRESH_VENV = os.environ.get("LABKIT_SKIP_FRESH_VENV") == "1"
FRESH_KERNEL = "labkit-fresh"

SECTION_MARK = re.compile(r"^# %%.*$", re.MULTILINE)
CHECKER_CALL = re.compile(r"\blk\.check\.(\w+)\(")
ROLE = "labkit_test"
"""Cell metadata key naming what an inserted or original cell is in the checked run."""
THREADS_SETUP = """import collections as _labkit_c, threading as _labkit_t, time as _labkit_time

def _labkit_threads():
    return dict(_labkit_c.Counter(t.name for t in _labkit_t.enumerate() if t.name.startswith("labkit-")))

def _labkit_settled(before, names=("labkit-server", "labkit-WireTap"), timeout=10):
    # a re-run may stop what the first run started on another thread: give it time to end
    deadline = _labkit_time.monotonic() + timeout
    while True:
        now = _labkit_threads()
        if all(now.get(n, 0) <= before.get(n, 0) for n in names) or _labkit_time.monotonic() > deadline:
            return now
        _labkit_time.sleep(0.05)
"""
"""Helpers the thread-count cells use (labkit names its threads `labkit-...`)."""
THREADS_AFTER_FIRST = "_labkit_first = _labkit_threads()\nprint(_labkit_first)"
THREADS_AFTER_AGAIN = "print(_labkit_settled(_labkit_first))"
COUNT_THREADS = "print(_labkit_threads())"
RECORDER_CELL = "import labkit.course.grade as _labkit_grade\n_labkit_grade.install_recorder()\n"
"""What labkit/course/grade.py puts first (its RECORDER_CELL): each verdict becomes a JSON line."""
BOOK_SETUP_CELL = "import labkit.plots.export as _labkit_export\n_labkit_export.enable()\n"
"""What labkit/course/book.py puts first (its SETUP_CELL): figures carry text/html for the pages."""


# -- the lesson's parts ---------------------------------------------------------------------------
def exercise_cells(nb) -> list:
    """The lesson's code cells that call a checker, in notebook order."""
    return [c for c in nb.cells if c.cell_type == "code" and "lk.check." in c.source]


def solution_for(lesson: Path) -> Path:
    return SOLUTIONS_DIR / f"{lesson.stem}.py"


def solution_sections(path: Path) -> list[str]:
    """The code of each `# %%` section (the text before the first one is the file's header)."""
    return [part.strip("\n") + "\n" for part in SECTION_MARK.split(path.read_text())[1:]]


def shows_correct(output) -> bool:
    """A displayed Feedback that says Correct (see labkit/check/_core.py)."""
    data = output.get("data", {})
    return "✔ Correct" in data.get("text/html", "") or data.get("text/plain", "").startswith("Correct")


def shows_unanswered(output) -> bool:
    """A displayed Feedback that says Not answered yet (the exercise cell as committed)."""
    data = output.get("data", {})
    return "Not answered yet" in data.get("text/html", "") and data.get("text/plain", "").startswith(
        "Not answered yet")


def results_of(cell) -> list:
    return [o for o in cell.get("outputs", []) if o.get("output_type") == "execute_result"]


def error_outputs(cells, *, any_stderr: bool = False) -> list:
    """Error outputs of `cells`, plus stderr text (only tracebacks unless `any_stderr`)."""
    return [
        output
        for cell in cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
        or (output.get("output_type") == "stream" and output.get("name") == "stderr"
            and (any_stderr or "Traceback" in output.get("text", "")))
    ]


def role(cell) -> dict:
    return cell.metadata.get(ROLE, {})


def _tagged(source: str, **what) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source, metadata={ROLE: what})


def checked_lesson(path: Path, *, python_prefix: str | None) -> nbformat.NotebookNode:
    """The notebook the one run executes (see the module's docstring). Roles, in cell metadata:
    setup, lesson (the committed cell; `index` in the lesson), threads-after-first, again,
    threads-after-again, solution, solution-again (`exercise`: 1, 2, ...), threads (at the end)."""
    nb = nbformat.read(path, as_version=4)
    sections = solution_sections(solution_for(path))
    exercises = exercise_cells(nb)
    if len(sections) != len(exercises):
        raise ValueError(f"{path.name} has {len(exercises)} exercise cells, "
                         f"{solution_for(path).name} {len(sections)} sections")
    probe = "import sys, labkit\nprint(sys.executable, labkit.__file__)\n"
    if python_prefix is not None:  # the kernel is the fresh venv's, and imports the installed copy
        probe += (f"assert sys.executable.startswith({python_prefix!r}), sys.executable\n"
                  "assert 'site-packages' in labkit.__file__, labkit.__file__\n")
    cells = [_tagged(probe, role="setup"), _tagged(RECORDER_CELL, role="setup"),
             _tagged(BOOK_SETUP_CELL, role="setup"), _tagged(THREADS_SETUP, role="setup")]
    solved = 0
    for index, cell in enumerate(nb.cells):
        cell.metadata[ROLE] = {"role": "lesson", "index": index}
        cells.append(cell)
        if cell.cell_type != "code":
            continue
        cells.append(_tagged(THREADS_AFTER_FIRST, role="threads-after-first", index=index))
        cells.append(_tagged(cell.source, role="again", index=index))
        cells.append(_tagged(THREADS_AFTER_AGAIN, role="threads-after-again", index=index))
        if "lk.check." in cell.source:  # an exercise cell (see exercise_cells)
            solved += 1
            for name in ("solution", "solution-again"):
                cells.append(_tagged(sections[solved - 1], role=name, index=index, exercise=solved))
    cells.append(_tagged(COUNT_THREADS, role="threads"))
    nb.cells = cells
    return nb


def lesson_copy(nb) -> nbformat.NotebookNode:
    """The committed lesson's cells with the outputs of their first run (what a student's Run All
    shows), without the cells the checked run added."""
    copy = nbformat.from_dict(json.loads(json.dumps(nb)))
    copy.cells = [c for c in copy.cells if role(c).get("role") == "lesson"]
    for cell in copy.cells:
        del cell.metadata[ROLE]
    copy.metadata.pop("widgets", None)
    return copy


# -- the fresh venv -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kernel:
    name: str
    python: Path
    jupyter_path: str | None
    """Folder holding the kernelspec (JUPYTER_PATH), None for this venv's own kernels."""

    @property
    def prefix(self) -> str | None:
        return None if self.jupyter_path is None else str(self.python.parent.parent)


def _python_of(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def build_fresh_venv(folder: Path) -> Kernel:
    """A venv with only `pip install .` (no extras) and a kernelspec pointing at its python. The
    versions are held to the term's lock file (`-c`: a constraint adds no package)."""
    import venv

    venv.EnvBuilder(with_pip=True).create(folder)
    python = _python_of(folder)
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-compile",
                              "--disable-pip-version-check", "--quiet", "-c", str(LOCK_FILE), str(ROOT)],
                             capture_output=True, text=True, timeout=900)
    if install.returncode != 0:
        raise RuntimeError("pip install . failed: " + install.stdout[-3000:] + install.stderr[-3000:])
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    if check.returncode != 0:
        raise RuntimeError("pip check failed: " + check.stdout + check.stderr)
    subprocess.run([str(python), "-m", "ipykernel", "install", "--prefix", str(folder), "--name",
                    FRESH_KERNEL], check=True, capture_output=True, timeout=120)
    return Kernel(FRESH_KERNEL, python, str(folder / "share" / "jupyter"))


def shared_fresh_venv(shared: Path) -> Kernel:
    """The run's one fresh venv: built by the first worker that asks, under a lock; a failed build
    is recorded, so every worker reports it instead of building again."""
    folder, done, failed = shared / "fresh-venv", shared / "fresh-venv.done", shared / "fresh-venv.failed"
    with FileLock(str(shared / "fresh-venv.lock")):
        if failed.exists():
            raise RuntimeError(failed.read_text())
        if not done.exists():
            try:
                build_fresh_venv(folder)
            except Exception as exc:
                failed.write_text(f"{type(exc).__name__}: {exc}")
                raise
            done.write_text("ok")
    return Kernel(FRESH_KERNEL, _python_of(folder), str(folder / "share" / "jupyter"))


def this_venvs_kernel() -> Kernel:
    return Kernel("python3", Path(sys.executable), None)


# -- the one run of each lesson -------------------------------------------------------------------
@dataclass
class LessonRun:
    lesson: Path
    nb: nbformat.NotebookNode
    """The checked run's notebook, executed (up to the failing cell when `error` is set)."""
    verdicts: list[dict]
    """What the grader's recorder wrote, in order: {"exercise", "ok", "answered", "message"}."""
    error: str | None
    seconds: float
    kernel: str

    def cells(self, *roles: str) -> list:
        return [c for c in self.nb.cells if c.cell_type == "code" and role(c).get("role") in roles]


def execute_lesson(path: Path, kernel: Kernel, verdicts: Path) -> tuple[nbformat.NotebookNode, str | None]:
    """Run the checked lesson in `kernel` (quick mode, working in notebooks/); stops at the first
    error and returns it as text."""
    nb = checked_lesson(path, python_prefix=kernel.prefix)
    env = {"LABKIT_QUICK": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1", "LABKIT_PLOTLYJS": "external",
           "LABKIT_GRADE_RESULTS": str(verdicts)}
    if kernel.jupyter_path is not None:
        env["JUPYTER_PATH"] = kernel.jupyter_path  # where the kernelspec "labkit-fresh" lives
    error = None
    with environment(env):
        try:
            NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=kernel.name, allow_errors=False,
                           kernel_manager_class=AsyncIpcKernelManager,
                           store_widget_state=False,
                           resources={"metadata": {"path": str(NOTEBOOKS_DIR)}}).execute()
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
            failing = next((c for c in reversed(nb.cells) if c.cell_type == "code"
                            and c.get("execution_count") is not None), None)
            where = role(failing) if failing is not None else {}
            error = f"{type(exc).__name__} in a cell with role {where}: {str(exc)[:3000]}"
    return nb, error


def shared_lesson_run(path: Path, shared: Path, kernel: Kernel) -> LessonRun:
    """The lesson's one run of this test session: made by the first worker that asks (under a
    lock), read from its files by any later asker."""
    folder = shared / "lesson-runs"
    folder.mkdir(exist_ok=True)
    executed, meta = folder / path.name, folder / f"{path.stem}.json"
    verdicts = folder / f"{path.stem}.verdicts.jsonl"
    with FileLock(str(folder / f"{path.stem}.lock")):
        if not meta.exists():
            verdicts.unlink(missing_ok=True)
            started = time.monotonic()
            nb, error = execute_lesson(path, kernel, verdicts)
            nbformat.write(nb, executed)
            meta.write_text(json.dumps({"error": error, "seconds": round(time.monotonic() - started, 1),
                                        "kernel": kernel.name}))
        info = json.loads(meta.read_text())
        nb = nbformat.read(executed, as_version=4)
        lines = verdicts.read_text(encoding="utf-8").splitlines() if verdicts.exists() else []
    return LessonRun(path, nb, [json.loads(line) for line in lines], info["error"], info["seconds"],
                     info["kernel"])
