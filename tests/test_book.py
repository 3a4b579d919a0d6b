"""The book builds (on two lessons, to stay affordable in CI), each lesson page holds its plots, the
pages load the one copy of plotly.js, and in a real browser with the network cut the figures draw."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from browser import CHROMIUM_FLAGS, chromium_path

from labkit.course import book

TWO_LESSONS = ["01", "05"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    result = book.build(out, TWO_LESSONS, log=lambda *_: None)
    return out, result


@pytest.mark.notebook
@pytest.mark.timeout(400)
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
@pytest.mark.timeout(400)
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
@pytest.mark.timeout(400)
def test_the_figures_draw_offline_in_a_browser(built):
    if chromium_path() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    out, result = built
    name, figures = max(result["lessons"].items(), key=lambda item: item[1])
    page_path = Path(out / "lessons" / name.replace(".ipynb", ".html"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.route(re.compile(r"^https?://"), lambda route: route.abort())  # offline
            page.goto(page_path.as_uri())
            page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {figures}",
                                   timeout=60_000)
            drawn = page.evaluate("document.querySelectorAll('.js-plotly-plot .main-svg').length")
            assert page.evaluate("document.querySelectorAll('.js-plotly-plot').length") == figures
            assert drawn >= figures
        finally:
            browser.close()
