"""WsClient: a WebSocket client (the `websockets` library) with timed echoes, sync from any cell."""

from __future__ import annotations

import time

from websockets.asyncio.client import ClientConnection, connect

from .. import _loop
from ._target import base_url


class WsClient:
    """`ws = lk.websocket(lab, "/ws/echo")`: one open WebSocket; `send`, `recv`, `echo`, `close`.

    Compression is off by default (latency work wants the plain frames); pass compression="deflate"
    to turn permessage-deflate on.
    """

    def __init__(self, target, path: str = "/ws/echo", *, compression=None, timeout: float = 10.0,
                 **connect_options):
        self.url = base_url(target, "ws") + path
        self.timeout = timeout
        self._options = {"compression": compression, "open_timeout": timeout, **connect_options}
        self._conn: ClientConnection | None = None
        self.connect_ms: float | None = None
        self.connect()

    def connect(self) -> WsClient:
        """Open the connection (the HTTP Upgrade handshake); `connect_ms` is how long it took."""
        async def _open():
            started = time.perf_counter_ns()
            conn = await connect(self.url, **self._options)
            return conn, (time.perf_counter_ns() - started) / 1e6

        if self._conn is None:
            self._conn, self.connect_ms = _loop.run(_open(), timeout=self.timeout + 5)
        return self

    @property
    def connection(self) -> ClientConnection:
        if self._conn is None:
            raise RuntimeError("this WebSocket is closed; call connect() to open a new one")
        return self._conn

    def send(self, message: str | bytes) -> None:
        """Send one message: str goes as a text frame, bytes as a binary frame."""
        _loop.run(self.connection.send(message), timeout=self.timeout)

    def recv(self, timeout: float | None = None) -> str | bytes:
        """Wait for the next message (at most `timeout` s, default the client's timeout)."""
        return _loop.run(self.connection.recv(), timeout=timeout or self.timeout)

    def echo(self, message: str | bytes) -> tuple[str | bytes, float]:
        """Send and wait for the next message; returns (answer, round trip in ms)."""
        async def _echo():
            started = time.perf_counter_ns()
            await self.connection.send(message)
            answer = await self.connection.recv()
            return answer, (time.perf_counter_ns() - started) / 1e6

        return _loop.run(_echo(), timeout=self.timeout)

    def close(self, code: int = 1000, reason: str = "") -> int | None:
        """Run the closing handshake; returns the close code the server answered with."""
        if self._conn is None:
            return None
        conn, self._conn = self._conn, None
        _loop.run(conn.close(code, reason), timeout=self.timeout)
        return conn.close_code

    def __enter__(self) -> WsClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return f"<WsClient {self.url} ({state})>"
