"""The lesson's clients, one per way of asking for N small resources. Each returns a `Run`: one
`Item` per request or message (when it was sent, when its answer was complete, both in seconds
from the start of the run, connection set-up included) and the connections it opened.

- HTTP/1.1 over TLS (ALPN http/1.1), written by hand on asyncio streams so that each pattern is
  exactly what it says: `h1_sequential` (one connection, one request at a time), `h1_parallel`
  (six connections, a browser's limit per origin, each taking the next request when free),
  `h1_pipelined` (one connection, every request written at once, answers read in order: RFC 9112
  allows it, browsers never shipped it);
- HTTP/2 (`h2_multiplexed`): httpx with its `http2` extra (the h2 library), every request a stream
  of one TLS connection (ALPN h2);
- HTTP/3 (`h3_multiplexed`): aioquic's own client API (`QuicConnectionProtocol` + `H3Connection`).
  Why aioquic and not niquests/qh3: the server (hypercorn) already runs on aioquic, so one QUIC
  stack is installed, not two; aioquic is maintained (the aiortc project's; 1.9 is the current
  release on PyPI, 1.7.2 the one tested here); and its event API shows each stream's headers and
  data as they arrive, which the head-of-line timeline needs. niquests (on qh3, a fork of aioquic)
  is a requests-like client, also maintained: good for fetching, but it hides the streams and
  would add a second QUIC stack. No 0-RTT: hypercorn's QUIC server keeps no session tickets, so a
  client has none to resume with;
- WebSocket over HTTP/1.1 (`ws_lockstep`: send, wait for the echo, send the next; `ws_streamed`:
  send every message without waiting, read the echoes as they come), with the `websockets` library;
  and over HTTP/2 (`ws_h2_streamed`, RFC 8441: one stream of an HTTP/2 connection), with h2.

`gap_s` (HTTP/2, HTTP/3) starts request i at i x gap_s instead of all at once: the head-of-line
timeline uses it, so each stream's delay can be seen on its own.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import struct
import time
from dataclasses import dataclass, field

from ...net import tls

HOST = "127.0.0.1"
SIX = 6
"""Parallel HTTP/1.1 connections a browser opens per origin."""
BROWSER_HEADERS = [
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                   "Chrome/131.0.0.0 Safari/537.36"),
    ("accept", "application/json, text/plain, */*"),
    ("accept-language", "en-GB,en;q=0.9"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
]
"""The request headers every client sends, a browser's fetch() (lesson 08 shows real ones)."""


@dataclass
class Item:
    index: int
    sent_s: float
    done_s: float
    stream: int | None = None

    @property
    def latency_s(self) -> float:
        return self.done_s - self.sent_s


@dataclass
class Run:
    pattern: str
    items: list[Item] = field(default_factory=list)
    connections: int = 0
    alpn: str | None = None
    total_s: float = 0.0


def _ssl(alpn: list[str]) -> ssl.SSLContext:
    context = tls.client_ssl_context()
    context.set_alpn_protocols(alpn)
    return context


def _clock():
    start = time.perf_counter()
    return lambda: time.perf_counter() - start


# -- HTTP/1.1 -------------------------------------------------------------------------------------
def h1_request(path: str, port: int) -> bytes:
    head = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
    head += "".join(f"{name.title()}: {value}\r\n" for name, value in BROWSER_HEADERS)
    return (head + "\r\n").encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


async def _h1_connect(port: int):
    reader, writer = await asyncio.open_connection(HOST, port, ssl=_ssl(["http/1.1"]),
                                                   server_hostname=HOST)
    return reader, writer


async def h1_sequential(port: int, n: int, path: str = "/api/notes/1") -> Run:
    run, now = Run("HTTP/1.1, one at a time"), _clock()
    reader, writer = await _h1_connect(port)
    run.connections, run.alpn = 1, writer.get_extra_info("ssl_object").selected_alpn_protocol()
    try:
        for i in range(n):
            sent = now()
            writer.write(h1_request(path, port))
            await read_response(reader)
            run.items.append(Item(i, sent, now()))
    finally:
        writer.close()
    run.total_s = now()
    return run


async def h1_parallel(port: int, n: int, path: str = "/api/notes/1", connections: int = SIX) -> Run:
    run, now = Run(f"HTTP/1.1, {connections} connections"), _clock()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        reader, writer = await _h1_connect(port)
        run.connections += 1
        run.alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        try:
            while not queue.empty():
                i = queue.get_nowait()
                sent = now()
                writer.write(h1_request(path, port))
                await read_response(reader)
                run.items.append(Item(i, sent, now()))
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(min(connections, max(1, n)))))
    run.items.sort(key=lambda item: item.index)
    run.total_s = now()
    return run


