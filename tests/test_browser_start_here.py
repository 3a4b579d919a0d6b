"""JupyterLab in headless Chromium runs lesson 00 and the live ping meter is seen rendered."""

from __future__ import annotations

import pytest
from browser import browser, jupyter_lab, open_notebook, run_all_cells, screenshot, wait_until_idle

__all__ = ["browser", "jupyter_lab"]  # fixtures used by name

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_lesson_00_runs_and_the_ping_meter_renders(browser, jupyter_lab):
    page = open_notebook(browser, jupyter_lab, "00-start-here.ipynb")
    run_all_cells(page)
    meter = page.locator(".labkit-ping-meter")
    meter.wait_for(state="visible", timeout=90_000)
    meter.locator(".js-plotly-plot").wait_for(state="visible", timeout=60_000)
    wait_until_idle(page)
    readout = meter.locator(".widget-html-content").first.inner_text()
    assert "done" in readout and "echoes" in readout
    traces = page.evaluate(
        "() => document.querySelector('.labkit-ping-meter .js-plotly-plot').data[0].y.length"
    )
    assert traces > 0
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                        ).count() == 0
    errors = page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0
    meter.scroll_into_view_if_needed()
    screenshot(page, "lesson-00")
    page.close()
