"""Browser-side clients as anywidgets: the page opens the WebSocket, EventSource or fetch itself.

Each widget reaches the lab at `<Jupyter base URL>proxy/<port>/` (jupyter-server-proxy), so it works
locally, on Binder and on a JupyterHub. On first render the page sends its `location.origin` to the
kernel over Jupyter's comm channel; the widget passes it to `lab.trust_page_origin` so the lab
accepts this page's WebSockets on a hub (see labkit/server/jupyter_proxy.py for why that is safe).

On a class server (`lab = lk.join(...)`) the widgets carry the student's credentials: on a
JupyterHub the class service is on the page's own origin and the hub's login cookie is the
credential; a class server on the instructor's machine is reached directly (`via="direct"`) with
the student's personal token (`token`: `Authorization: Bearer` on fetches, `?token=` on
WebSockets and EventSources), and the class server answers the page's cross-origin fetches for
the origins it allows (loopback pages, `labkit serve --classroom --allow-origin ORIGIN`; see
labkit/server/cors.py).

The widget shows a DevTools-like log of frames (direction, type, size, time) and sends its rows
and its timings (measured in the page with performance.now()) back to Python at most ten times a
second: `widget.frame_log()` and `widget.timings()` are DataFrames a later cell can plot.

Comm messages reach Python between cells, not while a cell runs: read `frame_log()` in a cell run
after the widget has worked (after "Run All" in a browser, run the reading cell once more).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import anywidget
import traitlets as t

from labkit.course.classroom import ClassroomLab

HERE = Path(__file__).parent


class BrowserWidget(anywidget.AnyWidget):
    """Base of the browser widgets: where the lab is, and what the page reported back."""

    _esm = HERE / "widgets.js"
    _css = HERE / "widgets.css"

    kind = t.Unicode("").tag(sync=True)
    direct_url = t.Unicode("").tag(sync=True)
    proxy_path = t.Unicode("").tag(sync=True)
    via = t.Unicode("proxy").tag(sync=True)
    seconds = t.Float(300.0).tag(sync=True)
    rendered = t.Bool(False).tag(sync=True)
    page_base = t.Unicode("").tag(sync=True)
    login_path = t.Unicode("").tag(sync=True)
    token = t.Unicode("").tag(sync=True)
    """The student's personal token for a class server reached directly (else ""): the page's
    fetches send it as `Authorization: Bearer`, its WebSockets and EventSources as ?token=."""

    def __init__(self, lab, *, port: int | None = None, **kwargs):
        """`lab`: the LabServer (or a URL). `port`: connect to this port instead of the lab's (a wire
        tap or an emulator in front of it); the lab is still the one told about the page."""
        url = getattr(lab, "url", None) or str(lab)
        parts = urlsplit(url)
        if port is not None:
            url = f"{parts.scheme}://{parts.hostname}:{port}"
        port = urlsplit(url).port
        hub_path = getattr(lab, "page_path", None)
        if hub_path and port == getattr(lab, "port", None):
            # a class service of the student's JupyterHub (lk.join() there): the page reaches it
            # on its own origin and logs in to it with the hub's OAuth (course/hub_service.py)
            kwargs = {"login_path": "oauth_login", **kwargs}
            url, proxy = lab.base_url, hub_path
        elif isinstance(lab, ClassroomLab) and not hub_path:
            # a class server on the instructor's machine (lk.join on a laptop class): Jupyter's
            # proxy reaches only the kernel's machine, so the page talks to it directly, with the
            # student's personal token; the class server allows the page's origin with CORS
            # (server/cors.py). A tap or emulator in front of it (`port`) runs in this kernel.
            kwargs = {**kwargs, "via": "direct", "token": lab.token}
            url = f"http://127.0.0.1:{port}{lab.prefix}" if port != lab.port else lab.base_url
            proxy = f"proxy/{port}/"
        else:
            proxy = f"proxy/{port}/"
        super().__init__(direct_url=url.rstrip("/") + "/", proxy_path=proxy, **kwargs)
        self._lab = lab
        self.page_origins: list[str] = []
        self.frames: list[dict] = []
        self.timing_rows: list[dict] = []
        self.on_msg(self._on_page_message)

    def __repr__(self) -> str:
        return (f"<labkit browser widget '{self.kind}' for the lab at {self.direct_url}: a browser draws "
                "it; without one (a headless run) it stays empty>")

    def _on_page_message(self, _widget, content, _buffers) -> None:
        kind = content.get("kind") if isinstance(content, dict) else None
        if kind == "hello":
            origin = content.get("origin")
            trust = getattr(self._lab, "trust_page_origin", None)
            if isinstance(origin, str) and trust is not None and trust(origin):
                self.page_origins.append(origin)
            self.send({"kind": "ready"})
        elif kind == "rows":
            self.frames.extend(r for r in content.get("frames", []) if isinstance(r, dict))
            self.timing_rows.extend(r for r in content.get("timings", []) if isinstance(r, dict))

    def frame_log(self):
        """The frames the page saw: n, dir (↑ sent, ↓ received, • event), type, bytes, t_ms."""
        import pandas as pd

        return pd.DataFrame(self.frames, columns=["n", "dir", "type", "bytes", "t_ms"])

    def timings(self):
        """The page's own measurements (performance.now(), in ms), one row each."""
        import pandas as pd

        return pd.DataFrame(self.timing_rows)


