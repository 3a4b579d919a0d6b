"""The front door: one loopback port that spreads TCP connections over the workers (an L4 balancer).

It is labkit's `TcpProxy` with a choice of target per connection. It never reads HTTP: it picks a
worker when a connection opens and forwards that connection's bytes both ways until it closes. So
every request of a keep-alive connection and every message of a WebSocket goes to the worker the
connection landed on; only a new connection can land elsewhere. (An L7 balancer such as nginx or
HAProxy in HTTP mode would parse each request and could send consecutive requests of one
connection to different workers; a WebSocket is pinned there too, once upgraded.)

Modes: "connection" (round robin over live workers, per new connection) and "sticky" (a client
address always lands on the same live worker: a hash of the IP, like nginx's `ip_hash`). A worker
whose process has ended is skipped.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

from labkit.net.proxy import DEFAULT_LIMITS, Connection, TcpProxy
from labkit.server.listen import Limits

MODES = ("connection", "sticky")


@dataclass
class Backend:
    """One worker as the front door sees it."""

    id: int
    port: int
    alive: Callable[[], bool]
    open: int = 0
    """Connections the front door has open to it now."""
    total: int = 0
    """Connections it has been given so far."""


class FrontDoor(TcpProxy):
    """Listen on `host:port` and hand each new connection to one of `backends`."""

    def __init__(self, backends: list[Backend], balance: str = "connection", *,
                 host: str = "127.0.0.1", port: int = 0, limits: Limits = DEFAULT_LIMITS):
        if balance not in MODES:
            raise ValueError(f"balance must be one of {MODES}, not {balance!r}")
        super().__init__("127.0.0.1", backends[0].port, host=host, port=port, limits=limits)
        self.backends, self.balance = backends, balance
        self.refused = 0
        """Connections closed at once because no worker was alive."""
        self._turn = 0
        self._chosen: Backend | None = None
        self._backend_of: dict[int, Backend] = {}

    def choose(self, peer_host: str) -> Backend | None:
        """The worker a new connection from `peer_host` goes to (None: no worker is alive)."""
        alive = [b for b in self.backends if b.alive()]
        if not alive:
            return None
        if self.balance == "sticky":
            return alive[zlib.crc32(peer_host.encode()) % len(alive)]
        self._turn += 1
        return alive[(self._turn - 1) % len(alive)]

    async def _handle(self, client_reader, client_writer) -> None:
        peer = client_writer.get_extra_info("peername") or ("", 0)
        backend = self.choose(peer[0])
        if backend is None:
            self.refused += 1
            client_writer.close()
            return
        # TcpProxy connects to self.target right after on_connect, without yielding in between,
        # so setting it here picks this connection's worker (one loop: no other connection runs).
        self._chosen, self.target = backend, ("127.0.0.1", backend.port)
        await super()._handle(client_reader, client_writer)

    async def on_connect(self, conn: Connection) -> None:
        backend = self._chosen
        if backend is None:  # _handle sets it before TcpProxy._handle calls on_connect
            raise RuntimeError("FrontDoor.on_connect called without a chosen backend")
        self._backend_of[conn.id] = backend
        backend.open += 1
        backend.total += 1

    async def on_disconnect(self, conn: Connection) -> None:
        backend = self._backend_of.pop(conn.id, None)
        if backend is not None:
            backend.open -= 1
        self.connections.remove(conn)  # keep memory bounded over a long run

    def counts(self) -> dict[int, dict]:
        """Per worker id: connections open now and given so far."""
        return {b.id: {"open": b.open, "total": b.total} for b in self.backends}