async def h1_pipelined(port: int, n: int, path: str = "/api/notes/1") -> Run:
    run, now = Run("HTTP/1.1, pipelined"), _clock()
    reader, writer = await _h1_connect(port)
    run.connections, run.alpn = 1, writer.get_extra_info("ssl_object").selected_alpn_protocol()
    try:
        sent = now()
        writer.write(b"".join(h1_request(path, port) for _ in range(n)))
        for i in range(n):
            await read_response(reader)
            run.items.append(Item(i, sent, now()))
    finally:
        writer.close()
    run.total_s = now()
    return run


# -- HTTP/2 ---------------------------------------------------------------------------------------
async def h2_multiplexed(port: int, n: int, path: str = "/api/notes/1", gap_s: float = 0.0) -> Run:
    import httpx

    run, now = Run("HTTP/2, one connection"), _clock()
    async with httpx.AsyncClient(http2=True, verify=_ssl(["h2", "http/1.1"]),
                                 headers=dict(BROWSER_HEADERS), timeout=60) as client:
        url = f"https://{HOST}:{port}{path}"

        async def one(i: int) -> None:
            if gap_s:
                await asyncio.sleep(i * gap_s)
            sent = now()
            response = await client.get(url)
            response.raise_for_status()
            run.alpn = {"HTTP/2": "h2", "HTTP/1.1": "http/1.1"}.get(response.http_version)
            run.items.append(Item(i, sent, now()))

        if not gap_s:  # the connection (TCP + TLS, ALPN) first, as a browser's page load has it
            await one(-1)
            run.items.clear()
        await asyncio.gather(*(one(i) for i in range(n)))
    run.connections = 1
    run.items.sort(key=lambda item: item.index)
    run.total_s = now()
    return run


# -- HTTP/3 ---------------------------------------------------------------------------------------
def _h3_protocol_class():
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.h3.connection import H3Connection
    from aioquic.h3.events import DataReceived, HeadersReceived

    class H3Client(QuicConnectionProtocol):
        """A QUIC connection speaking HTTP/3: `get(path)` returns (status, body)."""

        def __init__(self, quic, **kwargs):
            super().__init__(quic, **kwargs)
            self.quic = quic
            self.h3 = H3Connection(quic)
            self.waiting: dict[int, asyncio.Future] = {}
            self.parts: dict[int, dict] = {}

        async def get(self, authority: str, path: str) -> tuple[int, bytes]:
            stream_id = self.quic.get_next_available_stream_id()
            headers = [(b":method", b"GET"), (b":scheme", b"https"),
                       (b":authority", authority.encode()), (b":path", path.encode())]
            headers += [(k.encode(), v.encode()) for k, v in BROWSER_HEADERS]
            self.h3.send_headers(stream_id, headers, end_stream=True)
            future = asyncio.get_running_loop().create_future()
            self.waiting[stream_id] = future
            self.parts[stream_id] = {"status": 0, "body": b""}
            self.transmit()
            return await future

        def quic_event_received(self, event) -> None:
            for h3_event in self.h3.handle_event(event):
                part = self.parts.get(getattr(h3_event, "stream_id", -1))
                if part is None:
                    continue
                if isinstance(h3_event, HeadersReceived):
                    part["status"] = int(dict(h3_event.headers).get(b":status", b"0"))
                elif isinstance(h3_event, DataReceived):
                    part["body"] += h3_event.data
                if getattr(h3_event, "stream_ended", False):
                    future = self.waiting.pop(h3_event.stream_id)
                    if not future.done():
                        future.set_result((part["status"], part.pop("body")))

    return H3Client


async def h3_connect(port: int):
    """A connected H3Client to 127.0.0.1:port (UDP), trusting the kit's CA; returns (transport,
    protocol)."""
    from aioquic.h3.connection import H3_ALPN
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=HOST)
    configuration.load_verify_locations(cadata=tls.authority().cert_pem.bytes())
    quic = QuicConnection(configuration=configuration)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _h3_protocol_class()(quic), remote_addr=(HOST, port))
    protocol.connect((HOST, port))
    await asyncio.wait_for(protocol.wait_connected(), 30)
    return transport, protocol


async def h3_multiplexed(port: int, n: int, path: str = "/api/notes/1", gap_s: float = 0.0) -> Run:
    run, now = Run("HTTP/3, one QUIC connection"), _clock()
    transport, protocol = await h3_connect(port)
    run.connections, run.alpn = 1, "h3"
    try:
        async def one(i: int) -> None:
            if gap_s:
                await asyncio.sleep(i * gap_s)
            sent = now()
            status, _ = await asyncio.wait_for(protocol.get(f"{HOST}:{port}", path), 60)
            if status != 200:
                raise RuntimeError(f"HTTP/3 answer {status}")
            run.items.append(Item(i, sent, now()))

        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        protocol.close()
        await protocol.wait_closed()
        transport.close()
    run.items.sort(key=lambda item: item.index)
    run.total_s = now()
    return run


# -- WebSocket ------------------------------------------------------------------------------------
async def _ws_connect(port: int):
    from websockets.asyncio.client import connect

    return await connect(f"wss://{HOST}:{port}/ws/echo", ssl=_ssl(["http/1.1"]),
                         compression=None)


