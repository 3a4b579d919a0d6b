"""UdpLink: the emulated link for datagrams (QUIC), with the same model as the TCP proxy.

    link = UdpLink("127.0.0.1", server_udp_port, "4g", loss=0.02, seed=1).start()
    # point a QUIC client at 127.0.0.1:link.port instead of the server
    link.datagrams, link.dropped      # {"up": n, "down": n}, {"up": [indices], "down": [...]}
    link.stop()

What is modelled, per direction (upstream: client -> server, downstream: server -> client), with the
numbers of the same `Profile` the TCP proxy uses, so TCP and QUIC cross the same link:
- `latency` and `jitter` (ms): a one-way delay per datagram, latency + uniform(-jitter, +jitter),
  drawn from a generator seeded per direction. A datagram never overtakes the one before it (as
  in the TCP model; a real path can reorder, QUIC would cope);
- `rate` (KB/s): one first-in-first-out bottleneck per direction shared by every client of the
  link, as in the TCP model; its queue holds max(64 KiB, bandwidth-delay product) of link time. A
  datagram that finds the queue full is dropped (tail drop, counted in `queue_drops`): UDP has no
  flow control to hold a sender back, a router drops;
- loss: each datagram is dropped with `loss` probability, decided by the datagram's index in its
  direction and a generator seeded with `seed`, so the same seed drops the same indices
  (`dropped`). The drop is REAL: the datagram is never sent, and QUIC's own loss detection and
  retransmission (aioquic's, RFC 9002) recover it. This differs from the TCP proxy, which sees a
  byte stream and can only model a lost segment's cost (the `loss` toxic's stall).

What is not modelled: the handshake is not added back (QUIC's handshake is ordinary datagrams and
pays its own round trips), slow start (QUIC runs its own congestion control on the real drops),
reordering, duplication, corruption, MTU (datagrams pass whole), and UDP/IP header bytes (the
counters count payload bytes; add 28 per datagram for IPv4 + UDP).

What is real: the datagrams and their payloads, the sockets, and the timers. The link runs on its
own thread and event loop (not a process, unlike the TCP proxy), so a busy kernel can make it late;
`lateness_ms` records how late each datagram left after its due time.

Standard library only, like the rest of `labkit.net.netem`. One UDP socket faces the clients; each
client address gets its own socket towards the server (as a NAT does), so the server sees one peer
per client. Like a NAT, the link forgets a client address: one silent in both directions for
`IDLE_EXPIRY_S` is forgotten when a new client arrives, and with `MAX_CLIENTS` addresses held the
least recently active one is forgotten (`clients_expired`, `clients_evicted`; its socket towards
the server is closed, and a later datagram from it gets a new one, as after a NAT rebinding). A new
address is refused (`clients_refused`) only while every slot is still being opened. The
client-facing socket is not opened by `server.listen.listen()`, which serves TCP
only (a UDP socket has no accept and no connections to count): no connection cap applies to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections import OrderedDict, deque

from .link import KB, MIN_QUEUE_BYTES, Profile, profile

UP, DOWN = "up", "down"
MAX_CLIENTS = 64
"""Client addresses one link serves at once (each holds a socket towards the server)."""
IDLE_EXPIRY_S = 30.0
"""A client address silent this long (both directions) is forgotten when a new one arrives."""


class _Direction:
    """One direction of the link: its bottleneck, delay generator, loss generator and counters."""

    def __init__(self, toxics, rtt_s: float, seed: int, name: str, loss: float, history: int):
        self.latency_s, self.jitter_s = toxics.latency / 1000, toxics.jitter / 1000
        self.rate = toxics.rate * KB if toxics.rate else None
        bdp = self.rate * rtt_s if self.rate else 0.0
        self.queue_s = max(MIN_QUEUE_BYTES, bdp) / self.rate if self.rate else float("inf")
        self.free_at = 0.0
        self.last_due = 0.0
        self.delay_rng = random.Random(f"{seed}-udp-delay-{name}")
        self.loss_rng = random.Random(f"{seed}-udp-loss-{name}")
        self.loss = loss
        self.count = 0
        self.bytes = 0
        self.dropped: deque[int] = deque(maxlen=history)
        self.queue_drops = 0
        self.late_ms: deque[float] = deque(maxlen=history)

    def schedule(self, size: int, now: float) -> float | None:
        """The due time of the next datagram of `size` bytes, or None when it is dropped."""
        index = self.count
        self.count += 1
        lost = self.loss > 0 and self.loss_rng.random() < self.loss  # one draw per datagram, always
        if lost:
            self.dropped.append(index)
            return None
        leaves = now
        if self.rate:
            if self.free_at - now > self.queue_s:
                self.queue_drops += 1
                return None
            self.free_at = max(now, self.free_at) + size / self.rate
            leaves = self.free_at
        jitter = self.delay_rng.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s else 0.0
        due = max(self.last_due, leaves + max(0.0, self.latency_s + jitter))
        self.last_due = due
        self.bytes += size
        return due


class _Facing(asyncio.DatagramProtocol):
    """The socket the clients send to."""

    def __init__(self, link: UdpLink):
        self.link = link

    def datagram_received(self, data: bytes, addr) -> None:
        self.link.from_client(data, addr)


class _Towards(asyncio.DatagramProtocol):
    """One client's socket towards the server."""

    def __init__(self, link: UdpLink, client):
        self.link, self.client = link, client

    def datagram_received(self, data: bytes, addr) -> None:
        self.link.from_server(data, self.client)


