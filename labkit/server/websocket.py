"""Shared WebSocket plumbing: the Origin rule, size limit, client masking, and tracking for a clean
shutdown."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, hdrs, web

from .jupyter_proxy import JUPYTER_ORIGINS, is_jupyter_page
from .keys import CONFIG, WEBSOCKETS
from .problem import OPEN_WEBSOCKET, ProblemError

LOOPBACK_NAMES = {"localhost"}
UNMASKED_REASON = b"client frames must be masked (RFC 6455 5.1)"
"""The reason of the 1002 Close a client gets for an unmasked frame."""
CLOSE_TIMEOUT = 0.5
"""Seconds the server waits for the peer's Close frame before dropping the connection."""


def origin_allowed(origin: str | None, allowed: tuple[str, ...] = (), *, host: str | None = None,
                   jupyter_origins=()) -> bool:
    """True for no Origin (non-browser clients), a loopback Origin, one listed in `allowed`, or a
    page of the student's own Jupyter: an Origin in `jupyter_origins` whose host is the request's
    `host` (the request came through that Jupyter's proxy; see jupyter_proxy.py).

    Browsers always send Origin on a WebSocket handshake; a page from another site must not be able
    to open a socket to the lab with the user's cookies (cross-site WebSocket hijacking).
    """
    if origin is None:
        return True
    if origin.rstrip("/") in {o.rstrip("/") for o in allowed} or "*" in allowed:
        return True
    if jupyter_origins and is_jupyter_page(jupyter_origins, origin, host):
        return True
    host = urlsplit(origin).hostname
    if host is None:
        return False
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


WEBSOCKET_VERSION = "13"
"""The only protocol version of RFC 6455 (earlier drafts are not spoken here)."""


def check_handshake(request: web.Request) -> None:
    """Refuse a request that is not an RFC 6455 opening handshake, saying what is missing.

    Not an upgrade at all, or another protocol version: 426 Upgrade Required with the `Upgrade`
    (RFC 9110 15.5.22) and `Sec-WebSocket-Version` (RFC 6455 4.2.2) the client should use.
    A malformed `Sec-WebSocket-Key`: 400.
    """
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": WEBSOCKET_VERSION}
    if request.headers.get("Upgrade", "").strip().lower() != "websocket":
        raise ProblemError(
            426, f"{request.path} is a WebSocket route: open it with a WebSocket client "
            f"(ws://...), which sends Upgrade: websocket.", headers=upgrade,
        )
    version = request.headers.get("Sec-WebSocket-Version", "").strip()
    if version != WEBSOCKET_VERSION:
        raise ProblemError(
            426, f"WebSocket version {version[:20]!r} is not supported; use "
            f"Sec-WebSocket-Version: {WEBSOCKET_VERSION} (RFC 6455).", headers=upgrade,
        )
    key = request.headers.get("Sec-WebSocket-Key", "").strip()
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        raise ProblemError(
            400, "Sec-WebSocket-Key must be 16 random bytes in base64 (RFC 6455 4.1); "
            f"got {key[:40]!r}.",
        )


