"""`labkit grade submitted.ipynb ...`: run students' notebooks in a real kernel and score the exercises.

What is scored comes from the kit, never from the submission: the lesson's exercises, their points
and their checkers are `labkit.check.manifest.EXERCISES`, keyed by stable ids ("03.2"). A
verdict counts for an exercise only when it was given while the grader ran that exercise's own
cell (found by its cell id in the lesson as shipped, or, if a front end renumbered it, as the first
code cell after the exercise's own question): a deleted exercise scores 0, and an extra cell that
calls checkers earns nothing.

Each notebook runs top to bottom in quick mode (LABKIT_QUICK=1) in its own folder, errors and all (a
failing cell costs its own exercise, not the rest). The grader adds a first cell that wraps every
checker so each verdict is written to a file, reads that file after every cell to know which cell
gave it, and adds a last cell that audits the kernel: if a checker, `lk.check` itself or the code
the checkers run on (`labkit.check.*`) was replaced or patched, the run is marked tampered and
scores 0.

What a grade proves: that the kit's own, unpatched checkers accepted these answers in this run. For
measured answers it proves they match what that run measured, not that the student understood
them; and a student with full control of the kernel could still forge a verdict line, so an
instructor re-runs doubtful submissions (see instructors/grading.md).

Output: a JSON report per notebook (per exercise: id, checker, points, max_points, status, message;
then total, max_total, tampered, errors), or with `--csv FILE` a gradebook, one row per notebook.
Exit status, one notebook: 0 when the total reaches the pass mark (all points by default), 1 when
it does not, 2 when it cannot be read or run. Several: 0 when every one was graded, 2 otherwise.
This fits GitHub Classroom's autograder (a command that passes when it exits 0).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib
import json
import os
import pkgutil
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from labkit._env import environment
from labkit.check.manifest import CHECKER_CALL, EXERCISES, Exercise

RESULTS_ENV = "LABKIT_GRADE_RESULTS"
"""Environment variable naming the JSON-lines file the recorder appends verdicts to."""

CELL_TIMEOUT_S = 120
"""A cell that runs longer is stopped (and its exercise scores 0); the run goes on."""

RECORDER_CELL = "import labkit.course.grade as _labkit_grade\n_labkit_grade.install_recorder()\n"
AUDIT_CELL = "import labkit.course.grade as _labkit_grade\n_labkit_grade.audit()\n"
RECORDER_ID, AUDIT_ID = "labkit-grader-recorder", "labkit-grader-audit"


# -- inside the student's kernel ----------------------------------------------------------------
def _checker_names() -> list[str]:
    import labkit.check as check

    names = []
    for info in pkgutil.iter_modules(check.__path__):
        if info.name.startswith("lesson"):
            names += list(getattr(importlib.import_module(f"labkit.check.{info.name}"), "__all__", ()))
    return names


def install_recorder(path: str | None = None) -> int:
    """Wrap every public checker of labkit.check so each verdict is appended to `path` (default:
    $LABKIT_GRADE_RESULTS) as {"exercise", "ok", "answered", "message"}. Returns how many."""
    import functools

    import labkit.check as check

    path = path or os.environ.get(RESULTS_ENV)
    if not path:
        return 0
    wrapped = 0
    for name in _checker_names():
        original = getattr(check, name, None)
        if not callable(original) or getattr(original, "labkit_graded", False):
            continue

        @functools.wraps(original)
        def recorded(*args, _original=original, _name=name, **kwargs):
            result = _original(*args, **kwargs)
            if hasattr(result, "ok"):
                line = {"exercise": _name, "ok": bool(result.ok),
                        "answered": bool(getattr(result, "answered", True)),
                        "message": str(getattr(result, "message", ""))[:300]}
                with open(path, "a", encoding="utf-8") as out:
                    out.write(json.dumps(line) + "\n")
            return result

        recorded.labkit_graded = True  # type: ignore[attr-defined]  # a marker: wrap only once
        setattr(check, name, recorded)
        wrapped += 1
    return wrapped


def _code_digest(code, seen: set) -> str:
    parts = [code.co_code.hex(), repr(code.co_names)]
    for const in code.co_consts:
        parts.append(_code_digest(const, seen) if hasattr(const, "co_code") else repr(const))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


DATA_TYPES = (str, int, float, bool, tuple, list, dict, set, frozenset, re.Pattern)
RUN_STATE = frozenset({"_wrong"})
"""Module values a run changes by design (labkit.check._core counts wrong answers for its hints)."""


def _data_digest(value: Any) -> str:
    """A digest of a data value (its repr, with dicts and sets in a stable order)."""
    def stable(item: Any) -> Any:
        if isinstance(item, dict):
            return sorted((repr(k), stable(v)) for k, v in item.items())
        if isinstance(item, set | frozenset):
            return sorted(repr(x) for x in item)
        if isinstance(item, list | tuple):
            return [stable(x) for x in item]
        return repr(item)

    return hashlib.sha256(repr(stable(value)).encode()).hexdigest()[:16]


def check_digest() -> str:
    """A digest of what every checker runs: each function and class of the labkit.check modules
    (its code and default arguments, or the module it really comes from when it was replaced)
    and their module-level data (the tables and limits checkers read). Equal in the grader's
    process and in an untouched kernel."""
    import labkit.check as check

    modules = [check, *(importlib.import_module(f"labkit.check.{i.name}")
                        for i in sorted(pkgutil.iter_modules(check.__path__), key=lambda i: i.name))]
    parts = []
    for module in modules:
        for name in sorted(vars(module)):
            value = vars(module)[name]
            if module is check and name in _checker_names():
                continue  # the package's checker names are the recorder's wrappers: audited apart
            func = getattr(value, "__func__", value)
            owner = getattr(func, "__module__", None) or ""
            if not callable(value) and not isinstance(value, type(check)):
                # module data a checker reads (hint tables, limits); not the run's own state
                if isinstance(value, DATA_TYPES) and not name.startswith("__") and name not in RUN_STATE:
                    parts.append(f"{module.__name__}.{name}=data:{_data_digest(value)}")
                continue
            if not owner.startswith("labkit.check"):
                continue
            if hasattr(func, "__code__"):
                defaults = _data_digest((func.__defaults__, func.__kwdefaults__))
                parts.append(f"{module.__name__}.{name}={owner}:{_code_digest(func.__code__, set())}"
                             f":{defaults}")
            elif isinstance(func, type):
                methods = sorted((k, _code_digest(v.__code__, set())) for k, v in vars(func).items()
                                 if hasattr(v, "__code__"))
                parts.append(f"{module.__name__}.{name}={owner}:{methods}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def audit(path: str | None = None) -> dict:
    """The last cell the grader adds: is every checker still the recorder's wrapper around the
    kit's own function, and is the checkers' code the kit's? Appends {"audit": {...}}."""
    import labkit.check as check

    replaced = []
    for name in _checker_names():
        current = getattr(check, name, None)
        wrapped = getattr(current, "__wrapped__", None)
        home = sys.modules.get(getattr(wrapped, "__module__", "") or "")
        if (not getattr(current, "labkit_graded", False) or wrapped is None or home is None
                or getattr(home, name, None) is not wrapped):
            replaced.append(name)
    report = {"digest": check_digest(), "replaced": replaced}
    path = path or os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"audit": report}) + "\n")
    return report


