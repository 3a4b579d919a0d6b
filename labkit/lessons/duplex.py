"""Full duplex, measured: a long upload over an emulated network while the server keeps talking.

    run = upload_during_push(lab, "4g", upload_bytes=1_000_000)
    run.summary        # ticks that arrived while the upload was still going, and the HTTP contrast

Over one WebSocket (`/ws/clock`) the client uploads `upload_bytes` in binary messages while the
server pushes ticks. Over HTTP/1.1 the same bytes go up twice in one POST each:

- to the lab's `POST /api/echo`, whose answer starts only after the whole request has arrived.
  That is the lab's choice, not HTTP's: its handler answers with the body it read, and the lab's
  guard (`labkit.server.guard`) reads every request body before any handler runs (that is how it
  enforces its 30 s body deadline);
- to `StreamingEcho`, a handler that answers at once: `200` with a chunked body as soon as the
  request head arrived, then each piece of the request body written back as it is read. HTTP/1.1
  allows that (RFC 9112 9.3 and RFC 9110 15: a server may send its response before it has read
  the whole request), and it shows what HTTP/1.1 does *not* give: one exchange is still a request
  and its one answer; the server cannot send a second, unasked message on that exchange.

The client talks through a NetemProxy (the chosen profile) to a WireTap in front of the server, so
the times are read where the server is: when each uploaded byte has crossed the emulated link,
and when the server sent each message.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from labkit import _loop
from labkit.net.wire import WireTap
from labkit.server.hostcheck import host_allowed
from labkit.server.listen import Limits, half_close, listen


def heartbeat_text(lab) -> str:
    """The lab's WebSocket heartbeat, as lesson 02 states it (`MaskCheck` looks every interval and
    pings a socket that sent nothing since its last look, so the first ping comes after one to two
    intervals of silence, then one per interval): this kernel's lab knows its own
    (`lab.config.ws_heartbeat`); a class server joined with `lk.join` does not publish its own, so
    the sentence gives the kit's default and says the instructor may have set another."""
    from labkit.server.config import LabConfig

    def sentence(interval: float) -> str:
        return (f"a ping after **{interval:g} to {2 * interval:g} s** of silence, then one every "
                f"**{interval:g} s** while the socket stays silent")

    config = getattr(lab, "config", None)
    if config is not None:
        return sentence(config.ws_heartbeat)
    return (sentence(LabConfig().ws_heartbeat) + " by default (a class server's instructor may "
            "set another interval: `labkit serve --limit ws_heartbeat=S`)")


def lab_compression_memory() -> dict:
    """What the lab server holds for one compressed WebSocket, by zlib's own formulas
    (`wire.deflate_memory`, a model): its compressor, with the window it negotiates
    (`server_max_window_bits`) and its memLevel, and its decompressor, with the 32 KiB window
    clients compress with. Keys: window_bytes, mem_level, decompressor_window_bytes, bytes."""
    from labkit.net.wire import deflate_memory
    from labkit.server.websocket import DEFLATE_MEM_LEVEL, DEFLATE_WINDOW_BITS

    compressor = deflate_memory(DEFLATE_WINDOW_BITS, DEFLATE_MEM_LEVEL)["compressor_bytes"]
    decompressor = deflate_memory(15)["decompressor_bytes"]
    return {"window_bytes": 1 << DEFLATE_WINDOW_BITS, "mem_level": DEFLATE_MEM_LEVEL,
            "decompressor_window_bytes": 1 << 15, "bytes": compressor + decompressor}


STREAM_MAX_BODY = 16 * 1024 * 1024
"""Largest request body `StreamingEcho` echoes; a longer one ends the connection."""


