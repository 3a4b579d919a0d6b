"""A live dashboard of the feed: the price as each transport sees it, plus what each one costs.

    dash = lk.feed_dashboard(lab, seconds=10)   # shows itself; the run starts at once
    run = dash.result()                          # wait for the end: a FeedRun with tidy frames

The four clients run on labkit's client loop; a refresher on the same loop redraws at most every
`REFRESH_S` seconds and stops when the run ends (one last redraw shows the final state).
`dash.result()` shows a progress bar while it waits; interrupting the kernel there (or calling
`dash.stop()`) cancels the run: every client stops and closes its connection, the dashboard says
"stopped", and `result()` raises instead of handing back a partial run as if it were complete.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import statistics
import time

from labkit import _loop

from . import REFRESH_S

PAD = "style='padding:2px 12px;text-align:right'"


class FeedDashboard:
    """Price per transport (an SVG chart, labkit/widgets/lines.py says why not a plotly
    FigureWidget) and a table of counters, live during one run."""

    def __init__(self, target, *, seconds: float = 10.0, rate_hz: float = 10.0,
                 poll_interval_s: float = 0.5, wait_s: float = 10.0, seed: int | None = 1):
        import ipywidgets as widgets

        from labkit.clients.feed import LABELS, TRANSPORTS, start_run
        from labkit.plots.base import transport_color
        from labkit.plots.push import LIVE_LINE_STYLES

        from .lines import Series

        self.redraws = 0
        self.seconds = seconds
        self.series = []
        for transport in TRANSPORTS:  # long poll, SSE, WebSocket: widest first, thinnest on top
            label = LABELS[transport]
            style = LIVE_LINE_STYLES.get(label, {})
            self.series.append(Series(label, transport_color(label) or "#000",
                                      width=style.get("width", 2.0), step=True))
        self.plot = widgets.HTML(self._chart())
        self.counters = widgets.HTML()
        self.status = widgets.HTML("starting…")
        self.box = widgets.VBox([self.plot, self.counters, self.status])
        self.box.add_class("labkit-feed-dashboard")
        self.stopped = False
        self.t0 = time.time()  # the clients start now; the ticker about 0.3 s later
        self.clients, self.future = start_run(
            target, seconds=seconds, rate_hz=rate_hz, poll_interval_s=poll_interval_s,
            wait_s=wait_s, seed=seed)
        self._refresher = asyncio.run_coroutine_threadsafe(self._refresh(), _loop.client_loop())

    async def _refresh(self) -> None:
        while not self.future.done():
            self.redraw()
            await asyncio.sleep(REFRESH_S)
        self.redraw()
        self.status.value = ("<i>stopped (interrupted): the clients have closed their "
                             "connections.</i>" if self.stopped or self.future.cancelled()
                             else "<i>run finished: the dashboard has stopped.</i>")

    def stop(self) -> None:
        """Cancel the run now: every client stops and closes; the dashboard says so."""
        self.stopped = True
        self.future.cancel()

    def _chart(self) -> str:
        from .lines import svg_chart

        return svg_chart(self.series, title="The same feed, as each transport sees it",
                         x_title="time since start (s)", y_title="price (LAB units)",
                         x_range=(0, self.seconds + 0.5),
                         legend_title="transport", height=380,
                         caption="lines that coincide are drawn widest first, so each one "
                                 "stays visible")

    def redraw(self) -> None:
        """Draw what the clients have received so far (called by the refresher, at most every
        REFRESH_S: one message per widget, whatever the number of events)."""
        for series, client in zip(self.series, self.clients, strict=True):
            series.points = [(e.received_ts - self.t0, e.price) for e in list(client.events)]
        self.plot.value = self._chart()
        self.counters.value = self._table()
        self.status.value = f"running… {time.time() - self.t0:.1f} s"
        self.redraws += 1

    def _table(self) -> str:
        rows = []
        for client in self.clients:
            events = list(client.events)
            median = statistics.median(e.staleness_ms for e in events) if events else float("nan")
            cells = (html.escape(client.label), len(events), client.requests,
                     client.empty_responses, f"{median:.1f}",
                     "" if client.last_seq is None else client.last_seq)
            rows.append("<tr>" + "".join(f"<td {PAD}>{c}</td>" for c in cells) + "</tr>")
        head = "".join(f"<th {PAD}>{h}</th>" for h in (
            "transport", "events", "requests", "empty answers", "median staleness (ms)",
            "last SEQ"))
        return (f"<table class='labkit-counters' style='border-collapse:collapse'><tr>{head}</tr>"
                f"{''.join(rows)}</table>")

    def result(self, timeout: float = 120.0):
        """Wait for the run to end (with a progress bar) and return it (a FeedRun). Interrupting
        the kernel meanwhile stops the run (see `stop`)."""
        from labkit.clients.feed import wait_for

        left = max(0.0, self.seconds + 0.5 - (time.time() - self.t0))
        try:
            run = wait_for(self.future, left, "dashboard run", on_stop=self.stop)
        except concurrent.futures.CancelledError:
            raise RuntimeError("this dashboard run was stopped; start a new one with "
                               "lk.feed_dashboard(...)") from None
        self._refresher.result(5)
        return run

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)


def feed_dashboard(target, **options) -> FeedDashboard:
    """Start a side-by-side run of the four transports with a live dashboard (see FeedDashboard)."""
    return FeedDashboard(target, **options)
