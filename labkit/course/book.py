"""The book: every lesson as a web page WITH its outputs, from a fresh run, plus the instructor guide.

    python -m labkit.course.book                      # all lessons -> build/book/index.html   (make book)
    python -m labkit.course.book --lessons 00 05      # a subset (the test builds two)
    python -m labkit.course.book --students           # without the instructor guide

Each lesson runs top to bottom in a real kernel in normal mode, the sizes a student runs, so every
number and every sentence computed from the run is one the lesson supports (quick mode's small
counts can reverse a comparison: lesson 03 once showed WebSocket slower than keep-alive REST). A run
is cached in build/book-cache by the lesson's text, labkit's version and the mode, so a rebuild only
runs what changed (--no-cache runs everything again; --quick makes a smoke build, labelled as such).
Each page is exported with nbconvert's HTML exporter. A live widget cannot run in a static page: its
place shows a note saying what it was and how to see it live, above its state when the run ended
(a snapshot taken in the same kernel: labkit/course/snapshot.py). Figures carry an HTML representation
beside plotly's JSON one (labkit/plots/export.py); plotly.js is written once, to
`_static/plotly.min.js`, which every page loads from disk, so the book works offline and holds one
copy of it. The instructor guide (instructors/*.md)
is its own part. The executed notebooks are kept beside the pages (`notebooks/`) as static copies.

The build checks what it promises: a page must hold as many drawn figures as its run produced, and
no page may carry plotly.js itself; otherwise it stops with an error naming the page.
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
import time
from pathlib import Path

from labkit._env import environment
from labkit.course import snapshot

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
GUIDE = ROOT / "instructors"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
FIGURE_CALL = "Plotly.newPlot("
SETUP_CELL = ("import labkit.plots.export as _labkit_export\n_labkit_export.enable()\n")
STYLE = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
         "line-height:1.5}nav a{margin-right:1rem}code{background:#f4f4f4;padding:0 .2em}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem}")


class BookError(RuntimeError):
    """The book could not be built as promised; the message names the lesson or page."""


def plotly_js() -> Path:
    """The plotly.js bundle shipped with the installed plotly package."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def lessons(selected: list[str] | None = None) -> list[Path]:
    """Lesson notebooks, all or those whose number (or file name) is in `selected`."""
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
    if selected:
        found = [p for p in found if p.name[:2] in selected or p.stem in selected]
    return found


CACHE = ROOT / "build" / "book-cache"
"""Executed lessons, one file per (lesson text, labkit version, mode)."""
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ("<div class='labkit-widget-note' style='border:1px dashed #999;padding:.5rem 1rem;"
               "color:#555'>A live widget ran here ({what}){tail}. A static page cannot run it: open "
               "the lesson in JupyterLab to see it update.</div>")


def cache_key(path: Path, quick: bool) -> str:
    import hashlib

    import labkit

    digest = hashlib.sha256(path.read_bytes() + labkit.__version__.encode()
                            + (b"quick" if quick else b"normal"))
    return f"{path.stem}-{'quick' if quick else 'normal'}-{digest.hexdigest()[:16]}.ipynb"


def execute(path: Path, timeout: int = 600, *, quick: bool = False, cache: Path | None = None):
    """Run one lesson (normal mode unless `quick`; figures with text/html, no plotly.js inside) and
    return the executed notebook; with `cache`, reuse a run of the same lesson text, labkit version
    and mode."""
    import nbformat
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell

    from labkit.course.kernels import AsyncIpcKernelManager

    cached = cache / cache_key(path, quick) if cache is not None else None
    if cached is not None and cached.exists():
        return nbformat.read(cached, as_version=4)
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, new_code_cell(SETUP_CELL))
    env = {"LABKIT_QUICK": "1" if quick else "0", "LABKIT_PLOTLYJS": "external",
           "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                            kernel_manager_class=AsyncIpcKernelManager,
                            store_widget_state=False,  # live widgets' state holds a plotly.js each
                            resources={"metadata": {"path": str(path.parent)}})
    with environment(env):
        try:
            with client.setup_kernel():
                for index, cell in enumerate(nb.cells):
                    client.execute_cell(cell, index)
                # the widgets' last state, taken in the same kernel before it stops
                nb.cells.append(new_code_cell(snapshot.cell_source(widget_ids(nb))))
                client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
        except Exception as exc:
            raise BookError(f"{path.name} did not run: {str(exc)[:1500]}") from None
    nb.cells.pop(0)
    nb.metadata["labkit_widget_snapshots"] = snapshot.read(nb.cells.pop())
    nb.metadata.pop("widgets", None)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, cached)
    return nb


