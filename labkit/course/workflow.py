"""The GitHub Classroom autograding workflow of a lesson: `python -m labkit.course.workflow 03`.

One test per exercise of the kit's list (`labkit.check.manifest`), each a `labkit grade ...
--exercise ID` command that passes (exit 0) when that exercise is correct, worth its points; the
reporter step sends the points to GitHub Classroom. The setup installs the kit with its `grade`
extra, which is what running a notebook needs (nbclient). Copy the output to
`.github/workflows/classroom.yml` in the assignment's template repository.
"""

from __future__ import annotations

import sys
from pathlib import Path

from labkit.check.manifest import EXERCISES

SETUP = "python -m pip install --quiet '.[grade]'"
"""The setup command: the kit and what grading needs, from the assignment's own checkout."""
TIMEOUT_MIN = 10
"""Minutes a test may take (a lesson runs in quick mode in about a minute)."""


def notebook_of(lesson: str, root: Path | None = None) -> str:
    """The lesson's notebook path in the repository ("notebooks/03-latency-lab.ipynb")."""
    folder = (root or Path(__file__).resolve().parents[2]) / "notebooks"
    found = sorted(folder.glob(f"{lesson}-*.ipynb"))
    if not found:
        raise SystemExit(f"no lesson {lesson} in {folder}")
    return f"notebooks/{found[0].name}"


def workflow(lesson: str, notebook: str | None = None) -> str:
    """The workflow YAML for `lesson` (one autograding test per exercise)."""
    if lesson not in EXERCISES:
        raise SystemExit(f"no lesson {lesson!r}; lessons: {', '.join(EXERCISES)}")
    notebook = notebook or notebook_of(lesson)
    steps = []
    for exercise in EXERCISES[lesson]:
        step_id = f"exercise-{exercise.id.replace('.', '-')}"
        steps.append((step_id, f"""      - name: Exercise {exercise.id} ({exercise.checker})
        id: {step_id}
        uses: classroom-resources/autograding-command-grader@v1
        with:
          test-name: "Exercise {exercise.id}"
          setup-command: "{SETUP}"
          command: "labkit grade {notebook} --exercise {exercise.id}"
          timeout: {TIMEOUT_MIN}
          max-score: {exercise.points}
"""))
    results = "".join(f"          {sid.upper()}_RESULTS: \"${{{{steps.{sid}.outputs.result}}}}\"\n"
                      for sid, _ in steps)
    return f"""# GitHub Classroom autograding for lesson {lesson} ({notebook}), made by
# `python -m labkit.course.workflow {lesson}`. One test per exercise; see instructors/grading.md.
name: Autograding Tests
"on":
  - push
  - workflow_dispatch
  - repository_dispatch
permissions:
  checks: write
  actions: read
  contents: read
jobs:
  run-autograding-tests:
    runs-on: ubuntu-latest
    if: github.actor != 'github-classroom[bot]'
    steps:
      - name: Checkout code
        uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
{"".join(step for _, step in steps)}      - name: Autograding Reporter
        uses: classroom-resources/autograding-grading-reporter@v1
        env:
{results}        with:
          runners: {",".join(sid for sid, _ in steps)}
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m labkit.course.workflow LESSON   (e.g. 03)", file=sys.stderr)
        return 2
    sys.stdout.write(workflow(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
