"""REST over WebSocket, next to REST itself, for lesson 09.

`RestOverWs(lab)` sends notes requests as messages on one WebSocket (`/ws/rest`) and matches each
answer to its request by id. `compare_reads(lab, note_bytes, reads)` creates one note and reads it
`reads` times three ways through a wire tap: REST with a cache (If-None-Match → 304), REST without
one, and REST over WebSocket (no validators exist there, so every read carries the whole body). One
row per way: bytes on the wire per read (HTTP / WebSocket bytes only, not TCP/IP) and how many
answers carried the body.
"""

from __future__ import annotations

import itertools
import json

from websockets.asyncio.client import connect

from labkit import _loop

from ._target import base_url


class RestOverWs:
    """`api = RestOverWs(lab)`; `api.call("GET", "/api/notes/1")` → {"id", "status", "body" | "error"}."""

    def __init__(self, target, timeout: float = 10.0):
        self.url = base_url(target, "ws") + "/ws/rest"
        self.timeout = timeout
        self._ids = itertools.count(1)

        async def _open():
            return await connect(self.url, compression=None)

        self._conn = _loop.run(_open(), timeout=timeout)
        _loop.close_when_collected(self, self._conn.close)

    def call(self, method: str, path: str, body=None) -> dict:
        """One request, its answer (matched by id)."""
        request_id = next(self._ids)

        async def _call():
            await self._conn.send(json.dumps({"id": request_id, "method": method, "path": path,
                                              "body": body}))
            while True:
                answer = json.loads(await self._conn.recv())
                if answer.get("id") == request_id:
                    return answer

        return _loop.run(_call(), timeout=self.timeout)

    def send_raw(self, text: str) -> dict:
        """Send any text (e.g. malformed JSON) and return the next answer."""
        async def _send():
            await self._conn.send(text)
            return json.loads(await self._conn.recv())

        return _loop.run(_send(), timeout=self.timeout)

    def close(self) -> None:
        _loop.run(self._conn.close(), timeout=self.timeout)


def compare_reads(lab, note_bytes: int = 2000, reads: int = 20):
    """Read one note `reads` times three ways; a tidy frame with one row per way."""
    import pandas as pd

    from labkit.net.wire import tap as wire_tap

    from .rest import RestClient

    note = {"title": "statement", "body": "x" * note_bytes}
    rows = []
    for way in ("REST with cache (304)", "REST without cache", "REST over WebSocket"):
        tap = wire_tap(lab)
        try:
            if way == "REST over WebSocket":
                over_ws = RestOverWs(tap.url("ws"))
                nid = over_ws.call("POST", "/api/notes", note)["body"]["id"]
                tap.settle()
                tap.reset()
                answers = [over_ws.call("GET", f"/api/notes/{nid}") for _ in range(reads)]
                with_body = sum(1 for a in answers if a.get("body"))
                over_ws.close()
            else:
                api = RestClient(tap.url(), cache=way == "REST with cache (304)")
                nid = api.post("/api/notes", json=note).json()["id"]
                tap.settle()
                tap.reset()
                for _ in range(reads):
                    api.get(f"/api/notes/{nid}")
                with_body = int((api.log_frame(last=reads)["response_body_bytes"] > 0).sum())
                api.close()
            tap.settle()
            totals = tap.totals()
        finally:
            tap.stop()
        rows.append({"way": way, "reads": reads,
                     "bytes_per_read": (totals["bytes_up"] + totals["bytes_down"]) / reads,
                     "answers_with_body": with_body})
    return pd.DataFrame(rows)
