"""JupyterLab in headless Chromium runs lesson 04: the live dashboard renders and changes."""

from __future__ import annotations

import pytest
from browser import browser, jupyter_lab, open_notebook, run_all_cells, screenshot, wait_until_idle

__all__ = ["browser", "jupyter_lab"]  # fixtures used by name

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

POINTS = ("() => { const p = document.querySelector('.labkit-feed-dashboard .js-plotly-plot');"
          " return p && p.data ? p.data.reduce((n, t) => n + (t.y ? t.y.length : 0), 0) : 0; }")


def test_lesson_04_dashboard_renders_and_changes(browser, jupyter_lab):
    page = open_notebook(browser, jupyter_lab, "04-live-updates.ipynb")
    run_all_cells(page)
    dash = page.locator(".labkit-feed-dashboard")
    dash.wait_for(state="visible", timeout=90_000)
    dash.locator(".js-plotly-plot").wait_for(state="visible", timeout=60_000)
    table = dash.locator("table.labkit-counters")
    table.wait_for(state="visible", timeout=60_000)
    # the figure is created empty: points on it prove that live updates reached the browser
    page.wait_for_function(f"() => ({POINTS})() > 0", timeout=60_000)
    wait_until_idle(page)
    dash.get_by_text("finished").wait_for(timeout=60_000)
    assert page.evaluate(POINTS) > 0
    errors = page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0
    dash.scroll_into_view_if_needed()
    screenshot(page, "lesson-04-dashboard")
    page.close()
