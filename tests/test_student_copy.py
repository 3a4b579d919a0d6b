"""`labkit student-copy OUT`: what students get holds no instructor material, and their book no guide."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from labkit.check.manifest import EXERCISES
from labkit.course.book import build

ROOT = Path(__file__).resolve().parent.parent


def test_the_student_copy_leaves_the_instructors_part_out(tmp_path):
    out = tmp_path / "students"
    proc = subprocess.run([sys.executable, "-m", "labkit", "student-copy", str(out)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert not any(name.startswith(("instructors/", "tests/", "benchmarks/", ".ci/")) for name in written)
    for needed in ("README.md", "Makefile", "pyproject.toml", "environment.yml", "labkit/__init__.py"):
        assert needed in written
    lessons = sorted((out / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    assert [p.name[:2] for p in lessons] == sorted(EXERCISES)
    # no solution reached the copy: no file carries a solution file's header, and the lessons are
    # the shipped ones, each exercise unanswered
    headers = {p.read_text().splitlines()[0] for p in (ROOT / "instructors" / "solutions").glob("*.py")}
    assert headers and all(h.startswith("# Solutions to the exercises of") for h in headers)
    for name in written:
        assert "# Solutions to the exercises of" not in (out / name).read_text(errors="replace"), name
    for lesson in lessons:
        assert lesson.read_bytes() == (ROOT / "notebooks" / lesson.name).read_bytes()
    # a second copy into the same folder is refused, not merged
    again = subprocess.run([sys.executable, "-m", "labkit", "student-copy", str(out)], capture_output=True,
                           text=True, timeout=120, cwd=ROOT)
    assert again.returncode == 2 and "exists" in again.stderr


def test_the_students_book_has_no_guide_pages(tmp_path):
    with_guide = build(tmp_path / "book", selected=["none"], log=lambda *_: None)
    students = build(tmp_path / "students", selected=["none"], log=lambda *_: None, guide=False)
    assert with_guide["guide_pages"] > 0 and students["guide_pages"] == 0
    assert not list((tmp_path / "students" / "guide").glob("*.html"))
    assert "Instructor guide" not in (tmp_path / "students" / "index.html").read_text()
