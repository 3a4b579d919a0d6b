"""`labkit grade submitted.ipynb`: run a student's notebook in a real kernel and score its exercises.

The notebook runs top to bottom in quick mode (LABKIT_QUICK=1) in its own folder, errors and all (a
failing cell costs its own exercise, not the rest). A first cell, added by the grader, wraps every
checker of `lk.check` so that each verdict is also written as a JSON line to the file named by
LABKIT_GRADE_RESULTS. An exercise is the checker an exercise cell calls (`lk.check.name(...)`); it
earns its point when the last verdict of that checker in the run says Correct.

Prints a JSON report (per exercise: points, max_points, status, message; then total and max_total)
and exits 0 when the total reaches the pass mark (all points by default), 1 when it does not, 2 when
the notebook cannot be read or run. This fits GitHub Classroom's autograder, which runs a command
and gives the points when it exits 0: one test per exercise with `--exercise NAME`, or one for all.
"""

from __future__ import annotations

import argparse
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

RESULTS_ENV = "LABKIT_GRADE_RESULTS"
"""Environment variable naming the JSON-lines file the recorder appends verdicts to."""

CELL_TIMEOUT_S = 120
"""A cell that runs longer is stopped (and its exercise scores 0); the run goes on."""

CHECKER_CALL = re.compile(r"\blk\.check\.(\w+)\(")

RECORDER_CELL = "import labkit.course.grade as _labkit_grade\n_labkit_grade.install_recorder()\n"


# -- inside the student's kernel ----------------------------------------------------------------
def install_recorder(path: str | None = None) -> int:
    """Wrap every public checker of labkit.check so each verdict is appended to `path` (default:
    $LABKIT_GRADE_RESULTS) as {"exercise", "ok", "answered", "message"}. Returns how many."""
    import functools

    import labkit.check as check

    path = path or os.environ.get(RESULTS_ENV)
    if not path:
        return 0
    wrapped = 0
    for info in pkgutil.iter_modules(check.__path__):
        if not info.name.startswith("lesson"):
            continue
        module = importlib.import_module(f"labkit.check.{info.name}")
        for name in getattr(module, "__all__", ()):
            original = getattr(check, name, None)
            if not callable(original) or getattr(original, "_graded", False):
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

            recorded._graded = True  # type: ignore[attr-defined]  # a marker on the function: wrap once
            setattr(check, name, recorded)
            wrapped += 1
    return wrapped


# -- the grader ---------------------------------------------------------------------------------
def exercises_of(nb) -> list[str]:
    """The checkers the notebook's exercise cells call, in order, each once."""
    names: list[str] = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            names += [n for n in CHECKER_CALL.findall(cell.source) if n not in names]
    return names


def run_notebook(nb, folder: Path, results: Path, timeout: int = CELL_TIMEOUT_S) -> list[str]:
    """Execute `nb` in place (quick mode, errors allowed); returns the errors seen, one line each."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError
    from nbformat.v4 import new_code_cell

    nb.cells.insert(0, new_code_cell(RECORDER_CELL))
    env = {"LABKIT_QUICK": "1", RESULTS_ENV: str(results), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    with environment(env):
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                           resources={"metadata": {"path": str(folder)}}).execute()
        except DeadKernelError as exc:
            return [f"the kernel died: {exc}"[:300]]
    return [f"{out.get('ename')}: {out.get('evalue')}"[:300]
            for cell in nb.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if out.get("output_type") == "error"]


def score(expected: list[str], verdicts: list[dict]) -> dict:
    """Points per exercise from the recorded verdicts (the last verdict of each checker counts)."""
    last = {v["exercise"]: v for v in verdicts}
    rows = []
    for name in expected:
        verdict = last.get(name)
        if verdict is None:
            status, message = "not run", "the checker was never called (an error above it?)"
        elif not verdict["answered"]:
            status, message = "not answered", verdict["message"]
        else:
            status, message = ("correct" if verdict["ok"] else "wrong"), verdict["message"]
        rows.append({"exercise": name, "points": int(status == "correct"), "max_points": 1,
                     "status": status, "message": message})
    return {"exercises": rows, "total": sum(r["points"] for r in rows), "max_total": len(rows)}


def grade(path: str | Path, *, timeout: int = CELL_TIMEOUT_S) -> dict:
    """Run the notebook at `path` and return the report (see the module's docstring)."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    expected = exercises_of(nb)
    with tempfile.TemporaryDirectory(prefix="labkit-grade-") as tmp:
        results = Path(tmp) / "verdicts.jsonl"
        errors = run_notebook(nb, path.resolve().parent, results, timeout)
        lines = results.read_text(encoding="utf-8").splitlines() if results.exists() else []
    report = {"notebook": path.name, **score(expected, [json.loads(line) for line in lines])}
    report["errors"] = errors
    return report


GRADE_HELP = "run a submitted notebook and score its exercises (JSON)"


def add_parser(sub: Any) -> None:  # argparse's subparsers action (its class is private)
    """The `labkit grade` subcommand, added to the `labkit` command's subparsers."""
    add_arguments(sub.add_parser("grade", help=GRADE_HELP))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="the student's .ipynb")
    p.add_argument("--exercise", default=None, help="score only this checker (exit 0 when correct)")
    p.add_argument("--pass-mark", type=int, default=None,
                   help="points needed for exit status 0 (default: all of them)")
    p.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds per cell")


def run_from_args(args: argparse.Namespace) -> int:
    try:
        report = grade(args.notebook, timeout=args.timeout)
    except Exception as exc:  # noqa: BLE001 - a grader reports, it does not crash
        print(json.dumps({"notebook": str(args.notebook), "error": f"{type(exc).__name__}: {exc}"}))
        return 2
    if args.exercise is not None:
        rows = [r for r in report["exercises"] if r["exercise"] == args.exercise]
        if not rows:
            print(json.dumps({"notebook": report["notebook"],
                              "error": f"no exercise cell calls lk.check.{args.exercise}"}))
            return 2
        report = {**report, "exercises": rows, "total": rows[0]["points"], "max_total": 1}
    print(json.dumps(report, indent=2, ensure_ascii=False))
    needed = report["max_total"] if args.pass_mark is None else args.pass_mark
    return 0 if report["total"] >= needed else 1


def main(argv: list[str] | None = None) -> int:
    """`python -m labkit.course.grade NOTEBOOK ...`: the same as `labkit grade NOTEBOOK ...`."""
    parser = argparse.ArgumentParser(prog="labkit grade", description=GRADE_HELP)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
