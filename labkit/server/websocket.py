"""Shared WebSocket plumbing: the Origin rule, size limit, and tracking for a clean shutdown."""

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


async def accept(request: web.Request, **options) -> web.WebSocketResponse:
    """Check Origin, then complete the handshake with the lab's limits and track the socket.

    A foreign Origin is refused with 403 problem+json before any upgrade happens; a request that is
    not a proper handshake gets 426 or 400 (see `check_handshake`).
    Messages above the configured limit close the connection with 1009 (aiohttp's reader does it).
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
