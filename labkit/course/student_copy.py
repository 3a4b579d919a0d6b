"""`labkit student-copy OUT`: what students get, written to the folder OUT.

The lessons, the kit and what installs and runs them (README, Makefile, pyproject, environment files,
Binder set-up, data, licences), without what is the instructor's: `instructors/` (the guide, which
discusses answers, and the solutions), the test suite, the benchmarks and CI. The students' book
(`python -m labkit.course.book --students`) has no guide pages either. Publish OUT as the students'
repository (or the template of a GitHub Classroom assignment, with the autograding workflow of
`python -m labkit.course.workflow` added).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEFT_OUT = ("instructors/", "tests/", "benchmarks/", ".ci/", ".github/")
"""Folders (relative to the repository) that stay with the instructor."""
NEVER = (".venv", "build", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
         ".ipynb_checkpoints", ".git")


def files(root: Path = ROOT) -> list[str]:
    """The repository's files (git's list in a checkout, else every file but caches and venvs)."""
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        listed = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]
    return sorted(name for name in listed
                  if name and not any(part in NEVER for part in Path(name).parts))


def student_copy(out: Path, root: Path = ROOT) -> list[str]:
    """Copy the students' part of `root` into `out` (which must not exist); returns what it wrote."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists: give a new folder")
    written = []
    for name in files(root):
        if name.startswith(LEFT_OUT) or not (root / name).is_file():
            continue
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, out / name)
        written.append(name)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: labkit student-copy OUT", file=sys.stderr)
        return 2
    try:
        written = student_copy(Path(args[0]))
    except FileExistsError as exc:
        print(f"labkit student-copy: {exc}", file=sys.stderr)
        return 2
    print(f"labkit student-copy: {len(written)} files -> {args[0]} "
          f"(left out: {', '.join(LEFT_OUT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
