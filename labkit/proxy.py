"""TcpProxy: a real TCP proxy on 127.0.0.1 that forwards bytes both ways between a client and a target.

The wire tap (records what passes) and the network emulator (delays and throttles what passes) are
both proxies: they subclass this and override the hooks `on_connect`, `on_chunk`, `deliver`,
`on_eof` and `on_disconnect`, and `new_loop` to choose the event loop of the proxy's thread.
A proxy runs on its own daemon thread and loop, like the lab server, so it behaves like a separate
box on the network whatever the cell or the client is doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from dataclasses import dataclass, field

UP, DOWN = "up", "down"
"""Directions: up is client -> server, down is server -> client."""

READ_SIZE = 65536
"""Most bytes one read takes from a socket (one chunk for `on_chunk` / `deliver`)."""


@dataclass
class Connection:
    """One proxied TCP connection."""

    id: int
    opened_ns: int
    closed_ns: int | None = None
    bytes: dict = field(default_factory=lambda: {UP: 0, DOWN: 0})


class TcpProxy:
    """Listen on `host:port` (port 0: any free one) and forward each connection to `target`."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0):
        self.target = (target_host, target_port)
        self.host, self.port = host, port
        self.connections: list[Connection] = []
        self._ids = itertools.count(1)
        self._server: asyncio.AbstractServer | None = None
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
    def bytes_up(self) -> int:
        """Bytes client -> server over every connection so far."""
        return sum(c.bytes[UP] for c in self.connections)

    @property
    def bytes_down(self) -> int:
        """Bytes server -> client over every connection so far."""
        return sum(c.bytes[DOWN] for c in self.connections)

    # -- async life cycle (inside a running loop) ------------------------------------------------
    async def serve(self) -> TcpProxy:
        """Start listening on the current loop."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        """Stop listening and cut every proxied connection."""
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
        self._tasks.add(task)
        conn = Connection(next(self._ids), time.perf_counter_ns())
        self.connections.append(conn)
        server_writer = None
        try:
            await self.on_connect(conn)
            server_reader, server_writer = await asyncio.open_connection(*self.target)
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
            for writer in (client_writer, server_writer):
                if writer is not None:
                    writer.close()
            try:
                await self.on_disconnect(conn)
            finally:
                self._tasks.discard(task)

    async def _pump(self, conn, direction, reader, writer) -> None:
        try:
            while data := await reader.read(READ_SIZE):
                conn.bytes[direction] += len(data)
                self.on_chunk(conn, direction, data, time.perf_counter_ns())
                await self.deliver(conn, direction, data, writer)
            await self.on_eof(conn, direction, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            if writer.can_write_eof() and not writer.is_closing():
                with contextlib.suppress(OSError):
                    writer.write_eof()

    # -- sync life cycle (its own thread) ----------------------------------------------------------
    def start(self) -> TcpProxy:
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
        try:
            asyncio.run_coroutine_threadsafe(self.aclose(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            if not self._loop.is_running():  # a loop still running cannot be closed
                self._loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