def widget_ids(nb) -> list[str]:
    """The model ids of the live widgets the run displayed, in order."""
    return [out["data"][WIDGET_MIME]["model_id"] for cell in nb.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if WIDGET_MIME in out.get("data", {})
            and isinstance(out["data"][WIDGET_MIME], dict) and "model_id" in out["data"][WIDGET_MIME]]


def static_widgets(nb) -> int:
    """Replace each live widget's output by its snapshot (its last state as HTML, taken by
    `execute`, see labkit/course/snapshot.py) under a note that it was live, or by the note alone
    when there is none (its text form, e.g. "VBox(children=(...))", would be a raw dump); returns
    how many."""
    shots = nb.metadata.get("labkit_widget_snapshots", {})
    replaced = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_MIME in data:
                what = html.escape(str(data.get("text/plain", "a widget")).split("(", 1)[0][:40])
                model = data[WIDGET_MIME] if isinstance(data[WIDGET_MIME], dict) else {}
                shot = shots.get(model.get("model_id", ""), "")
                tail = "; below, its state when the run ended" if shot else ""
                output["data"] = {"text/html": WIDGET_NOTE.format(what=what, tail=tail) + shot}
                replaced += 1
    return replaced


_execute = execute  # build() passes quick/cache only to this one (a test may swap `execute`)


def figures_in(nb) -> int:
    """Figures the run produced: outputs with plotly's JSON, and figure widgets in the snapshots
    of the live widgets displayed (one per display)."""
    shots = nb.metadata.get("labkit_widget_snapshots", {})
    in_widgets = sum(shots.get(model_id, "").count(FIGURE_CALL) for model_id in widget_ids(nb))
    return in_widgets + sum(PLOTLY_MIME in out.get("data", {}) for cell in nb.cells
                            if cell.cell_type == "code" for out in cell.get("outputs", []))


def nav(depth: str) -> str:
    return (f"<nav><a href='{depth}index.html'>Contents</a>"
            f"<a href='{depth}index.html#lessons'>Lessons</a>"
            f"<a href='{depth}index.html#guide'>Instructor guide</a></nav>")


def lesson_page(nb, title: str) -> str:
    """The lesson as HTML (nbconvert, lab template) loading the book's one copy of plotly.js, its
    live widgets shown as notes."""
    from nbconvert import HTMLExporter

    static_widgets(nb)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb, resources={
        "metadata": {"name": title}})
    head = ("<script src='../_static/plotly.min.js'></script>"
            "<style>nav{padding:.5rem 1rem;font-family:system-ui}</style>")
    body = body.replace("</head>", head + "</head>", 1)
    return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav("../"), body, count=1)


def book_links(page_html: str, pages: set[str]) -> str:
    """Links of a guide page made to work in the book: `x.md` of another guide page -> `x.html`;
    a link to a file outside the guide (the repository's README, a lesson) keeps its text, unlinked
    (the book does not hold those files)."""
    def fix(match: re.Match) -> str:
        target, text = match.group(1), match.group(2)
        if re.match(r"^(https?:|mailto:|#)", target):
            return match.group(0)
        name, _, anchor = target.partition("#")
        stem = Path(name).stem
        if name.endswith(".md") and "/" not in name and stem in pages:
            return f"<a href=\"{stem}.html{'#' + anchor if anchor else ''}\">{text}</a>"
        return f"<span class='repo-link' title='{html.escape(target)}'>{text}</span>"

    return re.sub(r'<a href="([^"]+)">(.*?)</a>', fix, page_html, flags=re.S)


def markdown_page(text: str, title: str, pages: set[str] | None = None) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    body = book_links(markdown2html_mistune(text), pages or set())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{nav('../')}{body}</body></html>")


def guide_pages() -> list[Path]:
    """The instructor guide's pages: README first, then the rest by name."""
    pages = sorted(GUIDE.glob("*.md"))
    return sorted(pages, key=lambda p: (p.name != "README.md", p.name))


def first_heading(text: str, fallback: str) -> str:
    match = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else fallback


