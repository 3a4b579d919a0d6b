"""The HTTP side of the one serving path: every aiohttp app the kit runs starts with `serve_app`.

`serve_app` opens its socket with `labkit.server.listen.listen` (connection cap with 503 +
Retry-After, a fair share per peer address, EMFILE back-off, raised open-file limit) and serves each
connection with `GuardedRequestHandler`, aiohttp's handler plus:
- a head deadline: every request head must arrive whole within `head_timeout` (else 408 and closed),
  also on kept-alive connections;
- a write timeout: a peer that reads nothing for `write_timeout` while an answer waits is cut off,
  so a slow reader holds a bounded amount of memory for a bounded time;
- aiohttp's own keep-alive timeout for idle connections.
`serve_app` adds two middlewares to every app it serves: `guard_middleware`, outermost (stops the
head clock; runs the lab's Host check), and `body_deadline`, innermost and frameless (a request body
must arrive within `body_timeout`, else 408 and closed).
Upgraded WebSockets get the heartbeat of `labkit.server.websocket.accept`: a peer that stops
answering pings is closed.

Only public aiohttp API is used here (`runner.server`, the handler's protocol callbacks,
`force_close`, `request.protocol`); the head clock learns that a head arrived from the guard's
middleware rather than from aiohttp's private request counter.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import StreamReader, web
from aiohttp.web_protocol import RequestHandler

from . import hostcheck, problem
from .config import LabConfig
from .listen import Limits, Listener, half_close, listen
from .problem import PROBLEM_TYPE, title

log = logging.getLogger("labkit.server")

STOP_TIMEOUT_S = 0.5
"""Seconds a stopping server gives running handlers to finish."""


def _problem_bytes(status: int, detail: str, extra_headers: str = "") -> bytes:
    body = json.dumps({"type": "about:blank", "title": title(status), "status": status,
                       "detail": detail}).encode()
    head = (f"HTTP/1.1 {status} {title(status)}\r\nContent-Type: {PROBLEM_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\n{extra_headers}Connection: close\r\n\r\n")
    return head.encode() + body


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler plus a deadline for each request head and a write timeout.

    Public hooks only: the head clock starts with the connection and with the first bytes that
    arrive while no request is being handled (the next head on a kept-alive connection);
    `request_started` (called by the guard's middleware once aiohttp parsed a head) stops it. An
    upgraded WebSocket is a request being handled for its whole life, so it never gets a head
    deadline; its own idle rule is the heartbeat (`labkit.server.websocket.accept`).

    The hot path costs no timer operation: one timer per connection is armed when a head clock
    starts and none is pending; when it fires it checks the clock (408 if the head is late, armed
    again for the time left if a newer head started, nothing if no head is awaited). So a
    kept-alive connection answering requests back to back reads the loop's clock once per request
    instead of scheduling and cancelling a timer.
    """

    __slots__ = ("head_timeout", "write_timeout", "head_timer", "write_timer", "in_flight",
                 "heads", "head_since", "lingering", "lingering_body", "_on_lost", "__weakref__")

    def __init__(self, manager, *, head_timeout: float, write_timeout: float, **kwargs):
        super().__init__(manager, **kwargs)
        self.head_timeout, self.write_timeout = head_timeout, write_timeout
        self.head_timer: asyncio.TimerHandle | None = None
        self.write_timer: asyncio.TimerHandle | None = None
        self.in_flight = 0
        """Requests whose handler is running (the middleware counts them)."""
        self.heads = 0
        """Request heads that arrived whole on this connection."""
        self.head_since: float | None = None
        """Loop time at which the awaited head's clock started (None: no head is awaited)."""
        self._on_lost: Callable[[GuardedRequestHandler], None] | None = None
        self.lingering = False
        """A 408 was sent and our side half-closed: what the client still sends is discarded."""
        self.lingering_body: StreamReader | None = None
        """After a late body's 408: that body's stream, ended when the connection is (see linger)."""

    def set_on_lost(self, callback: Callable[[GuardedRequestHandler], None]) -> None:
        """Called with this handler when its connection ends (`listen()` frees its slot)."""
        self._on_lost = callback

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._start_head_clock()

    def _start_head_clock(self) -> None:
        loop = asyncio.get_running_loop()
        self.head_since = loop.time()
        if self.head_timer is None:
            self.head_timer = loop.call_at(self.head_since + self.head_timeout, self._head_check)

    def request_started(self) -> None:
        self.heads += 1
        self.in_flight += 1
        self.head_since = None  # the timer, if any, finds nothing awaited and lapses
        if self.heads == 1 and self.head_timer is not None:
            # The connection's first head: cancel the timer armed when it opened, so an upgraded
            # WebSocket (a request for its whole life) holds no timer while it sits idle.
            self.head_timer.cancel()
            self.head_timer = None

    def request_ended(self) -> None:
        self.in_flight -= 1

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # after a 408: read and dropped, so the client's bytes cause no RST
        if self.in_flight == 0 and self.head_since is None and self.transport is not None:
            self._start_head_clock()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)

    def _head_check(self) -> None:
        self.head_timer = None
        since = self.head_since
        if since is None or self.transport is None or self.in_flight:
            return
        loop = asyncio.get_running_loop()
        due = since + self.head_timeout
        if loop.time() < due - 0.001:  # a newer head's clock: wait for the time it has left
            self.head_timer = loop.call_at(due, self._head_check)
            return
        self.head_since = None
        self.transport.write(_problem_bytes(
            408, f"No complete request head arrived within {self.head_timeout:g} s.")
        )
        self.linger()

    def linger(self, body: StreamReader | None = None) -> None:
        """End the connection after a 408 (a late head, or a late `body`) has been written.

        RFC 9112 9.6: a client still sending (its slow head or body is still arriving) would get
        an RST for bytes the server never reads, and an RST can destroy the 408 before the client
        read it. So: `listen.half_close`; the client's further bytes are read and dropped until it
        closes its side, or `listen.LINGER_S` at most. TLS has no half-close: closed once flushed.

        A late body's stream is ended when the connection is: aiohttp, after the handler, reads
        what is left of an unread body (its own lingering, up to 10 s) and would otherwise keep
        the connection's task waiting for bytes that are now dropped."""
        transport = self.transport
        if transport is None or self.lingering:
            return
        self.lingering_body = body
        self.lingering = True
        if self.head_timer is not None:
            self.head_timer.cancel()
        self.head_timer = half_close(transport, self.force_close)

    def eof_received(self) -> None:
        if self.lingering:  # the client read the 408 and closed too: the connection is done
            self.force_close()
        super().eof_received()

    def pause_writing(self) -> None:
        super().pause_writing()  # the peer is not reading: our send buffer is full
        if self.write_timer is None:
            self.write_timer = asyncio.get_running_loop().call_later(
                self.write_timeout, self._peer_not_reading)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None

    def _peer_not_reading(self) -> None:
        self.write_timer = None
        if self.transport is not None and self.writing_paused:
            log.info("closing a connection that read nothing for %.0f s", self.write_timeout)
            self.transport.abort()

    def connection_lost(self, exc) -> None:
        for timer in (self.head_timer, self.write_timer):
            if timer is not None:
                timer.cancel()
        self.head_timer = self.write_timer = None
        self.head_since = None
        if self.lingering_body is not None:
            self.lingering_body.feed_eof()  # aiohttp's read of the rest ends: the connection is gone
            self.lingering_body = None
        if self._on_lost is not None:
            self._on_lost(self)
        super().connection_lost(exc)


