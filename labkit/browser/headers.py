"""Request header bytes on the wire: a poll and a WebSocket upgrade, as the wire tap recorded them.

Published anchors to compare with (request heads only, from the sources cited in the lesson):
a 2017 HAR capture of a browser poll (430 B) and of a browser upgrade request (594 B), and
Kaazing's often quoted 871 B of HTTP headers per request.
"""

from __future__ import annotations

REFERENCE_REQUEST_BYTES = {
    "poll (2017 HAR capture)": 430,
    "upgrade (2017 HAR capture)": 594,
    "request (Kaazing)": 871,
}
"""Request-head sizes others measured, in bytes (not measured here)."""


def request_heads(tap, client: str = ""):
    """One row per request the tap saw: client, kind ("upgrade" or "poll"), target, header_bytes
    (request line + headers + the blank line), and the header names in order."""
    import pandas as pd

    messages = tap.settle().http_messages()
    rows = []
    for _, m in messages[messages["kind"] == "request"].iterrows():
        names = [name for name, _ in m["headers"]]
        upgrade = any(n.lower() == "upgrade" for n in names)
        rows.append({"client": client, "kind": "upgrade" if upgrade else "poll", "target": m["target"],
                     "header_bytes": int(m["header_bytes"]), "headers": len(names),
                     "header_names": ", ".join(names)})
    return pd.DataFrame(rows, columns=["client", "kind", "target", "header_bytes", "headers", "header_names"])


def python_request_heads(target, tap_factory, path: str = "/api/games") -> object:
    """The kit's minimal Python clients through a fresh wire tap: one poll (aiohttp; `path`, by
    default the list of games) and one upgrade
    (websockets). `tap_factory(target)` starts the tap (lk.tap)."""
    from labkit.clients.rest import RestClient
    from labkit.clients.ws import WsClient

    tap = tap_factory(target)
    try:
        with RestClient(tap.url()) as api:
            api.get(path)
        ws = WsClient(tap.url("ws"), "/ws/echo")
        ws.echo("x")
        ws.close()
        return request_heads(tap, "labkit Python client")
    finally:
        tap.stop()
