"""A live view of reconnecting subscribers: state, last SEQ, gaps, duplicates, re-syncs.

    view = lk.subscriber_widget([sub_ws, sub_sse], seconds=15)   # shows, updates, stops by itself

It redraws at most every REFRESH_S seconds (10 times a second) from a background thread, and stops
by itself when every subscriber has stopped or `seconds` have passed (`view.stop()` stops it
earlier). It only reads the subscribers' counters; it never touches their connections.
"""

from __future__ import annotations

import html
import threading
import time

from . import REFRESH_S

COLOURS = {"connected": "#1b7f3b", "resumed": "#1f6fb2", "reconnecting": "#b35c00",
           "resyncing": "#8e44ad", "connecting": "#666", "idle": "#666", "stopped": "#444"}
"""The colour of each subscriber state in the table."""

COLUMNS = ("name", "transport", "state", "last_seq", "delivered", "gaps", "duplicates_delivered",
           "duplicates_seen", "resyncs", "connects")


def table_html(rows: list[dict], title: str) -> str:
    """The subscribers' stats as a small HTML table (state in colour)."""
    head = "".join(f"<th style='padding:2px 8px'>{c.replace('_', ' ')}</th>" for c in COLUMNS)
    body = []
    for row in rows:
        cells = []
        for column in COLUMNS:
            value = row.get(column)
            text = html.escape("–" if value is None else str(value))
            if column == "state":
                text = f"<b style='color:{COLOURS.get(str(value), '#000')}'>{text}</b>"
            cells.append(f"<td style='padding:2px 8px;text-align:right'>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<b>{html.escape(title)}</b><table style='border-collapse:collapse;font-size:90%'>"
            f"<tr>{head}</tr>{''.join(body)}</table>")


class SubscriberView:
    """The widget and its updater thread (see the module docstring)."""

    def __init__(self, subscribers, seconds: float = 30.0, title: str = "subscribers"):
        import ipywidgets as w

        self.subscribers, self.seconds, self.title = list(subscribers), seconds, title
        self.box = w.HTML(table_html(self.rows(), title + " (starting)"))
        self.box.add_class("labkit-subscriber-view")
        self.updates = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labkit-subscriber-view",
                                        daemon=True)

    def rows(self) -> list[dict]:
        return [s.stats() for s in self.subscribers]

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self._stop.wait(REFRESH_S):
            done = all(s.done for s in self.subscribers)
            over = time.monotonic() > deadline
            suffix = " (stopped)" if done or over else " (live)"
            self.box.value = table_html(self.rows(), self.title + suffix)
            self.updates += 1
            if done or over:
                break

    def start(self) -> SubscriberView:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop updating (the last table stays)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2 * REFRESH_S + 1)
        self.box.value = table_html(self.rows(), self.title + " (stopped)")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)


def subscriber_widget(subscribers, seconds: float = 30.0, title: str = "subscribers"):
    """Show a live table of `subscribers` (labkit.clients.reconnect.Subscriber objects) for at most
    `seconds`; returns the view (its `.stop()` ends it earlier)."""
    from IPython.display import display

    view = SubscriberView(subscribers, seconds, title)
    display(view.box)
    return view.start()