# -- the grader ---------------------------------------------------------------------------------
def lesson_of(path: Path, nb) -> str | None:
    """The lesson a submission belongs to: its file name's leading number ("03-latency-lab.ipynb",
    "03-...-student.ipynb"), else the notebook's `labkit.lesson` metadata."""
    match = re.match(r"(\d\d)\b", path.name)
    if match and match.group(1) in EXERCISES:
        return match.group(1)
    meta = (nb.metadata.get("labkit") or {}).get("lesson")
    return str(meta) if str(meta) in EXERCISES else None


def locate(nb, exercise: Exercise) -> tuple[str | None, str]:
    """The id of the submission's cell for `exercise`, and how it was found."""
    ids = [cell.get("id") for cell in nb.cells]
    if exercise.cell in ids:
        return exercise.cell, "cell id"
    if exercise.prompt in ids:  # renumbered by a front end: the first code cell after the question
        for cell in nb.cells[ids.index(exercise.prompt) + 1:]:
            if cell.cell_type == "code":
                if exercise.checker in CHECKER_CALL.findall(cell.source):
                    return cell.get("id"), "after its question"
                break
    return None, "missing"


def run_notebook(nb, folder: Path, results: Path, timeout: int = CELL_TIMEOUT_S
                 ) -> tuple[list[dict], list[str]]:
    """Execute `nb` in place (quick mode, errors allowed) with the recorder first and the audit
    last. Returns the verdicts, each tagged with the id of the cell that gave it, and the errors
    seen (one line each)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError
    from nbformat.v4 import new_code_cell

    from labkit.course.kernels import AsyncIpcKernelManager

    nb.cells.insert(0, new_code_cell(RECORDER_CELL, id=RECORDER_ID))
    nb.cells.append(new_code_cell(AUDIT_CELL, id=AUDIT_ID))
    verdicts: list[dict] = []
    read = [0]

    def collect(cell, **_kw) -> None:
        """After each cell: the verdicts it added to the file belong to it."""
        if not results.exists():
            return
        with results.open(encoding="utf-8") as handle:
            handle.seek(read[0])
            text = handle.read()
            read[0] = handle.tell()
        for line in text.splitlines():
            with_cell = json.loads(line)
            with_cell["cell"] = cell.get("id")
            verdicts.append(with_cell)

    env = {"LABKIT_QUICK": "1", RESULTS_ENV: str(results), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    with environment(env):
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                           kernel_manager_class=AsyncIpcKernelManager,
                           on_cell_executed=collect,
                           resources={"metadata": {"path": str(folder)}}).execute()
        except DeadKernelError as exc:
            return verdicts, [f"the kernel died: {exc}"[:300]]
    errors = [f"{out.get('ename')}: {out.get('evalue')}"[:300]
              for cell in nb.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    return verdicts, errors


def score(exercises: tuple[Exercise, ...], cells: dict[str, str | None], verdicts: list[dict],
          tampered: list[str]) -> dict:
    """Points per exercise: the last verdict its checker gave while its own cell ran."""
    rows = []
    for exercise in exercises:
        cell = cells.get(exercise.id)
        mine = [v for v in verdicts if "exercise" in v and v["exercise"] == exercise.checker
                and cell is not None and v.get("cell") == cell]
        verdict = mine[-1] if mine else None
        if tampered:
            status, message = "tampered", f"the checkers were replaced or patched: {', '.join(tampered)}"
        elif cell is None:
            status, message = "missing", "the exercise's cell is not in the notebook"
        elif verdict is None:
            status, message = "not run", "its cell never called the checker (an error above it?)"
        elif not verdict["answered"]:
            status, message = "not answered", verdict["message"]
        else:
            status, message = ("correct" if verdict["ok"] else "wrong"), verdict["message"]
        points = exercise.points if status == "correct" else 0
        rows.append({"exercise": exercise.id, "checker": exercise.checker, "points": points,
                     "max_points": exercise.points, "status": status, "message": message})
    return {"exercises": rows, "total": sum(r["points"] for r in rows),
            "max_total": sum(e.points for e in exercises)}


def grade(path: str | Path, *, lesson: str | None = None, timeout: int = CELL_TIMEOUT_S) -> dict:
    """Run the notebook at `path` and return its report (see the module's docstring)."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    lesson = lesson or lesson_of(path, nb)
    if lesson not in EXERCISES:
        raise ValueError(f"cannot tell which lesson {path.name} is: name it like the lesson "
                         "(03-....ipynb) or pass --lesson 03")
    exercises = EXERCISES[lesson]
    cells = {e.id: locate(nb, e)[0] for e in exercises}
    with tempfile.TemporaryDirectory(prefix="labkit-grade-") as tmp:
        verdicts, errors = run_notebook(nb, path.resolve().parent, Path(tmp) / "verdicts.jsonl",
                                        timeout)
    audits = [v["audit"] for v in verdicts if "audit" in v and v.get("cell") == AUDIT_ID]
    tampered: list[str] = []
    if not audits:
        tampered.append("the audit did not run")
    else:
        tampered += audits[-1]["replaced"]
        if audits[-1]["digest"] != check_digest():
            tampered.append("labkit.check's code")
    report = {"notebook": path.name, "lesson": lesson,
              **score(exercises, cells, verdicts, tampered), "tampered": tampered, "errors": errors}
    return report


def student_of(path: str) -> str:
    """Who submitted `path`, from where it lies: the folder right under a `submitted` folder
    (nbgrader's course layout, submitted/<student>/<assignment>/<notebook>), else ""."""
    parts = Path(path).parts
    for i, part in enumerate(parts[:-1]):
        if part == "submitted" and i + 2 < len(parts):
            return parts[i + 1]
    return ""


def gradebook(reports: list[dict], out) -> None:
    """Write `reports` as CSV rows: student, submission (the path as given: many students hand in
    files of the same name), lesson, each exercise's points, total, max, tampered, error."""
    ids = sorted({r["exercise"] for report in reports for r in report.get("exercises", [])})
    writer = csv.writer(out)
    writer.writerow(["student", "submission", "lesson", *ids, "total", "max_total", "tampered",
                     "error"])
    for report in reports:
        points = {r["exercise"]: r["points"] for r in report.get("exercises", [])}
        submission = report.get("submission", report["notebook"])
        writer.writerow([student_of(submission), submission, report.get("lesson", ""),
                         *(points.get(i, "") for i in ids), report.get("total", 0),
                         report.get("max_total", ""), "; ".join(report.get("tampered", [])),
                         report.get("error", "")])


GRADE_HELP = "run a submitted notebook and score its exercises (JSON)"


def add_parser(sub: Any) -> None:  # argparse's subparsers action (its class is private)
    """The `labkit grade` subcommand, added to the `labkit` command's subparsers."""
    add_arguments(sub.add_parser("grade", help=GRADE_HELP))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", help="students' .ipynb files")
    p.add_argument("--lesson", default=None, help="the lesson (e.g. 03), if the file names do not say")
    p.add_argument("--exercise", default=None,
                   help="score only this exercise (an id such as 03.2, or its checker's name)")
    p.add_argument("--pass-mark", type=int, default=None,
                   help="points needed for exit status 0 (default: all of them)")
    p.add_argument("--csv", default=None, metavar="FILE", help="write a gradebook (- for stdout)")
    p.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds per cell")


def _one(path: str, args: argparse.Namespace) -> dict:
    try:
        report = {**grade(path, lesson=args.lesson, timeout=args.timeout), "submission": path}
    except Exception as exc:  # noqa: BLE001 - a grader reports, it does not crash
        return {"notebook": Path(path).name, "submission": path,
                "error": f"{type(exc).__name__}: {exc}"}
    if args.exercise is not None:
        rows = [r for r in report["exercises"] if args.exercise in (r["exercise"], r["checker"])]
        if not rows:
            return {"notebook": report["notebook"], "error": f"lesson {report['lesson']} has no "
                    f"exercise {args.exercise}"}
        report = {**report, "exercises": rows, "total": sum(r["points"] for r in rows),
                  "max_total": sum(r["max_points"] for r in rows)}
    return report


def run_from_args(args: argparse.Namespace) -> int:
    reports = [_one(path, args) for path in args.notebooks]
    if args.csv is not None:
        if args.csv == "-":
            gradebook(reports, sys.stdout)
        else:
            with open(args.csv, "w", newline="", encoding="utf-8") as out:
                gradebook(reports, out)
    if args.csv != "-":
        print(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2, ensure_ascii=False))
    if any("error" in r for r in reports):
        return 2
    if len(reports) > 1:
        return 0
    report = reports[0]
    needed = report["max_total"] if args.pass_mark is None else args.pass_mark
    return 0 if report["total"] >= needed else 1


def main(argv: list[str] | None = None) -> int:
    """`python -m labkit.course.grade NOTEBOOK ...`: the same as `labkit grade NOTEBOOK ...`."""
    parser = argparse.ArgumentParser(prog="labkit grade", description=GRADE_HELP)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