def guard_middleware(body_timeout: float,
                     gate: Callable[[web.Request], web.StreamResponse | None] | None = None,
                     errors: Callable[[web.Request, Exception],
                                      Awaitable[web.StreamResponse]] | None = None):
    """The guard's middleware, outermost on every app `serve_app` serves: it tells the
    connection's handler that a whole head arrived (stops its head clock), answers with what
    `gate` returns if anything (the lab's Host check, `hostcheck.refusal`, folded in here), and
    turns what the handler raises into `errors`' answer (the lab's problem+json,
    `problem.answer_error`, folded in here too). One coroutine for the three: a request that none
    of them stops costs one function call at this door. `body_timeout` is `body_deadline`'s,
    which serve_app adds innermost."""

    @web.middleware
    async def guard(request: web.Request, handler):
        protocol = request.protocol
        if not isinstance(protocol, GuardedRequestHandler):
            return await handler(request)
        protocol.request_started()
        try:
            if gate is not None and (refused := gate(request)) is not None:
                return refused
            if errors is None:
                return await handler(request)
            try:
                return await handler(request)
            except Exception as exc:
                return await errors(request, exc)
        finally:
            protocol.request_ended()

    return guard


def body_deadline(limit: float):
    """Middleware, innermost (so a 413 or 408 passes through the app's problem middleware): read
    a request body within `limit` seconds, else 408 problem+json, closed. A plain function, not a
    coroutine: a request without a body gets its handler's own coroutine back, so this layer
    keeps no frame alive, neither per request nor for an open WebSocket's whole life."""

    @web.middleware
    def read_body_in_time(request: web.Request, handler):
        if not request.body_exists:
            return handler(request)
        return _with_body_deadline(request, handler, limit)

    return read_body_in_time


