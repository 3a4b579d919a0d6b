"""The wire tap: a real TCP proxy that records every byte and shows it as HTTP messages and WebSocket frames.

    tap = lk.tap(lab)                                  # listens on 127.0.0.1, forwards to the lab
    ws = lk.websocket(tap.url("ws"), "/ws/echo")       # talk to the lab *through* the tap
    ws.echo("hi"); tap.frames()                        # FIN, opcode, MASK, length field, sizes ...

Every chunk is recorded (connection, direction, time, bytes) when the proxy reads it. Parsing is
lazy: it runs when you ask for a table, so recording adds next to nothing to a round trip. HTTP/1.1
is parsed with h11; after a `101 Switching Protocols` both directions are parsed as WebSocket frames
with the websockets library's own frame parser. Header sizes are the bytes the parser consumed minus
the payload, so they are measured, not computed from the RFC.

What the tap counts is HTTP and WebSocket bytes only: the bytes TCP carries for the application.
The TCP/IP packets around them (headers of every packet, acknowledgements, a new connection's
handshake and teardown) never reach a TCP proxy; `packet_model` estimates them, and says it is a
model. `BROWSER_HEADERS` is a request header set like a browser's fetch() sends, to compare with the
kit's minimal client.

Size: longer than 500 lines because the tap parses both protocols it shows (HTTP/1.1 with h11,
WebSocket frames with websockets' sans-I/O reader, compressed or not) over one connection that
switches between them; the proxy it records through is labkit/net/proxy.py.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
import zlib
from bisect import bisect_right
from typing import Any
from urllib.parse import unquote, urlsplit

import h11
from websockets.exceptions import ProtocolError
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import CLOSE, TEXT, Close, Frame
from websockets.headers import parse_extension
from websockets.streams import StreamReader
from websockets.utils import accept_key as _accept_key

from labkit.clients._target import through
from labkit.server.listen import Limits

from .proxy import DOWN, UP, Connection, TcpProxy

__all__ = ["BROWSER_HEADERS", "DOWN", "PUBLISHED_HEADER_BYTES", "UP", "WireTap", "accept_key",
           "codes_as_text", "count_packets", "deflate_memory", "directions", "packet_model",
           "packet_table", "retransmission_give_up_s", "segments", "send_frames", "tap",
           "tcp_settings"]

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""The fixed string RFC 6455 appends to Sec-WebSocket-Key before hashing."""


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + WEBSOCKET_GUID))."""
    return _accept_key(key)


# -- one direction of one connection ---------------------------------------------------------------
class _Stream:
    """Byte offsets of one direction and the time each chunk arrived."""

    def __init__(self) -> None:
        self.fed = 0
        self.ends: list[int] = []
        self.times: list[int] = []

    def add(self, n: int, t_ns: int) -> None:
        self.fed += n
        self.ends.append(self.fed)
        self.times.append(t_ns)

    def time_at(self, offset: int) -> int:
        """perf_counter_ns of the chunk that carried byte number `offset`."""
        i = min(bisect_right(self.ends, offset), len(self.times) - 1)
        return self.times[i]


_CREDENTIALS = re.compile(rb"(?im)^(authorization:[ \t]*\S+[ \t]+)(\S+)")


def redact(head: bytes) -> bytes:
    """`head` with the credentials of its `Authorization` header (a class server's token) replaced
    by as many `*`: the tables and printed heads show every byte's place, never the secret."""
    return _CREDENTIALS.sub(lambda m: m[1] + b"*" * len(m[2]), head)


def _strip_body_headers(headers) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if k.lower() not in (b"content-length", b"transfer-encoding")]


def _deflate_for(response_headers, direction: str) -> list:
    """The permessage-deflate decoder for frames going `direction`, if the handshake agreed on one."""
    value = next((v.decode("latin-1") for k, v in response_headers
                  if k.lower() == b"sec-websocket-extensions"), None)
    if not value:
        return []
    for name, params in parse_extension(value):
        if name != "permessage-deflate":
            continue
        p = dict(params)
        sender = "client" if direction == UP else "server"
        receiver = "server" if direction == UP else "client"
        return [PerMessageDeflate(
            remote_no_context_takeover=f"{sender}_no_context_takeover" in p,
            local_no_context_takeover=f"{receiver}_no_context_takeover" in p,
            remote_max_window_bits=int(p.get(f"{sender}_max_window_bits") or 15),
            local_max_window_bits=int(p.get(f"{receiver}_max_window_bits") or 15),
        )]
    return []