class StreamingEcho(asyncio.Protocol):
    """An HTTP/1.1 handler that answers a POST while it is still arriving (one request per
    connection): on the request head, `200 OK` with `Transfer-Encoding: chunked`; then every piece
    of the request body goes back as one chunk the moment it is read; the last chunk follows the
    request's end. Parsed with h11. It stops reading while its own answer cannot be written (the
    client does not read), so it holds at most one piece of the body. Served through
    `labkit.server.listen` like every listener of the kit (`serve_streaming_echo`), with the lab's
    head deadline (`HEAD_TIMEOUT_S`: no whole head by then, 408) and the lab's Host check
    (`hostcheck.host_allowed` for a loopback listener: another name gets 403 problem+json, a guard
    against DNS rebinding, as on every door of the kit)."""

    def __init__(self) -> None:
        import h11

        self.h11 = h11
        self.conn = h11.Connection(h11.SERVER)
        self.transport: asyncio.Transport | None = None
        self.received = 0
        self.head_timer: asyncio.TimerHandle | None = None
        """The head deadline; after an error answer, the end of the linger."""
        self.ending = False
        """An error answer was sent and our side half-closed: what still arrives is dropped."""

    def connection_made(self, transport) -> None:
        from labkit.server.config import HEAD_TIMEOUT_S

        self.transport = transport
        self.head_timer = asyncio.get_running_loop().call_later(
            HEAD_TIMEOUT_S, self._fail, 408, f"no whole request head within {HEAD_TIMEOUT_S:g} s")

    def connection_lost(self, exc) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()

    def _send(self, event) -> None:
        data = self.conn.send(event)
        if data and self.transport is not None:
            self.transport.write(data)

    def _fail(self, status: int, detail: str) -> None:
        h11 = self.h11
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = json.dumps({"type": "about:blank", "status": status, "detail": detail}).encode()
            self._send(h11.Response(status_code=status, headers=[
                ("Content-Type", "application/problem+json"), ("Content-Length", str(len(body))),
                ("Connection", "close")]))
            self._send(h11.Data(data=body))
            self._send(h11.EndOfMessage())
        self._linger()

    def _linger(self) -> None:
        """After an error answer, end the connection as the lab's guard does (`listen.half_close`):
        what the client still sends (the rest of a refused body) is read and dropped until it
        closes its side, so no RST destroys the answer before the client read it."""
        transport = self.transport
        if transport is None or self.ending:
            return
        self.ending = True
        if self.head_timer is not None:
            self.head_timer.cancel()
        self.head_timer = half_close(transport, transport.close)

    def data_received(self, data: bytes) -> None:
        if self.ending:
            return  # after an error answer: read and dropped
        h11 = self.h11
        self.conn.receive_data(data)
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._fail(400, f"not HTTP/1.1: {exc}"[:120])
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                if self.head_timer is not None:
                    self.head_timer.cancel()
                host = dict(event.headers).get(b"host", b"").decode("latin-1")
                if not host_allowed(host, "127.0.0.1"):
                    self._fail(403, f"Host {host[:100]!r} is not allowed (a guard against DNS "
                                    "rebinding)")
                    return
                if event.method != b"POST":
                    self._fail(405, "POST a body: it is streamed back as it arrives")
                    return
                self._send(h11.Response(status_code=200, headers=[
                    ("Content-Type", "application/octet-stream"),
                    ("Transfer-Encoding", "chunked"), ("Connection", "close")]))
            elif isinstance(event, h11.Data):
                self.received += len(event.data)
                if self.received > STREAM_MAX_BODY:
                    if self.transport is not None:
                        self.transport.close()
                    return
                self._send(h11.Data(data=bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                self._send(h11.EndOfMessage())
                if self.transport is not None:
                    self.transport.close()
                return
            elif isinstance(event, h11.ConnectionClosed):
                return

    def eof_received(self) -> bool:
        if not self.ending:
            self.conn.receive_data(b"")
        return False  # (then the transport closes)

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()


def serve_streaming_echo():
    """Start a `StreamingEcho` listener on 127.0.0.1 (a free port) on the kit's client loop;
    returns the Listener (its `port`; `stop_streaming_echo(listener)` closes it)."""
    return _loop.run(listen(StreamingEcho, "127.0.0.1", 0, limits=Limits(max_connections=64)),
                     timeout=10)


def stop_streaming_echo(listener) -> None:
    async def close() -> None:
        listener.close()
        await listener.wait_closed()

    _loop.run(close(), timeout=10)


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


HTTP_WAITS, HTTP_STREAMS = "HTTP/1.1, echo after the body", "HTTP/1.1, streaming handler"
"""The two HTTP runs' names in `DuplexRun.events["protocol"]`."""


def _http(tap: WireTap, protocol: str = HTTP_WAITS):
    http = tap.http_messages()
    http = http[http["kind"].isin(["request", "response"])].copy()
    http["what"] = http["kind"].map({"request": "POST request (upload)",
                                     "response": "response (echo)"})
    http["protocol"] = protocol
    return http.rename(columns={"wire_bytes": "bytes"})


def _post_through(target, profile: str, upload_bytes: int, timeout: float, path: str,
                  protocol: str):
    """POST `upload_bytes` to `target` + `path` through a tap and the `profile` link; the tap's
    request and response rows."""
    from labkit.clients.rest import RestClient
    from labkit.net.netem import NetemProxy

    with WireTap(target).start() as tap, NetemProxy.for_lab(tap, profile) as net, \
            RestClient(net.url(), timeout=timeout) as api:
        reply = api.post(path, data=b"u" * upload_bytes)
        if reply.status != 200 or len(reply.body) != upload_bytes:
            raise RuntimeError(f"the echo answered {reply.status} with {len(reply.body)} of "
                               f"{upload_bytes} bytes: {reply.text[:200]}")
        return _http(tap.settle(0.2), protocol)


def upload_during_push(lab, profile: str = "4g", *, upload_bytes: int = 1_000_000,
                       chunk_bytes: int = 16_384, clock_hz: float = 20.0, timeout: float = 120.0,
                       progress=print) -> DuplexRun:
    """Upload `upload_bytes` over a WebSocket while its server ticks at `clock_hz`, then POST the same
    bytes over HTTP/1.1 twice: to the lab's echo (answers after the body) and to a streaming
    handler (answers while the body arrives); all through the `profile` network. `progress` gets
    a line per phase."""
    import pandas as pd

    from labkit.net.netem import NetemProxy

    started = time.monotonic()
    with WireTap(lab).start() as tap, NetemProxy.for_lab(tap, profile) as net:
        progress(f"WebSocket: uploading {upload_bytes:,} B over '{profile}' while the server ticks…")
        url = net.url("ws", f"/ws/clock?rate={clock_hz:g}")
        _loop.run(_websocket_upload(url, upload_bytes, chunk_bytes, timeout), timeout=timeout + 5)
        websocket = _frames(tap.settle(0.2))
    progress(f"HTTP/1.1: POSTing the same {upload_bytes:,} B to the lab's echo… "
             f"({time.monotonic() - started:.0f} s so far)")
    http = _post_through(lab, profile, upload_bytes, timeout, "/api/echo", HTTP_WAITS)
    progress(f"HTTP/1.1: and to a streaming handler… ({time.monotonic() - started:.0f} s so far)")
    listener = serve_streaming_echo()
    try:
        streamed = _post_through(("127.0.0.1", listener.port), profile, upload_bytes, timeout,
                                 "/stream", HTTP_STREAMS)
    finally:
        stop_streaming_echo(listener)
    progress(f"done in {time.monotonic() - started:.0f} s.")
    columns = ["protocol", "direction", "what", "t_ms", "t_end_ms", "bytes"]
    events = []
    for frame in (websocket, http, streamed):  # each run's clock starts at its first uploaded byte
        frame = frame.assign(t_end_ms=frame["t_ms"] + (frame["t_end_ns"] - frame["t_ns"]) / 1e6)
        zero = frame.loc[frame["direction"] == "up", "t_ms"].min()
        frame = frame.assign(t_ms=frame["t_ms"] - zero, t_end_ms=frame["t_end_ms"] - zero)
        events.append(frame[columns])
    events = pd.concat(events, ignore_index=True)
    return DuplexRun(events, _summary(websocket, http, streamed), profile)


def _request_and_response(http) -> dict:
    request = http[http["kind"] == "request"].iloc[0]
    response = http[http["kind"] == "response"].iloc[0]
    request_end = request["t_ms"] + (request["t_end_ns"] - request["t_ns"]) / 1e6
    response_end = response["t_ms"] + (response["t_end_ns"] - response["t_ns"]) / 1e6
    return {"request_ms": float(request_end - request["t_ms"]),
            "response_starts_ms": float(response["t_ms"] - request["t_ms"]),
            "response_starts_after_request_ms": float(response["t_ms"] - request_end),
            "response_ends_after_request_ms": float(response_end - request_end)}


def _summary(websocket, http, streamed) -> dict:
    """The upload window of each protocol, and what the server sent inside it. For each HTTP run:
    when the response began after the request's first byte, and after its last (negative: the
    answer began before the request had ended)."""
    chunks = websocket[websocket["what"] == "upload chunk"]
    up_start = chunks["t_ms"].min()
    up_end = (chunks["t_ms"] + (chunks["t_end_ns"] - chunks["t_ns"]) / 1e6).max()
    ticks = websocket[websocket["what"] == "tick"]
    during = ticks[ticks["t_ms"].between(up_start, up_end)]
    waits, streams = _request_and_response(http), _request_and_response(streamed)
    return {
        "ws_upload_ms": float(up_end - up_start),
        "ws_upload_bytes": int(chunks["bytes"].sum()),
        "ticks_during_upload": len(during),
        "acks_during_upload": int(((websocket["what"] == "ack")
                                   & websocket["t_ms"].between(up_start, up_end)).sum()),
        "http_request_ms": waits["request_ms"],
        "http_response_starts_after_request_ms": waits["response_starts_after_request_ms"],
        "streamed_request_ms": streams["request_ms"],
        "streamed_response_starts_ms": streams["response_starts_ms"],
        "streamed_response_starts_after_request_ms": streams["response_starts_after_request_ms"],
        "streamed_response_ends_after_request_ms": streams["response_ends_after_request_ms"],
    }
