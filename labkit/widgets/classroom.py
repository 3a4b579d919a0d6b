"""The instructor's view of a class server: who is connected over which transport, events per second,
and the slowest members (the most bytes waiting in their sockets: they read slower than the room talks).

    teacher = lk.join(join_url, instructor_token)        # or your own lab: lk.start()
    lk.classroom_dashboard(teacher, seconds=600)         # redraws every second, stops by itself

It reads `GET /api/classroom` (instructor only) once a second on labkit's client loop.
"""

from __future__ import annotations

import asyncio
import html
import time

from labkit import _loop

EVERY_S = 1.0
"""Seconds between two reads of the statistics (and two redraws)."""
SLOWEST = 5
"""How many of the slowest members the table shows."""
PAD = "style='padding:2px 10px;text-align:left'"


def rates(previous: dict | None, current: dict) -> dict[str, float]:
    """Events published per second per topic between two statistics snapshots."""
    if previous is None:
        return {name: 0.0 for name in current["topics"]}
    elapsed = max(current["ts"] - previous["ts"], 1e-9)
    return {name: (topic["published"] - previous["topics"].get(name, {}).get("published", 0)) / elapsed
            for name, topic in current["topics"].items()}


def render(stats: dict, per_second: dict[str, float]) -> str:
    """The dashboard as HTML: transports, events per second, the slowest members. (A lab of one's
    own lists no streams: `connections` is null there, and the dashboard says so.)"""
    if stats["connections"] is None:
        return ("<b>This lab is not a class server</b>: only a class server (<code>labkit serve "
                "--classroom</code>) lists its open streams; chat: "
                f"{len(stats['chat_members'])} in the room.")
    by_transport: dict[str, int] = {}
    for conn in stats["connections"]:
        by_transport[conn["transport"]] = by_transport.get(conn["transport"], 0) + 1
    people = len({c["principal"] + c["name"] + c["peer"] for c in stats["connections"]})
    transports = "".join(f"<tr><td {PAD}>{html.escape(t)}</td><td {PAD}>{n}</td></tr>"
                         for t, n in sorted(by_transport.items())) or f"<tr><td {PAD}>none yet</td></tr>"
    topics = "".join(f"<tr><td {PAD}>{html.escape(name)}</td><td {PAD}>{rate:.1f}</td></tr>"
                     for name, rate in sorted(per_second.items()))
    slow = sorted(stats["connections"], key=lambda c: -c["backlog_bytes"])[:SLOWEST]
    slow_rows = "".join(
        f"<tr><td {PAD}><bdi>{html.escape(c['name'] or c['principal'])}</bdi></td>"
        f"<td {PAD}>{html.escape(c['transport'])}</td><td {PAD}>{html.escape(c['peer'])}</td>"
        f"<td {PAD}>{c['backlog_bytes']:,}</td></tr>" for c in slow)
    return (
        f"<b>{len(stats['connections'])} open streams</b> from about {people} members; "
        f"chat: {len(stats['chat_members'])} in the room"
        f"<table><tr><th {PAD}>transport</th><th {PAD}>open</th></tr>{transports}</table>"
        f"<table><tr><th {PAD}>topic</th><th {PAD}>events per second</th></tr>{topics}</table>"
        f"<table><tr><th {PAD}>slowest members</th><th {PAD}>transport</th><th {PAD}>address</th>"
        f"<th {PAD}>bytes waiting to be sent</th></tr>{slow_rows}</table>"
    )


class ClassroomDashboard:
    """An ipywidgets HTML panel redrawn every EVERY_S seconds for `seconds`, then left as it was."""

    def __init__(self, target, *, seconds: float = 300.0):
        import ipywidgets as widgets

        from labkit.clients.rest import RestClient

        self.api = RestClient(target)
        self.panel = widgets.HTML("reading the class server…")
        self.status = widgets.HTML()
        self.box = widgets.VBox([self.panel, self.status])
        self.box.add_class("labkit-classroom-dashboard")
        self.snapshots: list[dict] = []
        self.ends_at = time.time() + seconds
        self._task = asyncio.run_coroutine_threadsafe(self._refresh(), _loop.client_loop())

    def read(self) -> dict:
        """One statistics snapshot (GET /api/classroom); raises PermissionError without the
        instructor's token."""
        reply = self.api.get("/api/classroom")
        if reply.status in (401, 403):
            raise PermissionError("the classroom dashboard needs the instructor's token")
        return reply.json()

    async def _refresh(self) -> None:
        previous = None
        try:
            while time.time() < self.ends_at:
                current = await asyncio.to_thread(self.read)
                self.snapshots = [*self.snapshots[-59:], current]
                self.panel.value = render(current, rates(previous, current))
                previous = current
                await asyncio.sleep(EVERY_S)
            self.status.value = "<i>stopped (time is up); run the cell again to watch more</i>"
        except Exception as exc:  # noqa: BLE001 - shown in the widget, never a traceback in a thread
            self.status.value = f"<span style='color:#b35c00'>{html.escape(str(exc))}</span>"
        finally:
            await asyncio.to_thread(self.api.close)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the dashboard has stopped (its `seconds` are up)."""
        self._task.result(timeout)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)


def classroom_dashboard(target, **options) -> ClassroomDashboard:
    """The instructor's live view of a class server (see ClassroomDashboard)."""
    return ClassroomDashboard(target, **options)
