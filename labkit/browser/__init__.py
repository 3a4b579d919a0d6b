"""Browser clients: widgets whose page talks to the lab itself (through Jupyter's proxy).

    lk.browser.connect_four(lab, "g1")      # a Connect Four board played from the page
    lk.browser.whiteboard(lab, "room1")     # a shared whiteboard with live cursors
    lk.browser.probe(lab, "websocket")      # timed echoes / EventSource events / fetches
    lk.browser.lab_link(lab)                # the lab's index, opened through the proxy
"""

from __future__ import annotations

from .headers import REFERENCE_REQUEST_BYTES, python_request_heads, request_heads
from .widgets import (
    BrowserWidget,
    GameWidget,
    LinkWidget,
    ProbeWidget,
    WhiteboardWidget,
    connect_four,
    drawn,
    lab_link,
    probe,
    row,
    whiteboard,
)

__all__ = [
    "REFERENCE_REQUEST_BYTES", "BrowserWidget", "GameWidget", "LinkWidget", "ProbeWidget",
    "WhiteboardWidget", "connect_four", "drawn", "lab_link", "probe", "python_request_heads",
    "request_heads", "row", "whiteboard",
]