class GameWidget(BrowserWidget):
    game = t.Unicode("demo").tag(sync=True)
    role = t.Unicode("play").tag(sync=True)
    seat = t.Unicode("").tag(sync=True)
    name = t.Unicode("browser").tag(sync=True)
    transport = t.Unicode("websocket").tag(sync=True)
    poll_ms = t.Float(500.0).tag(sync=True)
    optimistic = t.Bool(False).tag(sync=True)
    create = t.Bool(True).tag(sync=True)


class WhiteboardWidget(BrowserWidget):
    room = t.Unicode("board").tag(sync=True)
    name = t.Unicode("").tag(sync=True)
    tick_hz = t.Float(10.0).tag(sync=True)
    color = t.Unicode("#1f77b4").tag(sync=True)
    create = t.Bool(True).tag(sync=True)


class ProbeWidget(BrowserWidget):
    transport = t.Unicode("websocket").tag(sync=True)
    path = t.Unicode("/ws/echo").tag(sync=True)
    count = t.Int(20).tag(sync=True)
    payload_bytes = t.Int(16).tag(sync=True)


class LinkWidget(BrowserWidget):
    text = t.Unicode("").tag(sync=True)


def connect_four(lab, game: str = "demo", *, role: str = "play", seat: str = "", name: str = "browser",
                 transport: str = "websocket", poll_ms: float = 500, optimistic: bool = False,
                 seconds: float = 300, via: str = "proxy", create: bool = True) -> GameWidget:
    """A Connect Four board played from the page: click a column to drop a disc.

    The page first creates the game (`PUT /api/games/{game}`: idempotent, so every board of the same
    game may do it; create=False only joins, and a game that does not exist is then a 404).
    role "play" takes a free seat (or `seat` "X"/"O"), "watch" only follows. transport "websocket"
    (pushed states) or "poll" (fetch every `poll_ms`). optimistic=True draws your disc before the
    server answers (and removes it if refused). The connection closes by itself after `seconds`.
    """
    if role not in ("play", "watch") or transport not in ("websocket", "poll") or seat not in ("", "X", "O"):
        raise ValueError('role is "play" or "watch", transport "websocket" or "poll", seat "", "X" or "O"')
    return GameWidget(lab, kind="game", game=game, role=role, seat=seat, name=name, transport=transport,
                      poll_ms=poll_ms, optimistic=optimistic, seconds=seconds, via=via, create=create)


def whiteboard(lab, room: str = "board", *, name: str = "", tick_hz: float = 10, color: str = "#1f77b4",
               seconds: float = 300, via: str = "proxy", create: bool = True) -> WhiteboardWidget:
    """A shared whiteboard: draw with the mouse; your cursor is sent `tick_hz` times a second.

    Every cursor is labelled with its owner's name: with `name` "" each page picks one of its own
    ("guest-1a2b"), and the room numbers a name already in it ("ada 2"), so a second tab showing
    the same widget is another participant with another name.

    The page first creates the room (`PUT /api/collab/{room}`, idempotent; create=False only
    joins). It joins with a welcome that holds the newest strokes (a bounded message) and pages the
    older kept ones with `GET /api/collab/{room}?since=`."""
    return WhiteboardWidget(lab, kind="whiteboard", room=room, name=name, tick_hz=tick_hz, color=color,
                            seconds=seconds, via=via, create=create)


def probe(lab, transport: str = "websocket", *, path: str | None = None, count: int = 20,
          payload_bytes: int = 16, via: str = "proxy", port: int | None = None) -> ProbeWidget:
    """`count` timed exchanges from the page: WebSocket echoes, EventSource events or fetches.
    `port`: go through a wire tap (or emulator) listening there in front of the lab."""
    defaults = {"websocket": "/ws/echo", "sse": "/sse/feed", "fetch": "/api/echo?size=16"}
    if transport not in defaults:
        raise ValueError(f"transport must be one of {sorted(defaults)}")
    return ProbeWidget(lab, kind="probe", transport=transport, path=path or defaults[transport],
                       count=count, payload_bytes=payload_bytes, seconds=60, via=via, port=port)


def row(*items):
    """Widgets side by side that wrap onto the next line when the page is too narrow (an HBox
    clips the last ones instead)."""
    import ipywidgets as widgets

    return widgets.Box(list(items), layout=widgets.Layout(display="flex", flex_flow="row wrap",
                                                          align_items="flex-start", grid_gap="8px"))


def drawn(*items) -> str:
    """A sentence, true whether or not a browser runs this notebook, on which of `items` a browser
    has reported drawing so far. Reports reach the kernel between cells, so under Run All a cell
    queued right after the widgets runs before any report can arrive."""
    count = sum(1 for item in items if item.rendered)
    if count:
        return f"{count} of {len(items)} widgets above reported that a browser drew them."
    return (f"None of the {len(items)} widgets above has reported a browser yet: either nothing runs "
            "this notebook in a browser (a headless run), or the report is still on its way (under "
            "Run All this cell ran before any widget could answer): run this cell again to tell.")


def lab_link(lab, text: str = "open the lab's index in a new tab") -> LinkWidget:
    """A link to the lab's HTML index as this page reaches it (through Jupyter's proxy)."""
    return LinkWidget(lab, kind="link", text=text, seconds=0)
