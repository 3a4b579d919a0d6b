"""Connection limits: the lab never starves its kernel of file descriptors, and slow peers cannot pin it.

- `raise_open_file_limit()`: lift the process's soft RLIMIT_NOFILE towards the hard one (the kernel's
  usual soft limit is 1,024; one connection costs one descriptor).
- `connection_cap(config)`: at most `max_connections`, and always a quarter of the open-file limit
  (at least 64 descriptors) left to the rest of the process, so the kernel keeps answering cells.
- `GuardedSite`: a TCPSite whose connections over the cap get `503` problem+json and are closed,
  where every request head must arrive whole within `head_timeout` (else 408), whose idle keep-alive
  connections close after `keepalive_timeout`, and which closes a peer that reads nothing for
  `write_timeout` while an answer waits (so a slow reader holds a bounded amount of memory for a
  bounded time). Its `_Listener` accepts connections itself: when the process is out of descriptors
  (EMFILE) it stops accepting for a while, 50 ms doubling up to 1 s, where asyncio's own accept loop
  (Python 3.11) retries the whole backlog at once and piles up retries. With the cap in place the lab
  itself never runs out; the back-off is for a kernel that used its descriptors up elsewhere.
- `body_deadline`: middleware that reads a request body within `body_timeout` (else 408 and closed).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
import weakref

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from .config import LabConfig
from .keys import CONFIG
from .problem import PROBLEM_TYPE, title

try:
    import resource
except ImportError:  # Windows: no RLIMIT_NOFILE to raise; the cap uses MAX_CONNECTIONS alone
    resource = None

log = logging.getLogger("labkit.server")

OPEN_FILES_TARGET = 65536
"""Soft open-file limit the lab asks for (when the hard limit allows it)."""
MIN_RESERVED_FDS = 64
"""Descriptors always left to the rest of the process (the kernel, SQLite, client sockets)."""
REFUSING_LIMIT = 256
"""Refusals still being written at once; beyond that an over-cap connection is dropped at once."""
ACCEPT_BATCH = 64
"""Connections accepted per wake-up of the listening socket (the rest wait for the next one)."""
ACCEPT_BACKOFF_S = (0.05, 1.0)
"""Pause after an out-of-descriptors accept: the first, and the longest (it doubles up to it)."""
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def open_file_limits() -> tuple[int, int]:
    """(soft, hard) RLIMIT_NOFILE; (-1, -1) where there is none (Windows)."""
    if resource is None:
        return -1, -1
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def raise_open_file_limit(target: int = OPEN_FILES_TARGET) -> int:
    """Raise the soft open-file limit to min(target, hard) if it is lower; return the soft limit."""
    soft, hard = open_file_limits()
    if resource is None or soft == resource.RLIM_INFINITY:
        return soft
    wanted = target if hard == resource.RLIM_INFINITY else min(target, hard)
    for attempt in (wanted, 24576, 10240, 4096):  # macOS refuses more than its per-process maximum
        if soft >= attempt:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (attempt, hard))
            return attempt
        except (ValueError, OSError):
            log.debug("could not raise RLIMIT_NOFILE to %s", attempt, exc_info=True)
    return soft


def connection_cap(config: LabConfig) -> int:
    """How many connections the lab serves at once: `max_connections`, lowered so that a quarter of
    the open-file limit (at least MIN_RESERVED_FDS) stays free for the rest of the process."""
    soft, _ = open_file_limits()
    if resource is None or soft < 0 or soft == resource.RLIM_INFINITY:
        return config.max_connections
    reserve = max(MIN_RESERVED_FDS, soft // 4)
    return max(1, min(config.max_connections, soft - reserve))


def _problem_bytes(status: int, detail: str, extra_headers: str = "") -> bytes:
    body = json.dumps({"type": "about:blank", "title": title(status), "status": status,
                       "detail": detail}).encode()
    head = (f"HTTP/1.1 {status} {title(status)}\r\nContent-Type: {PROBLEM_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\n{extra_headers}Connection: close\r\n\r\n")
    return head.encode() + body


class _RefusedConnection(asyncio.Protocol):
    """A connection over the cap: answer 503 problem+json, stop sending, close soon after."""

    def __init__(self, guard: _ConnectionGuard):
        self.guard = guard
        self.transport: asyncio.Transport | None = None
        self.closer: asyncio.Handle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.guard.refusing += 1
        if self.guard.refusing > REFUSING_LIMIT:
            transport.abort()
            return
        try:
            transport.write(self.guard.refusal)
            transport.write_eof()
        except OSError:  # the peer is gone already
            transport.abort()
            return
        # Closing at once could reset a request still on its way in before the peer read the 503.
        self.closer = asyncio.get_running_loop().call_later(1.0, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass  # the request is not served; its bytes are read and dropped

    def eof_received(self) -> bool:
        self.transport.close()
        return False

    def connection_lost(self, exc) -> None:
        self.guard.refusing -= 1
        if self.closer is not None:
            self.closer.cancel()


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler plus a deadline for each request head and a write timeout."""

    def __init__(self, manager, *, guard: _ConnectionGuard, head_timeout: float, write_timeout: float,
                 **kwargs):
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._head_timeout = head_timeout
        self._write_timeout = write_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_count = 0
        self._write_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._head_count = self._request_count
        self._head_timer = self._loop.call_later(self._head_timeout, self._head_too_slow)

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        idle = self._waiter is not None and not self._waiter.done() and not self._upgraded
        super().data_received(data)
        if self._request_count > before:  # a whole head arrived
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
        elif idle and self._head_timer is None and not self._force_close:
            self._arm_head_timer()  # the first bytes of the next request on a kept-alive connection

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport is not None and self._request_count == self._head_count:
            self.transport.write(_problem_bytes(
                408, f"No complete request head arrived within {self._head_timeout:g} s.")
            )
            self.force_close()  # closes the transport once the 408 is flushed

    def pause_writing(self) -> None:
        super().pause_writing()  # the peer is not reading: our send buffer is full
        if self._write_timer is None:
            self._write_timer = self._loop.call_later(self._write_timeout, self._peer_not_reading)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _peer_not_reading(self) -> None:
        self._write_timer = None
        if self.transport is not None and self.writing_paused:
            log.info("closing a connection that read nothing for %.0f s", self._write_timeout)
            self.transport.abort()

    def connection_lost(self, exc) -> None:
        for timer in (self._head_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._write_timer = None
        self._guard.live.discard(self)
        super().connection_lost(exc)


class _ConnectionGuard:
    """Protocol factory: a guarded handler while under the cap, a 503 refusal beyond it."""

    def __init__(self, server, config: LabConfig, loop: asyncio.AbstractEventLoop):
        self.server, self.loop = server, loop
        self.cap = connection_cap(config)
        self.head_timeout, self.write_timeout = config.head_timeout, config.write_timeout
        self.keepalive_timeout = config.keepalive_timeout
        self.live: weakref.WeakSet[GuardedRequestHandler] = weakref.WeakSet()
        """Connections being served. Counted here, when the protocol is made: asyncio may accept a
        whole backlog before the first of them reaches connection_made."""
        self.refusing = 0
        self.refused = 0
        self.refusal = _problem_bytes(
            503, f"The lab is serving its maximum of {self.cap} connections; close some and retry.",
            "Retry-After: 1\r\n",
        )

    def __call__(self) -> asyncio.Protocol:
        if len(self.live) >= self.cap:
            self.refused += 1
            return _RefusedConnection(self)
        handler = GuardedRequestHandler(
            self.server, loop=self.loop, guard=self, head_timeout=self.head_timeout,
            write_timeout=self.write_timeout, keepalive_timeout=self.keepalive_timeout, access_log=None,
        )
        self.live.add(handler)
        return handler


class _Listener:
    """Accept connections on a listening socket and hand each to the protocol factory (with TLS if
    asked); out of descriptors, stop accepting for a while instead of retrying at once. Quacks like
    the asyncio Server that aiohttp's sites keep (`sockets`, `close`, `wait_closed`)."""

    def __init__(self, sock: socket.socket, factory, ssl_context, loop: asyncio.AbstractEventLoop):
        self.sockets = [sock]
        self._sock, self._factory, self._ssl, self._loop = sock, factory, ssl_context, loop
        self._backoff = 0.0
        self._retry: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        self.pauses = 0
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in OUT_OF_RESOURCES:
                    return self._pause(exc)
                log.warning("accept() failed: %s", exc)
                return
            self._backoff = 0.0
            conn.setblocking(False)
            task = self._loop.create_task(self._serve(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn, ssl=self._ssl)
        except (OSError, ValueError, TimeoutError) as exc:  # e.g. a failed TLS handshake
            log.debug("connection dropped before it was served: %s", exc)
            conn.close()

    def _pause(self, exc: OSError) -> None:
        self.pauses += 1
        low, high = ACCEPT_BACKOFF_S
        self._backoff = min(high, max(low, self._backoff * 2))
        log.warning("out of file descriptors (%s): not accepting connections for %.2f s",
                    exc.strerror, self._backoff)
        self._loop.remove_reader(self._sock.fileno())
        self._retry = self._loop.call_later(self._backoff, self._resume)

    def _resume(self) -> None:
        self._retry = None
        if self._sock.fileno() >= 0:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        for task in self._tasks:
            task.cancel()

    async def wait_closed(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)


def runner_options(config: LabConfig) -> dict:
    """Keyword arguments for `web.AppRunner` (the site's handlers get the same keep-alive timeout)."""
    return {"keepalive_timeout": config.keepalive_timeout}


class GuardedSite(web.TCPSite):
    """A TCPSite whose protocol factory is a `_ConnectionGuard` (see the module docstring)."""

    def __init__(self, runner: web.AppRunner, config: LabConfig, **kwargs):
        super().__init__(runner, config.host, config.port, **kwargs)
        self._config = config
        self.guard: _ConnectionGuard | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        self.guard = _ConnectionGuard(self._runner.server, self._config, loop)
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.create_server((self._host, self._port), family=family, backlog=self._backlog,
                                    reuse_port=bool(self._reuse_port))
        sock.setblocking(False)
        self._server = self.listener = _Listener(sock, self.guard, self._ssl_context, loop)
        self._bound_port = sock.getsockname()[1]


@web.middleware
async def body_deadline(request: web.Request, handler):
    """Read a request body within the configured `body_timeout`; else 408 problem+json, closed."""
    if request.body_exists and not request.headers.get("Upgrade"):
        limit = request.app[CONFIG].body_timeout
        try:
            async with asyncio.timeout(limit):
                await request.read()  # kept by aiohttp: the handler's read() gets the same bytes
        except TimeoutError:
            response = web.Response(
                status=408, content_type=PROBLEM_TYPE,
                body=json.dumps({"type": "about:blank", "title": title(408), "status": 408,
                                 "detail": f"The request body did not arrive within {limit:g} s."}),
            )
            # Sent now, then the connection closes: waiting for the rest of the body is what timed out.
            await response.prepare(request)
            await response.write_eof()
            request.protocol.force_close()
            return response
    return await handler(request)
