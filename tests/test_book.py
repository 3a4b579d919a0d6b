"""The book builds (on two lessons), each lesson page holds its plots, the pages load the one copy of
plotly.js, and in a real browser with the network cut the figures draw.

The build runs `book.build` itself on the outputs of the two lessons' one run of this test session
(tests/notebook_runner.py runs each lesson once, with the book's figure export switched on), so no
lesson executes again here; `book.execute`, the step that run stands in for, is checked on its own,
in a real kernel, on a one-figure notebook.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from browser import launch
from notebook_runner import LESSON_TIMEOUT_S, lesson_copy

from labkit.course import book

TWO_LESSONS = ["01", "02"]
# Every test that reads the `built` book runs in the xdist group "serial", with the browser test (a
# browser test, so serial anyway): the book is built once per run on one worker, instead of once per
# worker with the other worker idle until the first has run lessons 01 and 02.


@pytest.fixture(scope="module")
def built(tmp_path_factory, lesson_run):
    def executed(path: Path, timeout: int = 120):
        run = lesson_run(path)
        if run.error is not None:
            raise book.BookError(f"{path.name} did not run: {run.error[:1500]}")
        return lesson_copy(run.nb)

    out = tmp_path_factory.mktemp("book")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(book, "execute", executed)
        result = book.build(out, TWO_LESSONS, log=lambda *_: None)
    return out, result


@pytest.mark.notebook
@pytest.mark.timeout(120)
def test_execute_runs_a_notebook_with_figures_for_the_book(tmp_path, monkeypatch):
    """What the book does to each lesson: normal mode (quick on request), figures with text/html
    beside plotly's JSON and no plotly.js inside them, its own setup cell taken out again, no widget
    state kept, a live widget shown as a note; a second build reuses the cached run."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A figure"),
        nbformat.v4.new_code_cell("import os, plotly.graph_objects as go\nprint(os.environ['LABKIT_QUICK'])\n"
                                  "go.Figure(go.Scatter(y=[1, 3, 2]))"),
        nbformat.v4.new_code_cell("import ipywidgets as w\nbox = w.VBox([w.Label('live'), w.HTML('')])\nbox"),
        nbformat.v4.new_code_cell("box.children[1].value = '<b>changed after display</b>'\n"
                                  "w.HBox([w.FloatSlider(3.5, description='rate'), "
                                  "go.FigureWidget(go.Bar(y=[4, 2]))])"),
    ])
    path = tmp_path / "one-figure.ipynb"
    nbformat.write(nb, path)
    cache = tmp_path / "cache"
    executed = book.execute(path, cache=cache)
    assert [c.cell_type for c in executed.cells] == ["markdown", "code", "code", "code"]
    assert "widgets" not in executed.metadata
    outputs = executed.cells[1].outputs
    assert [o.get("text") for o in outputs if o.output_type == "stream"] == ["0\n"]  # normal mode
    figures = [o for o in outputs if book.PLOTLY_MIME in o.get("data", {})]
    assert len(figures) == 1
    html = figures[0]["data"]["text/html"]
    assert "Plotly.newPlot(" in html
    assert len(html) < 100_000, "plotly.js (megabytes) went into the figure"
    expected = book.figures_in(executed)  # before the page replaces the widgets' outputs
    page = book.lesson_page(executed, "one-figure")
    assert "A live widget ran here (VBox)" in page and "VBox(children" not in page
    # each widget's state when the run ended: a later cell's change shows, a figure widget is drawn
    assert "live" in page and "<b>changed after display</b>" in page
    assert "rate: 3.5" in page and page.count("Plotly.newPlot(") == 2 == expected

    # cached: the same lesson text runs no kernel again; quick mode is a run of its own
    assert len(list(cache.glob("*.ipynb"))) == 1
    monkeypatch.setattr("nbclient.NotebookClient.setup_kernel", lambda *a, **k: pytest.fail("ran again"))
    assert book.execute(path, cache=cache).cells[1].outputs[0]["text"] == "0\n"


def test_guide_links_work_in_the_book(tmp_path):
    """Links between guide pages become links between book pages; links to files the book does not
    hold (the README, a lesson's source) keep their text, unlinked. Checked on every page built."""
    result = book.build(tmp_path / "book", selected=["none"], log=lambda *_: None)
    assert result["guide_pages"] >= 14
    pages = list((tmp_path / "book").rglob("*.html"))
    broken = []
    for page in pages:
        for target in re.findall(r'(?:href|src)=["\']([^"\']+)["\']', page.read_text()):
            if re.match(r"^(https?:|mailto:|#|data:)", target):
                continue
            if not (page.parent / target.split("#")[0]).resolve().exists():
                broken.append(f"{page.relative_to(tmp_path)} -> {target}")
    assert not broken, broken[:10]
    grading = (tmp_path / "book" / "guide" / "grading.html").read_text()
    assert 'href="classroom.html"' in grading or "classroom.html" in (
        tmp_path / "book" / "guide" / "plan-two-weeks.html").read_text()


@pytest.mark.notebook
@pytest.mark.timeout(LESSON_TIMEOUT_S)
@pytest.mark.xdist_group("serial")  # with the browser test: one build per run
def test_the_book_has_both_parts(built):
    out, result = built
    assert sorted(result["lessons"]) == sorted(p.name for p in book.lessons(TWO_LESSONS))
    index = (out / "index.html").read_text()
    assert "Part I: Lessons" in index and "Part II: Instructor guide" in index
    for page in book.guide_pages():
        assert (out / "guide" / f"{page.stem}.html").exists()
        assert f"guide/{page.stem}.html" in index
    assert result["guide_pages"] >= 14
    assert len(list(out.rglob("plotly.min.js"))) == 1, "plotly.js is in the book once"


@pytest.mark.notebook
@pytest.mark.timeout(LESSON_TIMEOUT_S)
@pytest.mark.xdist_group("serial")  # with the browser test: one build per run
def test_every_lesson_page_holds_its_plots(built):
    out, result = built
    assert sum(result["lessons"].values()) > 0, "the chosen lessons draw figures"
    for name, figures in result["lessons"].items():
        page = (out / "lessons" / name.replace(".ipynb", ".html")).read_text()
        executed = nbformat.read(out / "notebooks" / name, as_version=4)
        assert figures == book.figures_in(executed)
        assert page.count(book.FIGURE_CALL) == figures
        assert page.count("_static/plotly.min.js") == 1
        assert "window.Plotly = Plotly" not in page
        assert not re.search(r"<script[^>]+src=['\"]https?://[^'\"]*plotly", page)


@pytest.mark.browser
@pytest.mark.notebook
@pytest.mark.timeout(LESSON_TIMEOUT_S)
def test_the_figures_draw_offline_in_a_browser(built):
    out, result = built
    name, figures = max(result["lessons"].items(), key=lambda item: item[1])
    page_path = Path(out / "lessons" / name.replace(".ipynb", ".html"))
    with launch() as browser:
        page = browser.new_page()
        page.route(re.compile(r"^https?://"), lambda route: route.abort())  # offline
        page.goto(page_path.as_uri())
        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {figures}",
                               timeout=60_000)
        drawn = page.evaluate("document.querySelectorAll('.js-plotly-plot .main-svg').length")
        assert page.evaluate("document.querySelectorAll('.js-plotly-plot').length") == figures
        assert drawn >= figures