async def _with_body_deadline(request: web.Request, handler, limit: float):
    """Read a request body within `limit` seconds, then run `handler`; else 408, closed."""
    if request.body_exists:  # (an Upgrade header changes nothing: a WebSocket handshake has no body)
        try:
            async with asyncio.timeout(limit):
                await request.read()  # kept by aiohttp: the handler's read() gets the same bytes
        except TimeoutError:
            response = web.Response(
                status=408, content_type=PROBLEM_TYPE,
                body=json.dumps({"type": "about:blank", "title": title(408), "status": 408,
                                 "detail": f"The request body did not arrive within {limit:g} s."}),
            )
            # Sent now, then the connection ends: waiting for the rest is what timed out.
            response.force_close()  # (says "Connection: close")
            await response.prepare(request)
            await response.write_eof()
            protocol = request.protocol
            if isinstance(protocol, GuardedRequestHandler):  # (always: serve_app adds both)
                protocol.linger(request.content)  # the rest of the body is read and dropped
            else:
                protocol.force_close()
            return response
    return await handler(request)


def http_refusal(why: str, cap: int) -> bytes:
    """The 503 problem+json an over-cap HTTP connection gets (see `listen.Refusal`)."""
    if why == "peer":
        detail = (f"Your address already holds its share ({cap}) of this server's connections; "
                  "close some and retry.")
    else:
        detail = f"The server is serving its maximum of {cap} connections; close some and retry."
    return _problem_bytes(503, detail, "Retry-After: 1\r\n")


@dataclass
class Served:
    """A running aiohttp app behind the one serving path: `port`, `listener` (its counters), and
    `close()` (stop listening, close every connection, run the app's cleanup)."""

    runner: web.AppRunner
    listener: Listener

    @property
    def port(self) -> int:
        return self.listener.port

    async def close(self) -> None:
        self.listener.close()
        await self.listener.wait_closed()
        await self.runner.cleanup()


async def serve_app(app: web.Application, host: str, port: int, *, config: LabConfig | None = None,
                    ssl_context=None, per_peer_share: float | None = None,
                    handle_signals: bool = False) -> Served:
    """Serve `app` on host:port through `listen()` with the guarded handler: every aiohttp app
    the kit runs (the lab, the class server, a cluster worker, the payment provider) starts here.
    Limits and timeouts come from `config` (a LabConfig; the defaults when None)."""
    config = config or LabConfig()
    # The guard's own middleware, outermost on every app served here (the lab's, the provider's,
    # ...): the head clock learns when a head arrived; a body must arrive within body_timeout.
    # An app with the lab's Host check (make_app) has it run inside the guard's middleware: the
    # same 403 problem+json, one coroutine less per request and per open WebSocket.
    gate = errors = None
    if hostcheck.host_check in app.middlewares:
        app.middlewares.remove(hostcheck.host_check)
        gate = hostcheck.refusal
    if problem.problem_middleware in app.middlewares:  # (moved outwards: it then also covers the
        app.middlewares.remove(problem.problem_middleware)  # middlewares that were outside it)
        errors = problem.answer_error
    app.middlewares.insert(0, guard_middleware(config.body_timeout, gate, errors))
    app.middlewares.append(body_deadline(config.body_timeout))
    runner = web.AppRunner(app, handle_signals=handle_signals, access_log=None,
                           shutdown_timeout=STOP_TIMEOUT_S, keepalive_timeout=config.keepalive_timeout)
    await runner.setup()
    server = runner.server
    assert server is not None
    loop = asyncio.get_running_loop()

    def factory() -> GuardedRequestHandler:
        return GuardedRequestHandler(server, loop=loop, head_timeout=config.head_timeout,
                                     write_timeout=config.write_timeout,
                                     keepalive_timeout=config.keepalive_timeout, access_log=None)

    limits = Limits(config.max_connections,
                    config.per_peer_share if per_peer_share is None else per_peer_share)
    try:
        listener = await listen(factory, host, port, limits=limits, refusal=http_refusal,
                                ssl=ssl_context)
    except BaseException:
        await runner.cleanup()
        raise
    return Served(runner, listener)
