"""JupyterLab in headless Chromium runs the dashboard cells of lesson 04: the live plot and the
counters are seen rendered, and seen changing while the run goes on.

Why not "Run All": JupyterLab follows the running cell down to the end of the notebook, and cells
scrolled out of view are not rendered (content-visibility), so the counters' `innerText` reads ""
and the dashboard cannot be watched. The test runs the cells above the dashboard, then the
dashboard cell itself with the dashboard in view.

"Changing" is observed without any clock: a MutationObserver, installed before the dashboard cell
runs, records every distinct state of the counters table and of the plot that the browser shows.
The probes of tests/browser_probe.py count the widget updates the page receives per second and the
main thread's stalls meanwhile (it says why counts, not speed, are asserted).
"""

from __future__ import annotations

import json

import browser_probe
import pytest
from browser import browser, jupyter_lab, open_notebook, screenshot, wait_until_idle

__all__ = ["browser", "jupyter_lab"]  # fixtures used by name

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NOTEBOOK = "window.jupyterapp.shell.currentWidget.content"

SELECT_DASHBOARD_CELL = f"""() => {{
  const nb = {NOTEBOOK};
  const i = nb.widgets.findIndex(c => c.model.sharedModel.getSource().includes('feed_dashboard('));
  if (i >= 0) nb.activeCellIndex = i;
  return i;
}}"""

# Record each distinct (events per transport, points in the plot) state the browser shows.
WATCH = """() => {
  window.labkitSeen = [];
  const read = () => {
    const dash = document.querySelector('.labkit-feed-dashboard');
    if (!dash) return;
    const rows = [...dash.querySelectorAll('table.labkit-counters tr')].slice(1);
    const events = rows.map(r => Number(r.children[1].textContent));
    const points = [...dash.querySelectorAll('svg.labkit-chart polyline.series')]
      .map(p => Number(p.dataset.points));
    const state = JSON.stringify({events, points});
    const seen = window.labkitSeen;
    if (!seen.length || seen[seen.length - 1] !== state) seen.push(state);
  };
  new MutationObserver(read).observe(document.body,
    {childList: true, subtree: true, characterData: true});
}"""


def test_lesson_04_dashboard_renders_and_changes(browser, jupyter_lab):
    page = open_notebook(browser, jupyter_lab, "04-live-updates.ipynb")
    assert page.evaluate(SELECT_DASHBOARD_CELL) > 0
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-above')")
    wait_until_idle(page)
    page.evaluate(WATCH)
    browser_probe.install(page)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-cell')")
    dash = page.locator(".labkit-feed-dashboard")
    dash.wait_for(state="attached", timeout=90_000)
    dash.scroll_into_view_if_needed()
    dash.locator("svg.labkit-chart").wait_for(state="visible", timeout=60_000)
    dash.get_by_text("run finished").wait_for(timeout=90_000)
    wait_until_idle(page)
    probed = browser_probe.read(page)
    probed.pop("raw")
    print("feed dashboard, in the page:", probed)

    seen = [json.loads(s) for s in page.evaluate("() => window.labkitSeen")]
    tables = [s["events"] for s in seen if len(s["events"]) == 4]
    plots = [s["points"] for s in seen if len(s["points"]) == 4]
    # the counters: four transports, several different states, counts never go back
    assert len({tuple(t) for t in tables}) >= 3, tables
    assert all(a <= b for t0, t1 in zip(tables, tables[1:], strict=False)
               for a, b in zip(t0, t1, strict=True)), tables
    final = tables[-1]
    assert sum(tables[0]) < sum(final)
    assert len(set(final)) == 1 and final[0] > 0  # every transport got the same events
    # the plot: created empty, it grew through several states to one point per event
    assert len({tuple(p) for p in plots}) >= 3, plots
    assert plots[-1] == final
    assert dash.locator("table.labkit-counters").text_content().startswith("transport")
    # at most ~10 updates per widget per second (the stalls are printed, not asserted)
    assert probed["longtask_error"] is None
    assert probed["max_per_second"] <= browser_probe.UPDATES_PER_S + 1, probed
    print("stalls:", browser_probe.stalls(probed))
    # the caption sits below the x-axis title, not on it
    y_of = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll(
        '.labkit-feed-dashboard svg text')].map(t => [t.getAttribute('class') || t.textContent,
        t.getBBox().y]))""")
    assert y_of["caption"] > y_of["x-title"] + 10, y_of

    errors = page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0
    dash.scroll_into_view_if_needed()
    screenshot(page, "lesson-04-dashboard")
    page.close()
