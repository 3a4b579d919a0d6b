"""TcpProxy: a real TCP proxy on 127.0.0.1 that forwards bytes both ways between a client and a target.

The wire tap (records what passes) and the network emulator (delays and throttles what passes) are
both proxies: they subclass this and override the hooks `on_connect`, `on_chunk`, `deliver`,
`on_eof`, `on_end` and `on_disconnect`, and `new_loop` to choose the event loop of the proxy's thread.
`cut(conn, reason, reset=...)` ends a connection from the proxy's side (a FIN, or an RST).
A proxy runs on its own daemon thread and loop, like the lab server, so it behaves like a separate
box on the network whatever the cell or the client is doing. (It still shares this interpreter's
GIL: NetemProxy, whose timing matters, runs its proxy in a process of its own.)

A proxy listens through the kit's one serving path (`labkit.server.listen`): a connection cap, a fair
share per client address, and a back-off when out of descriptors, like every other listener of the
kit. Being L4, it adds its own idle rule: a connection that carried no byte either way for
`idle_timeout` seconds is closed (what load balancers and NAT boxes do; long enough for every lesson).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Self

from labkit.server.listen import Limits, Listener, listen

UP, DOWN = "up", "down"
"""Directions: up is client -> server, down is server -> client."""

READ_SIZE = 65536
"""Most bytes one read takes from a socket (one chunk for `on_chunk` / `deliver`)."""
IDLE_TIMEOUT_S = 600.0
"""Seconds a proxied connection may carry no byte in either direction before the proxy closes it."""
DEFAULT_LIMITS = Limits()
"""The listener limits of a proxy given none (Limits is frozen: one shared instance is safe)."""


@dataclass
class Connection:
    """One proxied TCP connection."""

    id: int
    opened_ns: int
    closed_ns: int | None = None
    bytes: dict = field(default_factory=lambda: {UP: 0, DOWN: 0})
    ended_by: str | None = None
    """Why the proxy ended the connection (the reason given to `cut`), None if an end point did."""
    client: asyncio.StreamWriter | None = field(default=None, repr=False, compare=False)
    server: asyncio.StreamWriter | None = field(default=None, repr=False, compare=False)
    task: asyncio.Task | None = field(default=None, repr=False, compare=False)
    last_active: float = field(default_factory=time.monotonic, repr=False, compare=False)

    def as_dict(self) -> dict:
        """The plain fields (what can cross a process boundary)."""
        return {"id": self.id, "opened_ns": self.opened_ns, "closed_ns": self.closed_ns,
                "bytes": dict(self.bytes), "ended_by": self.ended_by}


class TcpProxy:
    """Listen on `host:port` (port 0: any free one) and forward each connection to `target`."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0,
                 limits: Limits = DEFAULT_LIMITS, idle_timeout: float | None = IDLE_TIMEOUT_S):
        self.target = (target_host, target_port)
        self.host, self.port = host, port
        self.limits, self.idle_timeout = limits, idle_timeout
        self.connections: list[Connection] = []
        self.idle_closed = 0
        """Connections closed by the idle rule."""
        self._ids = itertools.count(1)
        self._server: Listener | None = None
        self._sweeper: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task] = set()

    # -- hooks for subclasses ------------------------------------------------------------------
    async def on_connect(self, conn: Connection) -> None:
        """Called once per new connection, before any byte is forwarded."""

    def on_chunk(self, conn: Connection, direction: str, data: bytes, t_ns: int) -> None:
        """Called for every chunk read, at the time it was read (perf_counter_ns)."""

    async def deliver(self, conn: Connection, direction: str, data: bytes,
                      writer: asyncio.StreamWriter) -> None:
        """Write a chunk to the other side; the default forwards it at once."""
        writer.write(data)
        await writer.drain()

    async def on_eof(self, conn: Connection, direction: str, writer: asyncio.StreamWriter) -> None:
        """Called when `direction` ended cleanly (its sender half-closed), before the EOF is passed
        on to `writer`: a proxy that holds bytes back sends them here, so they precede the EOF."""

    async def on_end(self, conn: Connection, direction: str) -> None:
        """Called when `direction`'s sender is gone (EOF or error), before its end is passed on:
        a proxy that waits here holds the end back (a blackhole keeps the other side unaware)."""

    async def on_disconnect(self, conn: Connection) -> None:
        """Called once when both directions of a connection are done."""

    def new_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop `start()` runs the proxy on (the platform's default)."""
        return asyncio.new_event_loop()

    # -- addresses -----------------------------------------------------------------------------
    def url(self, scheme: str = "http", path: str = "") -> str:
        """The URL a client uses to go through the proxy, e.g. proxy.url("ws", "/ws/echo")."""
        return f"{scheme}://{self.host}:{self.port}{path}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop of the proxy's thread while it runs (None before `start`)."""
        return self._loop

    @property
    def thread_id(self) -> int | None:
        """The native id of the proxy's own thread while it runs (None otherwise): what a CPU
        counter per thread (`/proc/self/task/<id>/stat`) needs, e.g. lesson 06's front door."""
        return self._thread.native_id if self._thread is not None else None

    @property
    def bytes_up(self) -> int:
        """Bytes client -> server over every connection so far."""
        return sum(c.bytes[UP] for c in self.connections)

    @property
    def bytes_down(self) -> int:
        """Bytes server -> client over every connection so far."""
        return sum(c.bytes[DOWN] for c in self.connections)

    def cut(self, conn: Connection, reason: str, *, reset: bool = False) -> None:
        """End `conn` from the proxy: close both sockets (FIN after what they hold is sent), or with
        reset=True abort them with SO_LINGER 0, so both peers get an RST ("connection reset by
        peer") and unsent bytes are dropped. Call on the proxy's loop."""
        if conn.closed_ns is not None:
            return
        conn.ended_by = conn.ended_by or reason
        for writer in (conn.client, conn.server):
            if writer is None or writer.transport.is_closing():
                continue
            if reset:
                sock = writer.get_extra_info("socket")
                with contextlib.suppress(OSError, AttributeError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            else:
                writer.close()
        if conn.task is not None and conn.task is not asyncio.current_task():
            conn.task.cancel()

    # -- async life cycle (inside a running loop) ------------------------------------------------
    @property
    def listener(self) -> Listener | None:
        """The guarded listener while serving (its counters: live, refused, pauses)."""
        return self._server

    async def serve(self) -> Self:
        """Start listening on the current loop, through the kit's one serving path."""
        loop = asyncio.get_running_loop()

        def factory() -> asyncio.Protocol:
            return asyncio.StreamReaderProtocol(asyncio.StreamReader(limit=READ_SIZE, loop=loop),
                                                self._handle, loop=loop)

        self._server = await listen(factory, self.host, self.port, limits=self.limits)
        self.port = self._server.port
        if self.idle_timeout is not None:
            self._sweeper = loop.create_task(self._sweep_idle(self.idle_timeout))
        return self

    async def _sweep_idle(self, idle_timeout: float) -> None:
        """Close connections that carried nothing either way for `idle_timeout` seconds."""
        while True:
            await asyncio.sleep(min(idle_timeout / 4, 30.0))
            now = time.monotonic()
            for conn in list(self.connections):
                if conn.closed_ns is None and now - conn.last_active > idle_timeout:
                    self.idle_closed += 1
                    self.cut(conn, "idle")

    async def aclose(self) -> None:
        """Stop listening and cut every proxied connection."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, client_reader, client_writer) -> None:
        task = asyncio.current_task()
        if task is None:  # _handle is always run as a task (a connection callback of the stream)
            raise RuntimeError("TcpProxy._handle must run inside a task")
        self._tasks.add(task)
        conn = Connection(next(self._ids), time.perf_counter_ns(), client=client_writer, task=task)
        self.connections.append(conn)
        server_writer = None
        try:
            await self.on_connect(conn)
            server_reader, server_writer = await asyncio.open_connection(*self.target)
            conn.server = server_writer
            await asyncio.gather(
                self._pump(conn, UP, client_reader, server_writer),
                self._pump(conn, DOWN, server_reader, client_writer),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # the proxy is stopping; ending quietly keeps asyncio from logging the cancel
        finally:
            conn.closed_ns = time.perf_counter_ns()
            conn.task = None
            for writer in (client_writer, server_writer):
                if writer is not None:
                    writer.close()
            try:
                await self.on_disconnect(conn)
            finally:
                conn.client = conn.server = None  # a closed connection keeps its counts, not sockets
                self._tasks.discard(task)

    async def _pump(self, conn, direction, reader, writer) -> None:
        try:
            while data := await reader.read(READ_SIZE):
                conn.last_active = time.monotonic()
                conn.bytes[direction] += len(data)
                self.on_chunk(conn, direction, data, time.perf_counter_ns())
                await self.deliver(conn, direction, data, writer)
            await self.on_eof(conn, direction, writer)
        except (ConnectionError, OSError):
            pass
        await self.on_end(conn, direction)  # not reached when cancelled: _handle closes everything
        if writer.can_write_eof() and not writer.is_closing():
            with contextlib.suppress(OSError):
                writer.write_eof()

    # -- sync life cycle (its own thread) ----------------------------------------------------------
    def start(self) -> Self:
        """Run the proxy on its own thread and loop; returns once it listens."""
        if self._thread is not None:
            return self
        self._loop = self.new_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name=f"labkit-{type(self).__name__}", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.serve(), self._loop).result(10)
        except BaseException:  # e.g. the port is taken: leave no thread or loop behind
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            if not self._loop.is_running():
                self._loop.close()
            self._loop = self._thread = None
            raise
        return self

    def stop(self) -> None:
        """Stop the proxy started with start(); safe to call twice."""
        if self._loop is None:
            return
        if self._thread is None:  # start() sets both and clears both on failure; stop() clears both
            raise RuntimeError("TcpProxy has an event loop but no thread")
        try:
            asyncio.run_coroutine_threadsafe(self.aclose(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            if not self._loop.is_running():  # a loop still running cannot be closed
                self._loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
