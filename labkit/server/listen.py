"""The one serving path: every socket the kit listens on is opened by `listen()`, with its guard.

Standard library only, so that the emulator's proxy process (`python -S`, no site-packages) uses
the same code as the lab, the class server, the cluster's workers and front door, and the provider.

What every listener gets:
- the process's soft open-file limit raised towards the hard one (`raise_open_file_limit`);
- a connection cap (`connection_cap`): at most `max_connections`, and always a quarter of the
  open-file limit (at least 64 descriptors) left to the rest of the process, so a kernel running a
  lab keeps answering cells; a connection over the cap gets `refusal` (for HTTP listeners a 503
  problem+json with Retry-After) and is closed;
- a fair share per peer address: one address may hold at most `per_peer_share` of the cap, so one
  client (or one student) cannot take every slot from the others. Peers behind a proxy all share the
  proxy's address: cluster workers, whose only peer is the front door, turn the share off (1.0);
- an accept loop that backs off when the process is out of descriptors (EMFILE): it stops accepting
  for 50 ms, doubling up to 1 s, where asyncio's own loop (Python 3.11) retries the whole backlog at
  once, logs each failure and, at a 1,024 limit with a full backlog, never recovers.

What a listener does not know (bytes, requests, frames), its protocol does: the aiohttp handler adds
head, body, write and WebSocket-heartbeat timeouts (`labkit.server.guard`); an L4 proxy closes
connections idle in both directions (`labkit.net.proxy`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import weakref
from collections.abc import Callable
from dataclasses import dataclass

try:
    import resource
except ImportError:  # Windows: no RLIMIT_NOFILE to raise; the cap uses max_connections alone
    resource = None  # type: ignore[assignment]

log = logging.getLogger("labkit.server")

OPEN_FILES_TARGET = 65536
"""Soft open-file limit the kit asks for (when the hard limit allows it)."""
MIN_RESERVED_FDS = 64
"""Descriptors always left to the rest of the process (the kernel, SQLite, client sockets)."""
REFUSING_LIMIT = 256
"""Refusals still being written at once; beyond that an over-cap connection is dropped at once."""
ACCEPT_BATCH = 64
"""Connections accepted per wake-up of the listening socket (the rest wait for the next one)."""
ACCEPT_BACKOFF_S = (0.05, 1.0)
"""Pause after an out-of-descriptors accept: the first, and the longest (it doubles up to it)."""
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
LINGER_S = 2.0
"""After a final answer (a 408, a refusal) and our half-close, the longest the client's further
bytes are read and dropped (`half_close`)."""


def half_close(transport: asyncio.Transport, close: Callable[[], object],
               linger_s: float | None = None) -> asyncio.TimerHandle | None:
    """End a connection whose last answer is written, without resetting a client still sending
    (RFC 9112 9.6): closing with unread input, or receiving bytes after the close, makes the kernel
    send an RST, which can destroy the answer before the client read it. So: our FIN now, and
    `close()` after `linger_s` (LINGER_S) at most; the caller drops what still arrives and calls
    `close()` itself at the client's EOF. Returns that timer. A transport without half-close (TLS)
    is closed at once, once its buffer is flushed (`transport.close()`), and None is returned."""
    if not transport.can_write_eof():
        transport.close()
        return None
    transport.write_eof()
    return asyncio.get_running_loop().call_later(LINGER_S if linger_s is None else linger_s, close)


@dataclass(frozen=True)
class Limits:
    """What a listener allows. `max_connections` is lowered further by `connection_cap`."""

    max_connections: int = 4096
    per_peer_share: float = 0.5
    """Largest share of the cap one peer address may hold (1.0: no per-peer rule)."""

    def peer_cap(self, cap: int) -> int:
        return max(1, int(cap * self.per_peer_share))


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


def connection_cap(max_connections: int) -> int:
    """How many connections a listener serves at once: `max_connections`, lowered so that a quarter
    of the open-file limit (at least MIN_RESERVED_FDS) stays free for the rest of the process."""
    soft, _ = open_file_limits()
    if resource is None or soft < 0 or soft == resource.RLIM_INFINITY:
        return max_connections
    reserve = max(MIN_RESERVED_FDS, soft // 4)
    return max(1, min(max_connections, soft - reserve))


class _Counted(asyncio.Protocol):
    """The protocol of one served connection, wrapped so the listener knows when it ends. Every
    call is passed on unchanged; `connection_lost` also frees the connection's slot.

    Only for protocols that cannot say so themselves: a protocol with a `set_on_lost(callback)`
    method (`labkit.server.guard.GuardedRequestHandler`) is served directly and calls back from its
    own `connection_lost`, so its data path has no extra call and no extra object per connection.
    """

    __slots__ = ("inner", "_release", "__weakref__")

    def __init__(self, inner: asyncio.Protocol, release: Callable[[asyncio.BaseProtocol], None]):
        self.inner, self._release = inner, release

    def connection_made(self, transport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self):
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc) -> None:
        self._release(self)
        self.inner.connection_lost(exc)


class _Refused(asyncio.Protocol):
    """A connection over the cap: write the refusal (if any), stop sending, close soon after."""

    def __init__(self, listener: Listener, refusal: bytes | None):
        self.listener, self.refusal = listener, refusal
        self.transport: asyncio.Transport | None = None
        self.closer: asyncio.Handle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.listener.refusing += 1
        if self.refusal is None or self.listener.refusing > REFUSING_LIMIT:
            transport.abort()
            return
        try:
            transport.write(self.refusal)
            # closing at once could reset a request still on its way in before the peer read the
            # 503; a refused connection lingers 1 s at most (there may be many at once)
            self.closer = half_close(transport, transport.abort, linger_s=1.0)
        except OSError:  # the peer is gone already
            transport.abort()

    def data_received(self, data: bytes) -> None:
        pass  # the request is not served; its bytes are read and dropped

    def eof_received(self) -> bool:
        if self.transport is not None:
            self.transport.close()
        return False

    def connection_lost(self, exc) -> None:
        self.listener.refusing -= 1
        if self.closer is not None:
            self.closer.cancel()


Refusal = Callable[[str, int], bytes | None]
"""refusal(why, cap) -> the bytes an over-cap connection gets before it is closed (None: none).
`why` is "full" (the listener is at its cap) or "peer" (this address holds its share)."""


class Listener:
    """A listening socket with its guard. Quacks like asyncio's Server (`sockets`, `close`,
    `wait_closed`). Counters: `live` connections now, `refused` so far, `pauses` (EMFILE)."""

    def __init__(self, sock: socket.socket, factory: Callable[[], asyncio.Protocol], *,
                 limits: Limits, refusal: Refusal | None, ssl, loop: asyncio.AbstractEventLoop):
        self.sockets = [sock]
        self.limits = limits
        self.cap = connection_cap(limits.max_connections)
        self.peer_cap = limits.peer_cap(self.cap)
        self._sock, self._factory, self._refusal, self._ssl, self._loop = (
            sock, factory, refusal, ssl, loop)
        self._live: weakref.WeakKeyDictionary[asyncio.BaseProtocol, str] = (
            weakref.WeakKeyDictionary())
        """Served protocol -> its peer address. Counted when the protocol is made: asyncio may
        accept a whole backlog before the first connection_made. Weak, so a connection that dies
        in a TLS handshake frees its slot too."""
        self._by_peer: dict[str, weakref.WeakSet[asyncio.BaseProtocol]] = {}
        """Live connections per peer address (an address with none may keep an empty set)."""
        self.refused = 0
        self.refusing = 0
        self.pauses = 0
        self._backoff = 0.0
        self._retry: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        loop.add_reader(sock.fileno(), self._accept)

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    @property
    def live(self) -> int:
        return len(self._live)

    def peer_count(self, host: str) -> int:
        peers = self._by_peer.get(host)
        return len(peers) if peers is not None else 0

    # -- accepting ---------------------------------------------------------------------------------
    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, addr = self._sock.accept()
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
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and an
                # accepted socket of `socket.create_server` says 0: without this, Nagle's algorithm
                # holds small writes (a TLS record, an echo) for the peer's delayed ACK.
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = addr[0] if isinstance(addr, tuple) else str(addr)
            task = self._loop.create_task(self._serve(conn, self._protocol_for(peer)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _protocol_for(self, peer: str) -> asyncio.Protocol:
        """A guarded protocol for a connection from `peer`, or a refusal over the caps."""
        why = ("full" if len(self._live) >= self.cap
               else "peer" if self.peer_count(peer) >= self.peer_cap else None)
        if why is not None:
            self.refused += 1
            return _Refused(self, self._refusal(why, self.cap if why == "full" else self.peer_cap)
                            if self._refusal else None)
        inner = self._factory()
        set_on_lost = getattr(inner, "set_on_lost", None)
        protocol: asyncio.BaseProtocol
        if set_on_lost is not None:
            set_on_lost(self._release)
            protocol = inner
        else:
            protocol = _Counted(inner, self._release)
        self._live[protocol] = peer
        self._by_peer.setdefault(peer, weakref.WeakSet()).add(protocol)
        return protocol

    def _release(self, protocol: asyncio.BaseProtocol) -> None:
        peer = self._live.pop(protocol, None)
        if peer is None:
            return
        peers = self._by_peer.get(peer)
        if peers is not None:
            peers.discard(protocol)
            if not peers:
                del self._by_peer[peer]

    async def _serve(self, conn: socket.socket, protocol: asyncio.Protocol) -> None:
        try:
            await self._loop.connect_accepted_socket(lambda: protocol, conn, ssl=self._ssl)
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

    # -- closing -----------------------------------------------------------------------------------
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


async def listen(factory: Callable[[], asyncio.Protocol], host: str, port: int, *,
                 limits: Limits = Limits(), refusal: Refusal | None = None, ssl=None,
                 backlog: int = 128, reuse_address: bool = True) -> Listener:
    """Listen on host:port (0: a free port) on the running loop; serve each connection with a
    protocol from `factory`, under the guard described in the module docstring."""
    raise_open_file_limit()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=backlog,
                                reuse_port=False)
    if not reuse_address:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
    sock.setblocking(False)
    return Listener(sock, factory, limits=limits, refusal=refusal, ssl=ssl,
                    loop=asyncio.get_running_loop())