class _FrameReader:
    """Frames of one direction, parsed by websockets' Frame.parse as bytes arrive."""

    def __init__(self, direction: str, base: int, extensions: list):
        self.direction, self.base, self.extensions = direction, base, extensions
        self.reader = StreamReader()
        self.fed = 0
        self.parser = None
        self.start = 0
        self.reads: list[bytes] = []
        self.dead = False

    @property
    def consumed(self) -> int:
        return self.fed - len(self.reader.buffer)

    def _read_exact(self, n: int):
        data = yield from self.reader.read_exact(n)
        self.reads.append(bytes(data[:14]))
        return data

    def feed(self, data: bytes) -> None:
        if data:
            self.reader.feed_data(data)
            self.fed += len(data)

    def frames(self):
        """Yield (start, end, header bytes, Frame) for every frame now complete; errors end the stream."""
        while not self.dead:
            if self.parser is None:
                if not self.reader.buffer:
                    return
                self.start, self.reads = self.consumed, []
                self.parser = Frame.parse(self._read_exact, mask=self.direction == UP,
                                          extensions=self.extensions)
            try:
                next(self.parser)
                return  # waiting for more bytes
            except StopIteration as done:
                frame = done.value
                self.parser = None
                yield self.start, self.consumed, b"".join(self.reads[:-1]), frame
            except EOFError:
                self.parser, self.dead = None, True
            except (ProtocolError, zlib.error, ValueError) as exc:
                self.parser, self.dead = None, True
                yield self.start, self.consumed, b"", exc


