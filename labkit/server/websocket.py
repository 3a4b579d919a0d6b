"""Shared WebSocket plumbing: the Origin rule, size limit, client masking, and tracking for a clean
shutdown."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, web

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
    """RFC 6455 5.1: "a server MUST close the connection upon receiving a frame that is not masked".

    aiohttp's frame reader accepts unmasked client frames, so `accept` puts this protocol between
    the transport and aiohttp's (with asyncio's public `set_protocol`). It reads only frame
    headers: the first two bytes of each frame, the extended length, then it skips the payload.
    Bytes up to an unmasked frame go on to aiohttp as they came; at the unmasked frame it stops
    passing anything on and calls `on_unmasked` (which closes with 1002). Everything else (end of
    file, a lost connection, write flow control) is passed to aiohttp's protocol unchanged.
    """

    def __init__(self, inner: asyncio.BaseProtocol, on_unmasked) -> None:
        self.inner, self.on_unmasked = inner, on_unmasked
        self.header = bytearray()   # the current frame's header bytes read so far
        self.skip = 0               # payload bytes of the current frame still to pass
        self.unmasked = False

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
            if not self.header:
                start = pos
            if len(self.header) < 2:
                self.header.append(data[pos])
                pos += 1
                if len(self.header) == 2 and not self.header[1] & 0x80:
                    return start
                continue
            length = self.header[1] & 0x7F
            extended = 2 if length == 126 else 8 if length == 127 else 0
            need = 2 + extended + 4
            step = min(need - len(self.header), end - pos)
            self.header += data[pos:pos + step]
            pos += step
            if len(self.header) == need:
                if extended:
                    length = int.from_bytes(self.header[2:2 + extended], "big")
                self.skip = length
                self.header.clear()
        return -1

    def data_received(self, data: bytes) -> None:
        if self.unmasked:
            return  # closing: nothing more from this client is read
        bad = self._first_unmasked(data)
        if bad < 0:
            self.inner.data_received(data)  # type: ignore[attr-defined]
            return
        self.unmasked = True
        if bad:
            self.inner.data_received(data[:bad])  # type: ignore[attr-defined]
        self.on_unmasked()

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


_closing_tasks: set[asyncio.Task] = set()


def _check_masking(request: web.Request, ws: web.WebSocketResponse) -> None:
    """Route every byte after the handshake through `MaskCheck`; an unmasked frame gets a Close
    with 1002 (protocol error) and the connection ends (after CLOSE_TIMEOUT at most)."""
    transport = request.transport
    if transport is None:
        return

    def close_1002() -> None:
        if not ws.prepared:
            transport.close()
            return
        task = asyncio.ensure_future(ws.close(code=WSCloseCode.PROTOCOL_ERROR,
                                              message=UNMASKED_REASON))
        _closing_tasks.add(task)
        task.add_done_callback(_closing_tasks.discard)

    transport.set_protocol(MaskCheck(transport.get_protocol(), close_1002))


async def accept(request: web.Request, **options) -> web.WebSocketResponse:
    """Check Origin, then complete the handshake with the lab's limits and track the socket.

    A foreign Origin is refused with 403 problem+json before any upgrade happens; a request that is
    not a proper handshake gets 426 or 400 (see `check_handshake`).
    Messages above the configured limit close the connection with 1009 (aiohttp's reader does it);
    an unmasked client frame with 1002 (`MaskCheck`).
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
    if options.get("heartbeat") is None:  # every socket gets one: idle peers that are gone are closed
        options["heartbeat"] = config.ws_heartbeat
    options.setdefault("timeout", CLOSE_TIMEOUT)
    check_handshake(request)
    ws = web.WebSocketResponse(**options)
    _check_masking(request, ws)
    await ws.prepare(request)
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