class UdpLink:
    """An emulated link for UDP between clients and `target_host:target_port` (see the module
    docstring). `loss` is the drop probability of each datagram, both directions."""

    def __init__(self, target_host: str, target_port: int, profile_spec: str | Profile | None = None,
                 *, loss: float = 0.0, seed: int = 0, host: str = "127.0.0.1", history: int = 10_000):
        if not 0.0 <= loss < 1.0:
            raise ValueError("loss is a probability in [0, 1)")
        self.target = (target_host, target_port)
        self.profile = profile(profile_spec)
        self.host, self.seed, self.history = host, seed, history
        rtt_s = self.profile.rtt_ms / 1000
        self._dirs = {UP: _Direction(self.profile.upstream, rtt_s, seed, UP, loss, history),
                      DOWN: _Direction(self.profile.downstream, rtt_s, seed, DOWN, loss, history)}
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._facing: asyncio.DatagramTransport | None = None
        self._towards: OrderedDict = OrderedDict()
        """Client address -> its socket towards the server, least recently active first."""
        self._last: dict = {}
        """Client address -> loop time of its last datagram (either direction)."""
        self._pending: dict = {}
        self.clients_refused = 0
        self.clients_expired = 0
        self.clients_evicted = 0

    # -- counters --------------------------------------------------------------------------------
    @property
    def datagrams(self) -> dict[str, int]:
        """Datagrams that arrived at the link, per direction (dropped ones included)."""
        return {d: s.count for d, s in self._dirs.items()}

    @property
    def clients(self) -> int:
        """Client addresses the link holds now (each with its socket towards the server)."""
        return len(self._towards) + len(self._pending)

    @property
    def payload_bytes(self) -> dict[str, int]:
        """Payload bytes the link delivered, per direction."""
        return {d: s.bytes for d, s in self._dirs.items()}

    @property
    def dropped(self) -> dict[str, list[int]]:
        """Indices (0-based, per direction, in arrival order) of the datagrams loss dropped."""
        return {d: list(s.dropped) for d, s in self._dirs.items()}

    @property
    def queue_drops(self) -> dict[str, int]:
        return {d: s.queue_drops for d, s in self._dirs.items()}

    @property
    def lateness_ms(self) -> dict[str, list[float]]:
        return {d: list(s.late_ms) for d, s in self._dirs.items()}

    def __repr__(self) -> str:
        return (f"<UdpLink {self.profile.name} 127.0.0.1:{self.port} -> {self.target[0]}:"
                f"{self.target[1]}, datagrams {self.datagrams}, dropped "
                f"{ {d: len(v) for d, v in self.dropped.items()} }>")

    # -- life ------------------------------------------------------------------------------------
    def start(self) -> UdpLink:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="labkit-udp-link",
                                        daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(10)
        return self

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Facing(self),
                                                           local_addr=(self.host, 0))
        self._facing = transport
        self.port = transport.get_extra_info("sockname")[1]

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        self._loop = None

        def close() -> None:
            for transport in [self._facing, *self._towards.values()]:
                if transport is not None:
                    transport.close()
            loop.stop()

        loop.call_soon_threadsafe(close)
        if self._thread is not None:
            self._thread.join(5)
        loop.close()

    def __enter__(self) -> UdpLink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- forwarding (on the link's loop) ---------------------------------------------------------
    def from_client(self, data: bytes, client) -> None:
        if client in self._pending:  # its socket towards the server is being opened
            self._pending[client].append(data)
            return
        towards = self._towards.get(client)
        if towards is None:
            self._make_room()
            if len(self._towards) + len(self._pending) >= MAX_CLIENTS:
                self.clients_refused += 1
                return
            self._pending[client] = [data]
            asyncio.get_running_loop().create_task(self._connect(client))
            return
        self._touch(client)
        self._forward(UP, data, towards.sendto)

    def _touch(self, client) -> None:
        self._towards.move_to_end(client)
        self._last[client] = asyncio.get_running_loop().time()

    def _make_room(self) -> None:
        """Forget the client addresses idle for IDLE_EXPIRY_S, and the least recently active
        one while every slot is taken (those still being opened stay)."""
        now = asyncio.get_running_loop().time()
        while self._towards:
            oldest = next(iter(self._towards))
            if now - self._last.get(oldest, now) >= IDLE_EXPIRY_S:
                self.clients_expired += 1
            elif len(self._towards) + len(self._pending) >= MAX_CLIENTS:
                self.clients_evicted += 1
            else:
                return
            self._last.pop(oldest, None)
            self._towards.pop(oldest).close()

    async def _connect(self, client) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Towards(self, client),
                                                           remote_addr=self.target)
        self._towards[client] = transport
        self._last[client] = loop.time()
        for data in self._pending.pop(client, []):
            self._forward(UP, data, transport.sendto)

    def from_server(self, data: bytes, client) -> None:
        if client in self._towards:
            self._touch(client)
        facing = self._facing
        if facing is not None:
            self._forward(DOWN, data, lambda payload: facing.sendto(payload, client))

    def _forward(self, direction: str, data: bytes, send) -> None:
        loop = asyncio.get_running_loop()
        state = self._dirs[direction]
        now = loop.time()
        due = state.schedule(len(data), now)
        if due is None:
            return

        def deliver() -> None:
            state.late_ms.append((loop.time() - due) * 1000)
            with contextlib.suppress(OSError):  # the socket closed meanwhile: lost, as UDP may
                send(data)

        if due <= now:
            deliver()
        else:
            loop.call_at(due, deliver)


__all__ = ["DOWN", "UP", "UdpLink"]