class _ConnParser:
    """Everything one connection carried: HTTP/1.1 until a 101, then WebSocket frames."""

    def __init__(self, tap: WireTap, conn_id: int):
        self.tap, self.id = tap, conn_id
        self.streams = {UP: _Stream(), DOWN: _Stream()}
        self.phase = "http"
        self.server = h11.Connection(h11.SERVER)  # reads what the client sent
        self.client = h11.Connection(h11.CLIENT)  # reads what the server sent
        self.http_fed = {UP: 0, DOWN: 0}
        # the HTTP message being read in each direction: its event, where its head starts and ends
        self.current: dict[str, dict[str, Any] | None] = {UP: None, DOWN: None}
        self.frame_readers: dict[str, _FrameReader] = {}
        self.raw = {UP: bytearray(), DOWN: bytearray()}  # HTTP bytes not yet part of a finished message
        self.raw_base = {UP: 0, DOWN: 0}
        self.closed = False

    # -- feeding -------------------------------------------------------------------------------
    def feed(self, direction: str, t_ns: int, data: bytes) -> None:
        self.streams[direction].add(len(data), t_ns)
        if self.phase == "http":
            self.http_fed[direction] += len(data)
            self.raw[direction].extend(data)
            (self.server if direction == UP else self.client).receive_data(data)
            self._pump_http()
        elif self.phase == "ws":
            self.frame_readers[direction].feed(data)
            self._pump_ws(direction)

    def eof(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.phase == "http":
            for conn in (self.server, self.client):
                with contextlib.suppress(h11.RemoteProtocolError):
                    conn.receive_data(b"")
            self._pump_http()

    # -- HTTP ----------------------------------------------------------------------------------
    def _consumed(self, direction: str) -> int:
        conn = self.server if direction == UP else self.client
        return self.http_fed[direction] - len(conn.trailing_data[0])

    def _pump_http(self) -> None:
        try:
            progressed = True
            while progressed and self.phase == "http":
                progressed = self._step(UP) or self._step(DOWN)
        except (h11.RemoteProtocolError, h11.LocalProtocolError) as exc:
            self.phase = "broken"
            self.tap._note_error(self.id, f"HTTP parse stopped: {exc}")

    def _step(self, direction: str) -> bool:
        conn = self.server if direction == UP else self.client
        if direction == DOWN and self.client.our_state is h11.IDLE:
            return False  # no request yet: nothing to read a response against
        before = self._consumed(direction)
        event = conn.next_event()
        if event in (h11.NEED_DATA, h11.PAUSED):
            return False
        now = self._consumed(direction)
        if isinstance(event, h11.Request | h11.Response | h11.InformationalResponse):
            self.current[direction] = {"event": event, "start": before, "head_end": now, "content": 0}
            if isinstance(event, h11.Request):
                self.client.send(h11.Request(method=event.method, target=event.target,
                                             headers=_strip_body_headers(event.headers)))
                self.client.send(h11.EndOfMessage())
            elif isinstance(event, h11.InformationalResponse):
                self._finish(direction, now)
                self.server.send(h11.InformationalResponse(status_code=event.status_code,
                                                           headers=event.headers,
                                                           reason=event.reason))
                if event.status_code == 101:
                    self._switch_to_websocket(event)
            else:
                self.server.send(h11.Response(status_code=event.status_code, reason=event.reason,
                                              headers=_strip_body_headers(event.headers)))
        elif isinstance(event, h11.Data):
            current = self.current[direction]
            assert current is not None, "h11 reports body data only inside a message"
            current["content"] += len(event.data)
        elif isinstance(event, h11.EndOfMessage):
            self._finish(direction, now)
            if direction == DOWN:
                self.server.send(h11.EndOfMessage())
                if self.server.our_state is h11.DONE and self.server.their_state is h11.DONE:
                    self.server.start_next_cycle()
                    self.client.start_next_cycle()
        elif isinstance(event, h11.ConnectionClosed):
            return False
        return True

    def _finish(self, direction: str, end: int) -> None:
        cur, self.current[direction] = self.current[direction], None
        if cur is None:
            return
        event, stream = cur["event"], self.streams[direction]
        raw, base = self.raw[direction], self.raw_base[direction]
        head = redact(bytes(raw[cur["start"] - base:cur["head_end"] - base]))
        del raw[:end - base]  # keep memory flat: finished messages need no bytes
        self.raw_base[direction] = end
        is_request = isinstance(event, h11.Request)
        self.tap._http.append({
            "conn": self.id,
            "direction": direction,
            "t_ns": stream.time_at(cur["start"]),
            "t_end_ns": stream.time_at(max(end - 1, cur["start"])),
            "kind": "request" if is_request else "response",
            "start_line": head.split(b"\r\n", 1)[0].decode("latin-1"),
            "method": event.method.decode() if is_request else None,
            "target": event.target.decode("latin-1") if is_request else None,
            "status": None if is_request else event.status_code,
            "headers": [(k.decode("latin-1"),
                         redact(k + b": " + v)[len(k) + 2:].decode("latin-1"))
                        for k, v in event.headers.raw_items()],
            "header_bytes": cur["head_end"] - cur["start"],
            "body_bytes": end - cur["head_end"],
            "content_bytes": cur["content"],
            "wire_bytes": end - cur["start"],
            "head": head.decode("latin-1"),
        })

    def _switch_to_websocket(self, response: h11.InformationalResponse) -> None:
        self.phase = "ws"
        self.raw = {UP: bytearray(), DOWN: bytearray()}
        for direction, conn in ((UP, self.server), (DOWN, self.client)):
            reader = _FrameReader(direction, self._consumed(direction),
                                  _deflate_for(response.headers, direction))
            self.frame_readers[direction] = reader
            reader.feed(conn.trailing_data[0])
            self._pump_ws(direction)

    # -- WebSocket -----------------------------------------------------------------------------
    def _pump_ws(self, direction: str) -> None:
        reader, stream = self.frame_readers[direction], self.streams[direction]
        for start, end, header, frame in reader.frames():
            first, last = reader.base + start, reader.base + end
            if isinstance(frame, Exception):
                self.tap._note_error(self.id, f"{direction} frame parse stopped: {frame}")
                continue
            b0, b1 = header[0], header[1]
            masked = bool(b1 & 0x80)
            payload = end - start - len(header)
            row = {
                "conn": self.id,
                "direction": direction,
                "t_ns": stream.time_at(first),
                "t_end_ns": stream.time_at(last - 1),
                "fin": bool(b0 & 0x80),
                "rsv1": bool(b0 & 0x40),
                "opcode": frame.opcode.name,
                "opcode_value": int(frame.opcode),
                "masked": masked,
                "length_field": b1 & 0x7F,
                "masking_key": header[-4:].hex() if masked else None,
                "header_bytes": len(header),
                "payload_bytes": payload,
                "data_bytes": len(frame.data),
                "wire_bytes": end - start,
                "header_bits": " ".join(f"{b:08b}" for b in header[:2]),
                "close_code": None,
                "close_reason": None,
                "preview": None,
            }
            if frame.opcode is CLOSE:
                try:
                    close = Close.parse(frame.data)
                    row["close_code"], row["close_reason"] = int(close.code), close.reason
                except (ProtocolError, UnicodeDecodeError):
                    pass
            elif frame.opcode is TEXT:
                row["preview"] = bytes(frame.data[:60]).decode("utf-8", errors="replace")
            self.tap._frames.append(row)


# -- the tap ---------------------------------------------------------------------------------------
def credentials(userinfo: str) -> dict[str, str]:
    """`{"Authorization": "Bearer <token>"}` for the user info `through()` returns for a class
    server ("student:TOKEN@", the token percent-encoded), {} for none: what a hand-made request
    to a class server must carry."""
    _, _, password = userinfo.removesuffix("@").partition(":")
    return {"Authorization": f"Bearer {unquote(password)}"} if password else {}


def _target_address(target) -> tuple[str, int]:
    if isinstance(target, tuple):
        return target[0], int(target[1])
    if isinstance(target, str):
        parts = urlsplit(target if "://" in target else f"http://{target}")
        host, port = parts.hostname, parts.port
    else:
        host, port = getattr(target, "host", None), getattr(target, "port", None)
    if host is None or port is None:
        raise TypeError(f"expected a lab server, a URL or (host, port), got {target!r}")
    return host, port


class WireTap(TcpProxy):
    """A TCP proxy in front of `target` (a lab, a URL or (host, port)) that records every chunk.

    Tables (pandas): `chunks()`, `http_messages()`, `frames()`, `messages()` (one row per HTTP message
    or WebSocket frame, for any transport). Counters: `bytes_up`, `bytes_down`, `connections_opened`.
    `reset()` forgets what was recorded so far (open connections keep being parsed correctly).
    """

    def __init__(self, target, *, port: int = 0, limits: Limits | None = None):
        host, target_port = _target_address(target)
        super().__init__(host, target_port, port=port, limits=limits or Limits())
        self._userinfo, self._prefix = through(target)  # a class server: same identity via the tap
        self._lock = threading.Lock()  # guards what the proxy thread appends
        self._parse_lock = threading.RLock()
        self._pending: list[tuple[int, str | None, int, bytes]] = []
        self._chunks: list[tuple[int, str, int, int]] = []
        self._parsers: dict[int, _ConnParser] = {}
        self._http: list[dict] = []
        self._frames: list[dict] = []
        self.errors: list[str] = []
        self._counts = {UP: 0, DOWN: 0, "connections": 0}
        self._last_chunk_ns = 0
        self.t0_ns = time.perf_counter_ns()

    # -- hooks (proxy thread) -------------------------------------------------------------------
    async def on_connect(self, conn: Connection) -> None:
        with self._lock:
            self._counts["connections"] += 1

    def on_chunk(self, conn: Connection, direction: str, data: bytes, t_ns: int) -> None:
        with self._lock:
            self._pending.append((conn.id, direction, t_ns, data))
            self._chunks.append((conn.id, direction, t_ns, len(data)))
            self._counts[direction] += len(data)
            self._last_chunk_ns = t_ns

    async def on_disconnect(self, conn: Connection) -> None:
        with self._lock:
            self._pending.append((conn.id, None, time.perf_counter_ns(), b""))

    def url(self, scheme: str = "http", path: str = "") -> str:
        """The URL a client uses to go through the tap, e.g. tap.url("ws", "/ws/echo"); in front
        of a class server it carries the lab's token and path prefix, as `lab.url` does."""
        return f"{scheme}://{self._userinfo}{self.host}:{self.port}{self._prefix}{path}"

    # TcpProxy's start() and __enter__ return the proxy itself, typed as a TcpProxy: a tap's are taps
    def start(self) -> WireTap:
        """Run the tap on its own thread and loop; returns once it listens."""
        super().start()
        return self

    def __enter__(self) -> WireTap:
        return self.start()

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self.loop is not None

    # -- counters --------------------------------------------------------------------------------
    @property
    def bytes_up(self) -> int:
        """Bytes client -> server since the last reset()."""
        return self._counts[UP]

    @property
    def bytes_down(self) -> int:
        """Bytes server -> client since the last reset()."""
        return self._counts[DOWN]

    @property
    def connections_opened(self) -> int:
        """TCP connections opened through the tap since the last reset()."""
        return self._counts["connections"]

    def totals(self) -> dict:
        """bytes_up, bytes_down, connections, http_messages and ws_frames since the last reset()."""
        self._parse()
        return {"bytes_up": self.bytes_up, "bytes_down": self.bytes_down,
                "connections": self.connections_opened, "http_messages": len(self._http),
                "ws_frames": len(self._frames)}

    def settle(self, quiet_s: float = 0.05, timeout: float = 2.0) -> WireTap:
        """Wait until no byte has passed for `quiet_s` seconds (at most `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if time.perf_counter_ns() - self._last_chunk_ns >= quiet_s * 1e9:
                break
            time.sleep(quiet_s / 2)
        return self

    def reset(self) -> WireTap:
        """Forget the recording and zero the counters; the clock (t_ms) restarts at 0."""
        with self._parse_lock:
            self._parse()
            with self._lock:
                self._chunks.clear()
                self._counts = {UP: 0, DOWN: 0, "connections": 0}
                self.t0_ns = time.perf_counter_ns()
            self._http.clear()
            self._frames.clear()
            self.errors.clear()
            for conn_id in [c for c, p in self._parsers.items() if p.closed]:
                del self._parsers[conn_id]
        return self

    # -- parsing ---------------------------------------------------------------------------------
    def _note_error(self, conn_id: int, message: str) -> None:
        self.errors.append(f"connection {conn_id}: {message}")

    def _parse(self) -> None:
        with self._parse_lock:
            with self._lock:
                pending, self._pending = self._pending, []
            for conn_id, direction, t_ns, data in pending:
                parser = self._parsers.get(conn_id)
                if parser is None:
                    parser = self._parsers[conn_id] = _ConnParser(self, conn_id)
                if direction is None:
                    parser.eof()
                    continue
                parser.feed(direction, t_ns, data)

    # -- tables ----------------------------------------------------------------------------------
    def _frame(self, rows: list[dict], columns: list[str], ints: tuple[str, ...] = ()):
        import pandas as pd

        df = pd.DataFrame(rows, columns=columns)
        for column in ints:  # whole numbers that may be missing: keep them whole
            df[column] = df[column].astype("Int64")
        if not df.empty:
            df = df.sort_values("t_ns", kind="stable").reset_index(drop=True)
            df.insert(2, "t_ms", (df["t_ns"] - self.t0_ns) / 1e6)
        else:
            df.insert(2, "t_ms", pd.Series(dtype=float))
        return df

    def chunks(self):
        """Every chunk the proxy read: conn, direction, t_ms, bytes."""
        import pandas as pd

        with self._lock:
            rows = list(self._chunks)
        df = pd.DataFrame(rows, columns=["conn", "direction", "t_ns", "bytes"])
        df.insert(2, "t_ms", (df["t_ns"] - self.t0_ns) / 1e6)
        return df

    HTTP_COLUMNS = ["conn", "direction", "t_ns", "t_end_ns", "kind", "start_line", "method",
                    "target", "status", "headers", "header_bytes", "body_bytes", "content_bytes",
                    "wire_bytes", "head"]
    FRAME_COLUMNS = ["conn", "direction", "t_ns", "t_end_ns", "fin", "rsv1", "opcode",
                     "opcode_value", "masked", "length_field", "masking_key", "header_bytes",
                     "payload_bytes", "data_bytes", "wire_bytes", "header_bits", "close_code",
                     "close_reason", "preview"]

    def http_messages(self):
        """HTTP/1.1 messages: start line, headers, header_bytes, body_bytes (on the wire), head text."""
        self._parse()
        return self._frame(list(self._http), self.HTTP_COLUMNS, ("status",))

    def frames(self):
        """WebSocket frames: FIN, RSV1, opcode, MASK, 7-bit length field, masking key, sizes."""
        self._parse()
        return self._frame(list(self._frames), self.FRAME_COLUMNS, ("close_code",))

    def messages(self):
        """One row per HTTP message or WebSocket frame: protocol, kind, wire/overhead/payload bytes."""
        self._parse()
        rows = [{"conn": m["conn"], "direction": m["direction"], "t_ns": m["t_ns"],
                 "protocol": "http", "kind": m["start_line"], "wire_bytes": m["wire_bytes"],
                 "overhead_bytes": m["header_bytes"], "payload_bytes": m["content_bytes"]}
                for m in self._http]
        rows += [{"conn": f["conn"], "direction": f["direction"], "t_ns": f["t_ns"],
                  "protocol": "websocket", "kind": f["opcode"], "wire_bytes": f["wire_bytes"],
                  "overhead_bytes": f["header_bytes"], "payload_bytes": f["data_bytes"]}
                 for f in self._frames]
        return self._frame(rows, ["conn", "direction", "t_ns", "protocol", "kind", "wire_bytes",
                                  "overhead_bytes", "payload_bytes"])

    def handshake(self, conn: int | None = None) -> tuple[str, str]:
        """The WebSocket opening handshake as text: (Upgrade request head, 101 response head)."""
        self._parse()
        upgraded = [m for m in self._http if m["status"] == 101 and conn in (None, m["conn"])]
        if not upgraded:
            raise LookupError("no WebSocket handshake recorded (connect through tap.url('ws'))")
        cid = upgraded[0]["conn"]
        request = [m for m in self._http if m["conn"] == cid and m["kind"] == "request"][-1]
        return request["head"], upgraded[0]["head"]

    def __repr__(self) -> str:
        return (f"<WireTap {self.url()} -> {self.target[0]}:{self.target[1]}, "
                f"{self.bytes_up} B up, {self.bytes_down} B down>")


_taps: dict[tuple[str, int], WireTap] = {}
_taps_lock = threading.Lock()


def tap(target, *, port: int = 0) -> WireTap:
    """Start a wire tap in front of `target` (usually the lab): `tap = lk.tap(lab)`; `tap.stop()` ends it.

    Safe to run twice: while the tap this function started for the same target still runs, you get
    it back, reset (no second proxy, no leaked socket). `WireTap(target).start()` always makes a new one.
    """
    key = _target_address(target)
    with _taps_lock:
        running = _taps.get(key)
        if running is not None and running.running and port in (0, running.port):
            return running.reset()
        if running is not None:
            running.stop()
        _taps[key] = WireTap(target, port=port).start()
        return _taps[key]


# -- beyond what the tap sees: a browser's headers and the TCP/IP packets (a model) ---------------
BROWSER_HEADERS = {
    "Connection": "keep-alive",
    "sec-ch-ua": '"Chromium";v="131", "Not_A Brand";v="24", "Google Chrome";v="131"',
    "sec-ch-ua-mobile": "?0",
    "sec-ch-ua-platform": '"Windows"',
    "User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/131.0.0.0 Safari/537.36",
    "Accept": "*/*",
    "Origin": "http://127.0.0.1:8888",
    "Sec-Fetch-Site": "same-site",
    "Sec-Fetch-Mode": "cors",
    "Sec-Fetch-Dest": "empty",
    "Referer": "http://127.0.0.1:8888/",
    "Accept-Encoding": "gzip, deflate, br, zstd",
    "Accept-Language": "en-GB,en;q=0.9",
    "Cookie": "session=eyJ1c2VyIjoiYWRhIn0.Z0kx3g",
}
"""Request headers as a desktop browser's fetch() sends them from another page of the same site
(Chrome 131, with a short session cookie); the client adds Host, Content-Type and Content-Length.
Real requests often carry more cookies."""

PUBLISHED_HEADER_BYTES = {
    "Kaazing (websocket.org, 2010): request + response headers of one poll": 871,
    "HAR capture (2017): headers per poll": 430,
}
"""Header bytes per request that others measured and published, to set beside ours."""

TCP_IP_HEADER = 52
"""Bytes of IPv4 (20) + TCP (20) + the timestamp option (12) on every packet."""
MSS = 1448
"""TCP payload per packet on a 1500-byte Ethernet path with timestamps. The SYN's MSS option says
1,460 (1500 - 20 IPv4 - 20 TCP), but Linux sends the 12-byte timestamps option on every segment
(net.ipv4.tcp_timestamps = 1, the default), so 1,448 bytes of payload fit. The emulator's slow-start
and loss models count segments of this size too (`labkit.net.netem.MSS`)."""
SYN_BYTES = 60
"""A SYN or SYN-ACK: IPv4 + TCP + options (MSS, window scale, SACK, timestamps)."""
CONNECTION_PACKETS = 3 + 4
"""A new connection's packets that carry no data: SYN, SYN-ACK, ACK, then FIN, ACK, FIN, ACK."""


def segments(size: int) -> int:
    """Data packets for a message of `size` bytes: ceil(size / MSS), none for an empty one."""
    return math.ceil(size / MSS) if size > 0 else 0


def packet_model(up: list[int], down: list[int], *, new_connection: bool = False) -> dict:
    """Estimate the bytes on the wire *below* HTTP/WebSocket for an exchange of messages of `up`
    and `down` sizes (a request and its answer, or a message and its echo).

    The one TCP/IP model of the kit (lessons 02, 03 and 09 use it): each message goes in
    ceil(size / MSS) packets of TCP_IP_HEADER bytes; a message is acknowledged by the answer that
    goes the other way (the ACK rides on it), so only the exchange's last message gets a pure ACK,
    plus one pure ACK per two further segments of a long message (delayed ACKs, RFC 1122 / RFC
    5681 4.2). A small keep-alive echo is thus 3 packets: request, answer, ACK, as `count_packets`
    measures on this machine. A new connection adds the three-way handshake (SYN, SYN-ACK, ACK) and
    a four-packet teardown (FIN, ACK, FIN, ACK). No loss, IPv4; Ethernet framing (38 B per frame on
    the cable) is left out. Returns the application bytes, the packets, TCP/IP bytes by cause,
    and the total.
    """
    sizes = [n for n in (*up, *down) if n > 0]
    application = sum(sizes)
    data_packets = sum(segments(n) for n in sizes)
    acks = (1 if sizes else 0) + sum((segments(n) - 1) // 2 for n in sizes)
    handshake = 2 * SYN_BYTES + TCP_IP_HEADER if new_connection else 0
    teardown = 4 * TCP_IP_HEADER if new_connection else 0
    headers = (data_packets + acks) * TCP_IP_HEADER
    return {"application_bytes": application,
            "packets": data_packets + acks + (CONNECTION_PACKETS if new_connection else 0),
            "tcp_ip_header_bytes": data_packets * TCP_IP_HEADER, "ack_bytes": acks * TCP_IP_HEADER,
            "handshake_bytes": handshake, "teardown_bytes": teardown,
            "total_bytes": application + headers + handshake + teardown}


TCP_SETTINGS = {
    "tcp_timestamps": "timestamps option on every segment (12 B each)",
    "tcp_slow_start_after_idle": "slow start again after an idle period (RFC 5681 4.1)",
    "tcp_keepalive_time": "seconds idle before TCP's first keepalive probe (SO_KEEPALIVE only)",
    "tcp_keepalive_intvl": "seconds between keepalive probes",
    "tcp_keepalive_probes": "unanswered probes before the connection is dropped",
    "tcp_retries2": "retransmissions of unacknowledged data before giving up",
}
"""Linux's TCP settings (net.ipv4.*) the lessons talk about, with what each means."""


def tcp_settings() -> dict[str, int | None]:
    """This machine's values of TCP_SETTINGS, read from /proc/sys/net/ipv4 (None where there is
    no such file, e.g. not Linux)."""
    from pathlib import Path

    values: dict[str, int | None] = {}
    for name in TCP_SETTINGS:
        try:
            values[name] = int(Path("/proc/sys/net/ipv4", name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            values[name] = None
    return values


def retransmission_give_up_s(retries: int, rto_min_s: float = 0.2, rto_max_s: float = 120.0) -> float:
    """Seconds until Linux gives up on unacknowledged data after `retries` (tcp_retries2)
    retransmissions, each timeout double the one before from rto_min_s, capped at rto_max_s: the
    bound `tcp_retransmit_timer` uses (924.6 s, about 15 min, for the default 15)."""
    total, rto = 0.0, rto_min_s
    for _ in range(retries + 1):
        total += rto
        rto = min(2 * rto, rto_max_s)
    return total


def codes_as_text(frame, columns=("close_code",)):
    """A copy of `frame` with close-code columns as plain digits ("1000", "" for none), so a table
    that groups thousands (lk.view) does not print a code as "1,000"."""
    import pandas as pd

    out = frame.copy()
    for column in columns:
        if column in out:
            out[column] = ["" if pd.isna(v) else str(int(v)) for v in out[column]]
    return out


def _tcp_segments(sock) -> tuple[int, int] | None:
    """(segments sent, segments received) of a connected TCP socket, from Linux's TCP_INFO
    (tcpi_segs_out and tcpi_segs_in, at bytes 136 and 140 of struct tcp_info since Linux 4.2);
    None where the platform does not report them."""
    import socket
    import struct

    if not hasattr(socket, "TCP_INFO"):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except OSError:
        return None
    if len(info) < 144:
        return None
    out, received = struct.unpack_from("II", info, 136)
    return out, received


def count_packets(target, *, payload_bytes: int = 64, exchanges: int = 6, pause_s: float = 0.25,
                  timeout: float = 5.0):
    """Count the real TCP packets of small echoes, one kept-alive connection per transport, beside
    what `packet_model` predicts for the same bytes.

    Talks to `target` over plain sockets (HTTP/1.1 `POST /api/echo` on one connection; one
    WebSocket on `/ws/echo`), and reads the kernel's own packet counters of the client's socket
    (TCP_INFO) before and after each exchange, `pause_s` after the answer so a delayed ACK is
    counted with its exchange. Loopback carries every packet of both directions through the
    client's socket, so sent + received is the exchange's packets. The first exchange of each
    connection is dropped: Linux acknowledges at once while a connection is young (quick-ack
    mode). Returns a frame (transport, exchange, packets_measured, packets_model, bytes_up,
    bytes_down), or None where the kernel does not report segment counts (not Linux).
    """
    import base64
    import os
    import socket

    import pandas as pd
    from websockets.frames import Frame, Opcode

    host, port = _target_address(target)
    userinfo, prefix = through(target)  # a class server: its token and path prefix go along
    extra = "".join(f"{name}: {value}\r\n" for name, value in credentials(userinfo).items())
    body = b"x" * payload_bytes
    request = (f"POST {prefix}/api/echo HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}Content-Type: "
               f"application/octet-stream\r\nContent-Length: {payload_bytes}\r\n\r\n").encode() + body
    rows: list[dict] = []

    def measure(sock, transport: str, send: bytes, answer_ends: bytes) -> bool:
        for i in range(exchanges + 1):
            before = _tcp_segments(sock)
            if before is None:
                return False
            sock.sendall(send)
            got = b""
            while not got.endswith(answer_ends):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the lab closed the connection during the count")
                got += chunk
                if got.startswith(b"HTTP/") and not got.startswith(b"HTTP/1.1 200"):
                    status = got.split(b"\r\n")[0].decode(errors="replace")
                    raise ConnectionError(f"the lab refused the echo: {status}")
            time.sleep(pause_s)
            after = _tcp_segments(sock)
            if after is None:
                return False
            if i == 0:
                continue  # quick-ack mode of a young connection
            up, down = [len(send)], [len(got)]
            rows.append({"transport": transport, "exchange": i,
                         "packets_measured": (after[0] - before[0]) + (after[1] - before[1]),
                         "packets_model": packet_model(up, down)["packets"],
                         "bytes_up": len(send), "bytes_down": len(got)})
        return True

    with socket.create_connection((host, port), timeout=timeout) as sock:
        if not measure(sock, "REST, keep-alive", request, body):
            return None
    with socket.create_connection((host, port), timeout=timeout) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(f"GET {prefix}/ws/echo HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n{extra}"
                     "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the lab closed the connection during the handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            status = head.split(b"\r\n")[0].decode(errors="replace")
            raise ConnectionError(f"the lab refused the WebSocket: {status}")
        frame = Frame(Opcode.BINARY, body).serialize(mask=True)
        if not measure(sock, "WebSocket", frame, body):
            return None
        sock.sendall(Frame(Opcode.CLOSE, (1000).to_bytes(2, "big")).serialize(mask=True))
    return pd.DataFrame(rows, columns=["transport", "exchange", "packets_measured", "packets_model",
                                       "bytes_up", "bytes_down"])


def directions(messages) -> tuple[list[int], list[int]]:
    """Wire bytes of each message going up and going down, from `http_messages()` or `frames()`."""
    up = messages.loc[messages["direction"] == UP, "wire_bytes"].astype(int).tolist()
    down = messages.loc[messages["direction"] == DOWN, "wire_bytes"].astype(int).tolist()
    return up, down


def packet_table(cases: dict) -> object:
    """Long table (case, part, bytes) for `cases` = {name: (messages, new_connection)}, where
    messages come from `http_messages()` or `frames()`: the measured HTTP/WebSocket bytes plus the
    TCP/IP bytes `packet_model` estimates (so the parts other than the first are a model)."""
    import pandas as pd

    rows = []
    for case, (messages, new_connection) in cases.items():
        model = packet_model(*directions(messages), new_connection=new_connection)
        parts = {"HTTP/WebSocket bytes (measured)": model["application_bytes"],
                 "TCP/IP headers, 52 B per packet (model)": model["tcp_ip_header_bytes"],
                 "ACK packets (model)": model["ack_bytes"],
                 "handshake + teardown (model)": model["handshake_bytes"] + model["teardown_bytes"]}
        rows += [{"case": case, "part": part, "bytes": value} for part, value in parts.items()
                 if value or part.startswith("HTTP")]
    return pd.DataFrame(rows, columns=["case", "part", "bytes"])


def deflate_memory(window_bits: int = 15, mem_level: int = 8) -> dict:
    """Bytes zlib allocates for one permessage-deflate connection, by zlib's own formulas (zconf.h):
    a compressor needs 2^(window_bits + 2) + 2^(mem_level + 9) bytes, a decompressor 2^window_bits.
    Each side of a connection holds one of each for as long as context takeover keeps them."""
    compress = (1 << (window_bits + 2)) + (1 << (mem_level + 9))
    decompress = 1 << window_bits
    return {"compressor_bytes": compress, "decompressor_bytes": decompress,
            "per_connection_bytes": compress + decompress}


# -- hand-made frames: fragmentation and per-message UTF-8 -----------------------------------------
def send_frames(target, path: str, frames: list[tuple[str, bytes, bool]], *,
                masked: bool = True, timeout: float = 5.0) -> dict:
    """Open a WebSocket to `target` + `path` and send hand-made frames, then read what comes back.

    `frames` is a list of (kind, payload bytes, fin): kind "text" or "binary" starts a message,
    "continuation" (opcode 0) continues it; fin=True ends it. The frames are masked and framed by
    websockets' sans-I/O client, so only what you choose differs from a normal client;
    masked=False sends them without a masking key, which RFC 6455 5.1 forbids a client (the lab
    answers with a Close of code 1002). Returns
    {"messages": [what came back, str or bytes], "close_code": int or None, "close_reason": str}.
    Use it through a tap (tap.url()) to see the frames on the wire.
    """
    import socket

    from websockets.client import ClientProtocol
    from websockets.frames import Frame, Opcode
    from websockets.protocol import State
    from websockets.uri import parse_uri

    host, port = _target_address(target)
    userinfo, prefix = through(target)  # a class server's token goes along (Basic, as websockets does)
    protocol = ClientProtocol(parse_uri(f"ws://{userinfo}{host}:{port}{prefix}{path}"))
    out: dict[str, Any] = {"messages": [], "close_code": None, "close_reason": ""}
    with socket.create_connection((host, port), timeout=timeout) as sock:
        protocol.send_request(protocol.connect())

        def flush() -> None:
            for data in protocol.data_to_send():
                if data:
                    sock.sendall(data)

        def pump() -> bool:
            data = sock.recv(65536)
            if data:
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
            flush()
            return bool(data)

        flush()
        while protocol.handshake_exc is None and protocol.state.name == "CONNECTING":
            if not pump():
                break
        if protocol.handshake_exc is not None:
            raise protocol.handshake_exc
        protocol.events_received()  # the 101 response
        opcodes = {"text": Opcode.TEXT, "binary": Opcode.BINARY, "continuation": Opcode.CONT}
        for kind, payload, fin in frames:
            frame = Frame(opcodes[kind], bytes(payload), fin=fin)
            if masked:
                protocol.send_frame(frame)
            else:  # written past the protocol object, which always masks
                flush()
                sock.sendall(frame.serialize(mask=False))
        flush()
        expected = sum(1 for _, _, fin in frames if fin)
        try:
            while len(out["messages"]) < expected and protocol.close_code is None:
                if not pump():
                    break
                for event in protocol.events_received():
                    if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY):
                        data = bytes(event.data)
                        out["messages"].append(data.decode() if event.opcode is Opcode.TEXT else data)
        except (TimeoutError, OSError):
            pass
        if protocol.state is State.OPEN:
            protocol.send_close(1000)
            flush()
        with contextlib.suppress(TimeoutError, OSError):
            while protocol.state is not State.CLOSED and pump():
                pass
        close = protocol.close_rcvd
        out["close_code"] = close.code if close is not None else protocol.close_code
        out["close_reason"] = (close.reason if close is not None else protocol.close_reason) or ""
    return out