class MaskCheck(asyncio.Protocol):
    """RFC 6455 5.1: "a server MUST close the connection upon receiving a frame that is not masked",
    and the socket's heartbeat.

    aiohttp's frame reader accepts unmasked client frames, so `accept` puts this protocol between
    the transport and aiohttp's (with asyncio's public `set_protocol`). It reads only frame
    headers: the first two bytes of each frame, the extended length, then it skips the payload.
    Bytes up to an unmasked frame go on to aiohttp as they came; at the unmasked frame it stops
    passing anything on and closes with 1002. Everything else (end of file, a lost connection,
    write flow control) is passed to aiohttp's protocol unchanged.

    Heartbeat: since every byte of the socket passes here, a chunk costs one attribute store
    (`seen`) and nothing else. One timer per socket (`start_heartbeat`) looks every `interval`
    seconds: bytes seen since the last look, the peer is alive (clear, look again later);
    nothing seen, a ping goes out and the peer has `interval / 2` to send anything at all (its
    pong also passes here); still nothing, the connection is dropped as aiohttp's missing-pong
    rule drops it: the transport is closed, without a Close frame (the client sees 1006), and the
    handler's receive loop ends. So an active peer is never pinged while it talks; an idle one
    gets its first ping after one to two intervals of silence, then one every interval. The timer
    ends with the connection, or at `stop_heartbeat` (`sockets.linger_close` calls it once a slow
    consumer's Close frame is written: no ping follows a Close).
    """

    __slots__ = ("inner", "on_unmasked", "ws", "transport", "header", "skip", "unmasked", "seen",
                 "interval", "timer", "pinged")

    def __init__(self, inner: asyncio.BaseProtocol, on_unmasked: Callable[[], None] | None = None,
                 ws: web.WebSocketResponse | None = None,
                 transport: asyncio.Transport | None = None) -> None:
        """`on_unmasked` is called at an unmasked frame; without one, `ws` is closed with 1002
        (`accept` passes `ws` and `transport`, which the heartbeat also needs)."""
        self.inner, self.on_unmasked, self.ws, self.transport = inner, on_unmasked, ws, transport
        self.header: bytearray | None = None  # the current frame's header bytes read so far
        self.skip = 0                          # payload bytes of the current frame still to pass
        self.unmasked = False
        self.seen = False                      # bytes arrived since the heartbeat last looked
        self.interval = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.pinged = False                    # a ping went out at the last look

    def _first_unmasked(self, data: bytes) -> int:
        """Offset in `data` where an unmasked frame starts (0 if its header began in an earlier
        chunk), or -1 when every frame header in `data` had its MASK bit set."""
        pos, end, start = 0, len(data), 0
        while pos < end:
            if not self.skip and not self.header and end - pos >= 2:  # the usual case: a whole
                second = data[pos + 1]                                # header in this chunk
                if not second & 0x80:
                    return pos
                length = second & 0x7F
                extended = 2 if length == 126 else 8 if length == 127 else 0
                if end - pos >= 6 + extended:
                    if extended:
                        length = int.from_bytes(data[pos + 2:pos + 2 + extended], "big")
                    pos += 6 + extended
                    step = min(length, end - pos)
                    pos, self.skip = pos + step, length - step
                    continue
            if self.skip:
                step = min(self.skip, end - pos)
                self.skip, pos = self.skip - step, pos + step
                continue
            header = self.header
            if header is None:  # a header split across chunks (rare): kept until it is whole
                header = self.header = bytearray()
            if not header:
                start = pos
            if len(header) < 2:
                header.append(data[pos])
                pos += 1
                if len(header) == 2 and not header[1] & 0x80:
                    return start
                continue
            length = header[1] & 0x7F
            extended = 2 if length == 126 else 8 if length == 127 else 0
            need = 2 + extended + 4
            step = min(need - len(header), end - pos)
            header += data[pos:pos + step]
            pos += step
            if len(header) == need:
                if extended:
                    length = int.from_bytes(header[2:2 + extended], "big")
                self.skip = length
                self.header = None
        return -1

    def data_received(self, data: bytes) -> None:
        self.seen = True
        if self.unmasked:
            return  # closing: nothing more from this client is read
        bad = self._first_unmasked(data)
        if bad < 0:
            self.inner.data_received(data)  # type: ignore[attr-defined]
            return
        self.unmasked = True
        if bad:
            self.inner.data_received(data[:bad])  # type: ignore[attr-defined]
        (self.on_unmasked or self._close_1002)()

    def _close_1002(self) -> None:
        """Close with 1002 (protocol error); the connection ends after CLOSE_TIMEOUT at most."""
        assert self.ws is not None and self.transport is not None
        if not self.ws.prepared:
            self.transport.close()
            return
        _background(self.ws.close(code=WSCloseCode.PROTOCOL_ERROR, message=UNMASKED_REASON))

    # -- heartbeat ---------------------------------------------------------------------------
    def start_heartbeat(self, interval: float) -> None:
        """Look at the socket every `interval` seconds from now on (see the class docstring)."""
        self.interval = interval
        self.timer = asyncio.get_running_loop().call_later(interval, self._look)

    def stop_heartbeat(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _look(self) -> None:
        self.timer = None
        ws = self.ws
        assert ws is not None and self.transport is not None
        if ws.closed or ws.close_code is not None or self.transport.is_closing():
            return  # closing: aiohttp's close timeout (CLOSE_TIMEOUT) takes over
        loop = asyncio.get_running_loop()
        if self.seen:  # alive; after a ping answered, the next look comes one interval after it
            delay = self.interval / 2 if self.pinged else self.interval
            self.seen = self.pinged = False
            self.timer = loop.call_later(delay, self._look)
        elif not self.pinged:
            self.pinged = True
            _background(ws.ping())
            self.timer = loop.call_later(self.interval / 2, self._look)
        else:  # no pong, nor anything else, within interval / 2: the peer is gone
            self.transport.close()
            if self.transport.get_write_buffer_size():
                self.transport.abort()  # a peer that reads nothing never drains what is queued

    # -- the rest goes to aiohttp's protocol unchanged ---------------------------------------
    def eof_received(self) -> bool | None:
        return self.inner.eof_received()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_heartbeat()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


_background_tasks: set[asyncio.Future] = set()


def _background(coro) -> None:
    """Run a close or a ping without waiting for it; a peer gone meanwhile is no error here."""
    task = asyncio.ensure_future(coro)
    _background_tasks.add(task)
    task.add_done_callback(_background_done)


def _background_done(task: asyncio.Future) -> None:
    _background_tasks.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: ConnectionResetError and the like end with the connection


DEFLATE_WINDOW_BITS = 12
"""LZ77 window of the server's compressor, 2**12 = 4 KiB, announced as `server_max_window_bits`
(RFC 7692 7.1.2.1 lets a server add it even when the client's offer does not name it)."""
DEFLATE_MEM_LEVEL = 3
"""zlib memLevel of the server's compressor: its hash table holds 2**(3+7) entries (2 KiB) and
its pending buffer 2 KiB, instead of 64 KiB each at zlib's default 8. The `websockets` library's
server defaults to window bits 12 and memLevel 5 (its documentation shows 11 and 4 for less
memory). With a 4 KiB window, memLevel 5, 4 and 3 compress the lab's JSON messages about alike
(feed events to 0.135, 0.135, 0.140 of their size; chat messages to 0.155 with each), and each
step down saves about 4-6 KiB of RSS per socket that sent a compressed message: 3 keeps such
an idle socket under 48 KiB."""


class _SmallDeflate:
    """The compressor of one socket (what aiohttp's writer calls: `compress_sync`, `compress`,
    `flush`), with DEFLATE_WINDOW_BITS and DEFLATE_MEM_LEVEL; zlib's state is made at the first
    message, so a socket that never sends a compressed message holds none."""

    __slots__ = ("bits", "zlib")

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.zlib: Any = None

    def _z(self) -> Any:
        if self.zlib is None:
            self.zlib = zlib.compressobj(zlib.Z_BEST_SPEED, zlib.DEFLATED, -self.bits,
                                         DEFLATE_MEM_LEVEL)
        return self.zlib

    def compress_sync(self, data: bytes) -> bytes:
        return self._z().compress(data)

    async def compress(self, data: bytes) -> bytes:
        if len(data) > _SYNC_LIMIT:  # as aiohttp's own: large messages in the executor
            return await asyncio.get_running_loop().run_in_executor(None, self._z().compress, data)
        return self._z().compress(data)

    def flush(self, mode: int = zlib.Z_FINISH) -> bytes:
        return self._z().flush(mode)


_SYNC_LIMIT = 16 * 1024
"""Messages above this are compressed in the executor (aiohttp's WEBSOCKET_MAX_SYNC_CHUNK_SIZE)."""


class LabWebSocket(web.WebSocketResponse):
    """aiohttp's WebSocketResponse with a smaller permessage-deflate compressor.

    aiohttp 3.14 compresses with the window the client's offer names (15 bits when it names none,
    the usual case) and zlib's default memLevel 8: about 100 KiB of RSS per socket once it sent a
    compressed message. It has no option for either, so this class overrides two of its methods,
    per socket, nothing global: `_handshake` answers with `server_max_window_bits=12` (or the
    client's own smaller value), and `_pre_start` gives the writer `_SmallDeflate` instead of its
    default compressor. The receiving side stays aiohttp's: its decompressor always has a 15-bit
    window (a C attribute of its reader, out of reach), so asking the client for a smaller
    `client_max_window_bits` would save the server nothing. Both methods are aiohttp's private
    ones: `labkit.streaming.sockets.check_aiohttp` holds aiohttp to the tested versions."""

    def _handshake(self, request):
        headers, protocol, compress, notakeover = super()._handshake(request)
        if compress > DEFLATE_WINDOW_BITS:
            compress = DEFLATE_WINDOW_BITS
            answer = f"permessage-deflate; server_max_window_bits={compress}"
            if notakeover:
                answer += "; server_no_context_takeover"
            headers[hdrs.SEC_WEBSOCKET_EXTENSIONS] = answer
        return headers, protocol, compress, notakeover

    def _pre_start(self, request):
        protocol, writer = super()._pre_start(request)
        if self._compress:
            writer._compressobj = _SmallDeflate(int(self._compress))
        return protocol, writer


def _drop_http_parser(request: web.Request) -> None:
    """Let go of the connection's HTTP parser once it carries WebSocket frames: aiohttp keeps it
    for the connection's life (about 0.6 KiB of Python heap; 1.6 KiB of RSS per idle socket
    measured with `scaling.idle_memory`), though after the upgrade every byte goes to the
    frame reader and aiohttp touches the parser only where it checks it is not None."""
    protocol = request.protocol
    if getattr(protocol, "_parser", None) is not None and getattr(protocol, "_payload_parser", None):
        protocol._parser = None


async def accept(request: web.Request, **options) -> web.WebSocketResponse:
    """Check Origin, then complete the handshake with the lab's limits and track the socket.

    A foreign Origin is refused with 403 problem+json before any upgrade happens; a request that is
    not a proper handshake gets 426 or 400 (see `check_handshake`).
    Messages above the configured limit close the connection with 1009 (aiohttp's reader does it);
    an unmasked client frame with 1002 (`MaskCheck`). The heartbeat (`options["heartbeat"]`, else
    `LabConfig.ws_heartbeat`) is `MaskCheck`'s, not aiohttp's: aiohttp's costs a callback and timer
    arithmetic on every chunk received.
    """
    config = request.app[CONFIG]
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, config.allowed_origins, host=request.host,
                          jupyter_origins=request.app.get(JUPYTER_ORIGINS, ())):
        raise ProblemError(
            403,
            f"Origin {origin!r} is not allowed to open a WebSocket here. Only loopback pages, pages "
            "of your own Jupyter server (through its proxy), or origins passed as "
            "lk.start(allowed_origins=[...]) may connect.",
        )
    # aiohttp refuses a message of exactly max_msg_size bytes; the lab's limit is inclusive.
    options.setdefault("max_msg_size", config.max_ws_message + 1)
    heartbeat = options.pop("heartbeat", None) or config.ws_heartbeat
    options.setdefault("timeout", CLOSE_TIMEOUT)
    check_handshake(request)
    ws = LabWebSocket(**options)  # heartbeat=None: aiohttp's own is off, MaskCheck's runs
    transport = request.transport
    check = None
    if transport is not None:  # every byte after the handshake goes through MaskCheck
        check = MaskCheck(transport.get_protocol(), None, ws, transport)
        transport.set_protocol(check)
    await ws.prepare(request)
    _drop_http_parser(request)
    if check is not None and heartbeat:
        check.start_heartbeat(heartbeat)
    request[OPEN_WEBSOCKET] = ws
    request.app[WEBSOCKETS].add(ws)
    return ws


async def close_all(app: web.Application) -> None:
    """on_shutdown hook: close every open WebSocket with 1001 Going Away, waiting at most
    CLOSE_TIMEOUT for all of them together (a stopping lab never hangs on a peer that does not
    answer); the runner then drops what is left."""
    open_sockets = app[WEBSOCKETS]  # (inside list(), mypy infers the key's type from list's)
    sockets = [ws for ws in list(open_sockets) if not ws.closed]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await asyncio.gather(
                *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"lab server stopping")
                  for ws in sockets),
                return_exceptions=True,
            )