async def ws_lockstep(port: int, n: int, message: str = "x" * 64) -> Run:
    run, now = Run("WebSocket, lock-step"), _clock()
    ws = await _ws_connect(port)
    run.connections, run.alpn = 1, "http/1.1"
    try:
        for i in range(n):
            sent = now()
            await ws.send(message)
            await ws.recv()
            run.items.append(Item(i, sent, now()))
    finally:
        await ws.close()
    run.total_s = now()
    return run


async def ws_streamed(port: int, n: int, message: str = "x" * 64, gap_s: float = 0.0) -> Run:
    run, now = Run("WebSocket, streamed"), _clock()
    ws = await _ws_connect(port)
    run.connections, run.alpn = 1, "http/1.1"
    sent_at: list[float] = []
    try:
        async def send_all() -> None:
            for i in range(n):
                if gap_s:
                    await asyncio.sleep(max(0.0, i * gap_s - now()))
                sent_at.append(now())
                await ws.send(message)

        sender = asyncio.create_task(send_all())
        for i in range(n):
            await ws.recv()
            run.items.append(Item(i, sent_at[i], now()))
        await sender
    finally:
        await ws.close()
    run.total_s = now()
    return run


# -- WebSocket over HTTP/2 (RFC 8441) -------------------------------------------------------------
def ws_frame(payload: bytes) -> bytes:
    """One masked text frame, client to server (RFC 6455 section 5.2), payload under 64 KiB."""
    mask = os.urandom(4)
    size = len(payload)
    length = bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + struct.pack("!H", size)
    return bytes([0x81]) + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_messages(buffer: bytearray) -> list[bytes]:
    """Take every whole unmasked frame (server to client) off the front of `buffer`: payloads."""
    out = []
    while len(buffer) >= 2:
        size, start = buffer[1] & 0x7F, 2
        if size == 126:
            if len(buffer) < 4:
                break
            size, start = struct.unpack("!H", buffer[2:4])[0], 4
        if len(buffer) < start + size:
            break
        out.append(bytes(buffer[start:start + size]))
        del buffer[:start + size]
    return out


async def ws_h2_streamed(port: int, n: int, message: str = "x" * 64) -> Run:
    """WebSocket over HTTP/2 (RFC 8441, extended CONNECT): the WebSocket is one stream of an
    HTTP/2 connection (ALPN h2), its frames the stream's DATA. The h2 library speaks HTTP/2; the
    frames are built here (the `websockets` client speaks HTTP/1.1 only). Streamed: every message
    sent at once, the echoes read as they come."""
    import h2.config
    import h2.connection
    import h2.events

    run, now = Run("WebSocket over HTTP/2, streamed"), _clock()
    reader, writer = await asyncio.open_connection(HOST, port, ssl=_ssl(["h2"]), server_hostname=HOST)
    run.connections, run.alpn = 1, writer.get_extra_info("ssl_object").selected_alpn_protocol()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    buffer, status = bytearray(), None
    echoes: list[float] = []

    async def pump() -> None:  # send what h2 has, read one chunk, handle its events
        nonlocal status
        writer.write(conn.data_to_send())
        data = await reader.read(65536)
        if not data:
            raise ConnectionError("the server closed the HTTP/2 connection")
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                buffer.extend(event.data)
                echoes.extend(now() for _ in ws_messages(buffer))

    try:
        while conn.remote_settings.enable_connect_protocol != 1:  # RFC 8441: the server says yes
            await pump()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [(":method", "CONNECT"), (":protocol", "websocket"),
                                   (":scheme", "https"), (":path", "/ws/echo"),
                                   (":authority", f"{HOST}:{port}"), ("sec-websocket-version", "13")])
        while status is None:
            await pump()
        if status != 200:
            raise RuntimeError(f"extended CONNECT answered {status}")
        sent = []
        for _ in range(n):
            sent.append(now())
            conn.send_data(stream, ws_frame(message.encode()))
        while len(echoes) < n:
            await pump()
        run.items = [Item(i, sent[i], echoes[i]) for i in range(n)]
        conn.send_data(stream, bytes([0x88, 0x80]) + os.urandom(4), end_stream=True)  # Close, masked
        conn.close_connection()
        writer.write(conn.data_to_send())
        await writer.drain()
    finally:
        writer.close()
    run.total_s = now()
    return run


PATTERNS = {
    "h1 sequential": h1_sequential,
    "h1 six connections": h1_parallel,
    "h1 pipelined": h1_pipelined,
    "h2 multiplexed": h2_multiplexed,
    "h3 multiplexed": h3_multiplexed,
    "ws lock-step": ws_lockstep,
    "ws streamed": ws_streamed,
}
"""Every pattern by its short name (the h3 one takes the UDP port, the others the TCP port)."""
MORE_PATTERNS = {"ws over h2 streamed": ws_h2_streamed}
"""Patterns the lesson runs on their own, outside the grid."""
