"""WsClient: a WebSocket client (the `websockets` library) with timed echoes, sync from any cell."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from labkit import _loop

from ._target import base_url, lab_ssl_context


class ClientClosed(RuntimeError):
    """Raised when a closed WebSocket client is used; a notebook shows it as its one-line message."""

    def _render_traceback_(self) -> list[str]:  # IPython: show this instead of a traceback
        return [f"{type(self).__name__}: {self}"]


class _Connection:
    """The client's open WebSocket, held apart from the client so it can be closed when the
    client is garbage-collected or at exit (see `_loop.close_when_collected`)."""

    def __init__(self) -> None:
        self.conn: ClientConnection | None = None

    async def aclose(self) -> None:
        if self.conn is not None:
            await self.conn.close()


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
        if self.url.startswith("wss://") and "ssl" not in connect_options:
            self._options["ssl"] = lab_ssl_context(self.url)
        self._held = _Connection()
        self._closed_code: int | None = None
        _loop.close_when_collected(self, self._held.aclose)
        self.connect_ms = 0.0  # set by connect(), right below
        self.connect()

    def connect(self) -> WsClient:
        """Open the connection (the HTTP Upgrade handshake); `connect_ms` is how long it took."""
        async def _open():
            started = time.perf_counter_ns()
            conn = await connect(self.url, **self._options)
            return conn, (time.perf_counter_ns() - started) / 1e6

        if self._held.conn is None:
            self._held.conn, self.connect_ms = _loop.run(_open(), timeout=self.timeout + 5)
        return self

    @property
    def connection(self) -> ClientConnection:
        if self._held.conn is None:
            raise ClientClosed(f"this WebSocket to {self.url} is closed; open it again with "
                               ".connect() or make a new one: lk.websocket(lab, ...)")
        return self._held.conn

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

    def send_json(self, value) -> None:
        """Send `value` as JSON in one text frame."""
        self.send(json.dumps(value))

    def recv_json(self, timeout: float | None = None):
        """Wait for the next message and decode it as JSON."""
        return json.loads(self.recv(timeout))

    def ask(self, value):
        """Send `value` (JSON, or a str/bytes as is) and return the next message decoded as JSON."""
        message = value if isinstance(value, str | bytes) else json.dumps(value)
        answer, _ = self.echo(message)
        return json.loads(answer)

    def ping(self, data: bytes = b"") -> float:
        """Send a ping frame and wait for its pong; returns the round trip in ms."""
        async def _ping():
            waiter = await self.connection.ping(data)
            return await waiter * 1000.0

        return _loop.run(_ping(), timeout=self.timeout)

    @property
    def close_code(self) -> int | None:
        """The close code the server sent, once the connection is closed (else None)."""
        conn = self._held.conn
        return conn.close_code if conn is not None else self._closed_code

    def close(self, code: int = 1000, reason: str = "") -> int | None:
        """Run the closing handshake; returns the close code the server answered with."""
        conn, self._held.conn = self._held.conn, None
        if conn is None:
            return None
        _loop.run(conn.close(code, reason), timeout=self.timeout)
        self._closed_code = conn.close_code
        return conn.close_code

    def __enter__(self) -> WsClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._held.conn is not None else "closed"
        return f"<WsClient {self.url} ({state})>"


def full_duplex(target, *, clock_hz: float = 20, send_hz: float = 15, seconds: float = 2.0,
                timeout: float = 30.0):
    """Stream both ways on `/ws/clock` for `seconds`: the server ticks at `clock_hz` while this
    client sends at `send_hz`; then the client closes. Returns a DataFrame, one row per message:
    `direction` (up/down), `t_ms` (since the connection opened), `type` (message, tick, ack), `seq`.
    """
    import pandas as pd

    url = base_url(target, "ws") + f"/ws/clock?rate={clock_hz}"

    async def _run():
        rows = []
        async with connect(url, compression=None, open_timeout=timeout) as conn:
            started = time.perf_counter_ns()

            def now_ms():
                return (time.perf_counter_ns() - started) / 1e6

            async def reader():
                with contextlib.suppress(ConnectionClosed):
                    async for raw in conn:
                        message = json.loads(raw)
                        rows.append({"direction": "down", "t_ms": now_ms(), "type": message["type"],
                                     "seq": message.get("seq", message.get("n"))})

            task = asyncio.create_task(reader())
            for i in range(max(1, round(send_hz * seconds))):
                await conn.send(f"client message {i + 1}")
                rows.append({"direction": "up", "t_ms": now_ms(), "type": "message", "seq": i + 1})
                await asyncio.sleep(1.0 / send_hz)
            await asyncio.sleep(max(0.0, seconds - now_ms() / 1000))
            await conn.close()
            await task
        return rows

    rows = _loop.run(_run(), timeout=timeout + seconds)
    return pd.DataFrame(rows, columns=["direction", "t_ms", "type", "seq"]).sort_values(
        "t_ms", kind="stable").reset_index(drop=True)
