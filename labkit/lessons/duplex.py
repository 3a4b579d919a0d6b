"""Full duplex, measured: a long upload over an emulated network while the server keeps talking.

    run = upload_during_push(lab, "4g", upload_bytes=1_000_000)
    run.summary        # ticks that arrived while the upload was still going, and the HTTP contrast

Over one WebSocket (`/ws/clock`) the client uploads `upload_bytes` in binary messages while the
server pushes ticks; over HTTP/1.1 the same bytes go up in one POST to `/api/echo`, whose answer
cannot start before the request has ended. The client talks through a NetemProxy (the chosen
profile) to a WireTap in front of the lab, so the times are read where the server is: when each
uploaded byte has crossed the emulated link, and when the server sent each message.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from labkit import _loop
from labkit.net.wire import WireTap


@dataclass
class DuplexRun:
    """What `upload_during_push` measured: `events` (one row per message or HTTP message, with
    protocol, direction, what, t_ms, t_end_ms, bytes) and `summary` (the numbers the lesson prints)."""

    events: object
    summary: dict
    profile: str


async def _websocket_upload(url: str, upload_bytes: int, chunk_bytes: int, timeout: float) -> None:
    from websockets.asyncio.client import connect

    chunks = max(1, -(-upload_bytes // chunk_bytes))
    async with connect(url, compression=None, open_timeout=timeout, max_size=None) as conn:
        acks = 0

        async def reader() -> None:
            nonlocal acks
            async for raw in conn:
                if json.loads(raw).get("type") == "ack":
                    acks += 1
                    if acks == chunks:
                        return

        listening = asyncio.create_task(reader())
        await asyncio.sleep(0.3)  # a few ticks before the upload starts
        for i in range(chunks):
            await conn.send(b"u" * min(chunk_bytes, upload_bytes - i * chunk_bytes))
        await asyncio.wait_for(listening, timeout)
        await asyncio.sleep(0.3)  # and a few after it ended


def _frames(tap: WireTap):
    frames = tap.frames()
    data = frames[frames["opcode"].isin(["TEXT", "BINARY"])].copy()
    kind = data["preview"].str.extract(r'"type": "(\w+)"')[0]
    data["what"] = kind.where(data["opcode"] == "TEXT", "upload chunk").fillna("message")
    data["protocol"] = "WebSocket"
    return data.rename(columns={"wire_bytes": "bytes"})


def _http(tap: WireTap):
    http = tap.http_messages()
    http = http[http["kind"].isin(["request", "response"])].copy()
    http["what"] = http["kind"].map({"request": "POST request (upload)",
                                     "response": "response (echo)"})
    http["protocol"] = "HTTP/1.1"
    return http.rename(columns={"wire_bytes": "bytes"})


def upload_during_push(lab, profile: str = "4g", *, upload_bytes: int = 1_000_000,
                       chunk_bytes: int = 16_384, clock_hz: float = 20.0, timeout: float = 120.0,
                       progress=print) -> DuplexRun:
    """Upload `upload_bytes` over a WebSocket while its server ticks at `clock_hz`, then POST the same
    bytes over HTTP/1.1; both through the `profile` network. `progress` gets a line per phase."""
    import pandas as pd

    from labkit.net.netem import NetemProxy

    started = time.monotonic()
    with WireTap(lab).start() as tap, NetemProxy.for_lab(tap, profile) as net:
        progress(f"WebSocket: uploading {upload_bytes:,} B over '{profile}' while the server ticks…")
        url = net.url("ws", f"/ws/clock?rate={clock_hz:g}")
        _loop.run(_websocket_upload(url, upload_bytes, chunk_bytes, timeout), timeout=timeout + 5)
        websocket = _frames(tap.settle(0.2))
        progress(f"HTTP/1.1: POSTing the same {upload_bytes:,} B… "
                 f"({time.monotonic() - started:.0f} s so far)")
        tap.reset()
        from labkit.clients.rest import RestClient

        with RestClient(net.url(), timeout=timeout) as api:
            reply = api.post("/api/echo", data=b"u" * upload_bytes)
        if reply.status != 200:
            raise RuntimeError(f"the echo answered {reply.status}: {reply.text[:200]}")
        http = _http(tap.settle(0.2))
    progress(f"done in {time.monotonic() - started:.0f} s.")
    columns = ["protocol", "direction", "what", "t_ms", "t_end_ms", "bytes"]
    events = []
    for frame in (websocket, http):  # each run's clock starts at its first uploaded byte
        frame = frame.assign(t_end_ms=frame["t_ms"] + (frame["t_end_ns"] - frame["t_ns"]) / 1e6)
        zero = frame.loc[frame["direction"] == "up", "t_ms"].min()
        frame = frame.assign(t_ms=frame["t_ms"] - zero, t_end_ms=frame["t_end_ms"] - zero)
        events.append(frame[columns])
    events = pd.concat(events, ignore_index=True)
    return DuplexRun(events, _summary(websocket, http), profile)


def _summary(websocket, http) -> dict:
    """The upload window of each protocol, and what the server sent inside it."""
    chunks = websocket[websocket["what"] == "upload chunk"]
    up_start = chunks["t_ms"].min()
    up_end = (chunks["t_ms"] + (chunks["t_end_ns"] - chunks["t_ns"]) / 1e6).max()
    ticks = websocket[websocket["what"] == "tick"]
    during = ticks[ticks["t_ms"].between(up_start, up_end)]
    request = http[http["kind"] == "request"].iloc[0]
    response = http[http["kind"] == "response"].iloc[0]
    request_end = request["t_ms"] + (request["t_end_ns"] - request["t_ns"]) / 1e6
    return {
        "ws_upload_ms": float(up_end - up_start),
        "ws_upload_bytes": int(chunks["bytes"].sum()),
        "ticks_during_upload": len(during),
        "acks_during_upload": int(((websocket["what"] == "ack")
                                   & websocket["t_ms"].between(up_start, up_end)).sum()),
        "http_request_ms": float(request_end - request["t_ms"]),
        "http_response_starts_after_request_ms": float(response["t_ms"] - request_end),
    }