def build(out: Path, selected: list[str] | None = None, *, log=print, keep_going: bool = False,
          guide: bool = True, quick: bool = False, cache: Path | None = CACHE) -> dict:
    """Build the book into `out`; returns {lesson file: figures}, the guide's page count and the
    lessons that failed (only with `keep_going`; otherwise the first failure raises BookError).
    guide=False: the students' book, without the instructor guide (which discusses answers)."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    for folder in ("_static", "lessons", "guide", "notebooks"):
        (out / folder).mkdir(parents=True)
    shutil.copy(plotly_js(), out / "_static" / "plotly.min.js")
    import nbformat

    made: dict[str, int] = {}
    failed: dict[str, str] = {}
    lesson_links = []
    for path in lessons(selected):
        started = time.monotonic()
        try:
            nb = execute(path, quick=quick, cache=cache) if execute is _execute else execute(path)
        except BookError as exc:
            if not keep_going:
                raise
            failed[path.name] = str(exc)[:300]
            log(f"book: {path.stem}: FAILED, left out")
            continue
        expected = figures_in(nb)
        page = lesson_page(nb, path.stem)
        drawn = page.count(FIGURE_CALL)
        if drawn != expected:
            raise BookError(f"{path.stem}.html draws {drawn} figures, the run made {expected}")
        if "window.Plotly = Plotly" in page or len(page) > 3_000_000:
            raise BookError(f"{path.stem}.html carries plotly.js itself")
        (out / "lessons" / f"{path.stem}.html").write_text(page, encoding="utf-8")
        nbformat.write(nb, out / "notebooks" / path.name)
        made[path.name] = expected
        title = first_heading("".join(c.source for c in nb.cells[:1]), path.stem)
        lesson_links.append(f"<li><a href='lessons/{path.stem}.html'>{html.escape(title)}</a> "
                            f"({expected} figures)</li>")
        log(f"book: {path.stem}: {expected} figures, {time.monotonic() - started:.0f} s")
    guide_links = []
    chosen_pages = guide_pages() if guide else []
    stems = {p.stem for p in chosen_pages}
    for guide_page in chosen_pages:
        text = guide_page.read_text(encoding="utf-8")
        title = first_heading(text, guide_page.stem)
        (out / "guide" / f"{guide_page.stem}.html").write_text(markdown_page(text, title, stems),
                                                              encoding="utf-8")
        guide_links.append(f"<li><a href='guide/{guide_page.stem}.html'>{html.escape(title)}</a></li>")
    part_two = (f"<h2 id='guide'>Part II: Instructor guide</h2><ul>{''.join(guide_links)}</ul>"
                if guide_links else "")
    mode_note = ("in quick mode: a smoke build with small trial counts, whose numbers are not the "
                 "lessons' results" if quick else "in normal mode, the sizes a student runs")
    index = (f"<!doctype html><html><head><meta charset='utf-8'><title>labkit: the book</title>"
             f"<style>{STYLE}</style></head><body><h1>labkit: WebSocket vs REST, measured</h1>"
             f"<p>Every lesson with the outputs of one run {mode_note}. Figures are interactive and "
             "work offline; live widgets are shown as notes (run the lesson to see them).</p>"
             f"<h2 id='lessons'>Part I: Lessons</h2><ol>{''.join(lesson_links)}</ol>"
             f"{part_two}</body></html>")
    (out / "index.html").write_text(index, encoding="utf-8")
    return {"lessons": made, "guide_pages": len(guide_links), "failed": failed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.course.book", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "build" / "book"), help="output folder")
    parser.add_argument("--lessons", nargs="*", default=None, help="lesson numbers (default: all)")
    parser.add_argument("--students", action="store_true",
                        help="the students' book: the lessons without the instructor guide")
    parser.add_argument("--quick", action="store_true",
                        help="quick mode (small counts): a smoke build, labelled as such")
    parser.add_argument("--no-cache", action="store_true", help="run every lesson again")
    parser.add_argument("--keep-going", action="store_true",
                        help="leave out a lesson that fails instead of stopping (still exits 1)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        result = build(Path(args.out), args.lessons, keep_going=args.keep_going,
                       guide=not args.students, quick=args.quick,
                       cache=None if args.no_cache else CACHE)
    except BookError as exc:
        print(f"book: {exc}", file=sys.stderr)
        return 1
    print(f"book: {len(result['lessons'])} lessons, {sum(result['lessons'].values())} figures, "
          f"{result['guide_pages']} guide pages in {time.monotonic() - started:.0f} s -> "
          f"{Path(args.out) / 'index.html'}")
    for name, why in result["failed"].items():
        print(f"book: {name} failed: {why}", file=sys.stderr)
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
