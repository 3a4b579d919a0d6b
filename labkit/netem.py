"""NetemProxy: a TCP proxy that makes 127.0.0.1 behave like a real network (delay, jitter, bandwidth).

Put it between a client and the lab server and every byte pays what it would on a slower link:

    with NetemProxy.for_lab(lab, "4g") as net:
        lk.rest(net.url()).get("/healthz")      # ~2 round trips of a 4G network

The knobs are named after toxiproxy's toxics, one set per direction (upstream: client -> server,
downstream: server -> client):

- `latency` (ms): fixed delay added to every chunk (toxiproxy "latency" toxic);
- `jitter` (ms): each chunk (chunks read back to back share one draw, see BURST_GAP) gets an extra
  delay drawn uniformly from [-jitter, +jitter] with a seeded random generator, so a run can be
  repeated exactly (toxiproxy's jitter, but reproducible);
- `rate` (KB/s, 1 KB = 1000 bytes): bandwidth limit (toxiproxy "bandwidth" toxic).

Delays pipeline like a real wire: a chunk read at time t leaves at t + delay without holding up the
chunks read after it, and order is kept within each direction (a chunk never overtakes the one before
it, so jitter can only push a chunk later than its predecessor, never earlier).

Why the TCP handshake is modelled: the kernel completes the TCP three-way handshake with the proxy's
listening socket before the proxy's code even sees the connection, and user-space code has no way to
delay a SYN/ACK. On a real network that handshake costs one round trip before the client can send its
first byte. So the proxy adds it back: a new connection waits one configured round trip (upstream
plus downstream latency) before its first byte is forwarded. The bytes the client sent meanwhile wait
in the kernel's buffer, as they would wait for the handshake on a real link. TLS, used end to end
through the proxy, needs no model: its handshake is made of ordinary bytes and pays its own round
trips. `handshake_ms` records the modelled wait per connection, so a waterfall can show it where a
browser would (inside "connect").
"""

from __future__ import annotations

import asyncio
import random
import selectors
from collections import deque
from dataclasses import dataclass, field

from .proxy import DOWN, UP, Connection, TcpProxy

KB = 1000
"""Bytes in the KB of `rate` (toxiproxy's bandwidth toxic counts rate in KB/s)."""

SLICE_SECONDS = 0.005
"""Under a bandwidth limit, chunks are cut into slices of at most this much link time, so a large
transfer trickles out smoothly instead of arriving in 64 KiB bursts."""

MAX_AIM_EARLY = 0.002
"""Most a lane wakes early (s). A sleeping event loop wakes late: epoll rounds its timeout to whole
milliseconds (so the proxy's own thread uses select(), which takes microseconds), and the thread
must then be scheduled, typically 0.1-0.4 ms. Each direction keeps a running estimate of how late
it delivered and aims that much early, so the delays stay centred on the configured ones."""

BURST_GAP = 0.001
"""Chunks read less than this many seconds apart in one direction form a burst (say, the headers
and the body of one request) and share one jitter draw: packets sent back to back meet the same
queues on a real path. Independent draws would delay a two-chunk HTTP message by the larger of two
draws, a bias against HTTP that a real network does not have."""

MAX_QUEUED_SLICES = 256
"""Slices waiting per direction before the proxy stops reading: the bottleneck's buffer. When it is
full, the sender is held back by TCP flow control, as in front of a real slow link."""


@dataclass(frozen=True)
class Toxics:
    """What one direction of the link does to the bytes that cross it."""

    latency: float = 0.0
    """Fixed one-way delay in ms."""
    jitter: float = 0.0
    """Extra delay per chunk (per burst), uniform in [-jitter, +jitter] ms (seeded)."""
    rate: float | None = None
    """Bandwidth limit in KB/s (1 KB = 1000 bytes); None means no limit."""


@dataclass(frozen=True)
class Profile:
    """A named network: toxics for each direction plus where the numbers come from."""

    name: str
    upstream: Toxics = field(default_factory=Toxics)
    downstream: Toxics = field(default_factory=Toxics)
    source: str = ""

    @property
    def rtt_ms(self) -> float:
        """The configured round trip: upstream plus downstream latency (jitter averages out)."""
        return self.upstream.latency + self.downstream.latency

    @classmethod
    def symmetric(cls, name: str, rtt_ms: float, jitter_ms: float = 0.0, *,
                  down_kbs: float | None = None, up_kbs: float | None = None,
                  source: str = "") -> Profile:
        """Half the round trip each way; jitter split the same way; rates per direction."""
        half, half_jitter = rtt_ms / 2, jitter_ms / 2
        return cls(name, Toxics(half, half_jitter, up_kbs), Toxics(half, half_jitter, down_kbs),
                   source)

    def describe(self) -> str:
        def rate(r):
            return "unlimited" if r is None else f"{r * 8 / 1000:g} Mbit/s"

        return (f"{self.name}: round trip {self.rtt_ms:g} ms, jitter ±"
                f"{self.upstream.jitter + self.downstream.jitter:g} ms, down "
                f"{rate(self.downstream.rate)}, up {rate(self.upstream.rate)}")


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("loopback", source="No emulation: this machine's loopback, tens of microseconds."),
        Profile.symmetric(
            "lan", 0.5, 0.1, down_kbs=125_000, up_kbs=125_000,
            source="Switched gigabit Ethernet: ping between two hosts on one switch is typically "
                   "0.1-1 ms; 1 Gbit/s = 125,000 KB/s.",
        ),
        Profile.symmetric(
            "wifi", 4, 2, down_kbs=3_750, up_kbs=1_875,
            source="Home Wi-Fi to a nearby access point: a few ms of round trip with ms of jitter; "
                   "rates from Firefox DevTools' 'Wi-Fi' throttling preset (30 / 15 Mbit/s).",
        ),
        Profile.symmetric(
            "4g", 50, 10, down_kbs=500, up_kbs=375,
            source="LTE: radio access plus core network typically give 30-70 ms round trips with "
                   "tens of ms of jitter (operator and crowd-sourced reports such as Opensignal's); "
                   "rates from Firefox DevTools' 'Regular 4G/LTE' preset (4 / 3 Mbit/s).",
        ),
        Profile.symmetric(
            "intercontinental", 150, 4, down_kbs=12_500, up_kbs=12_500,
            source="Europe <-> US west coast, ~9,000 km: light in fibre covers ~200 km per ms, so "
                   "the physical floor is ~90 ms round trip; routed paths measure ~140-160 ms "
                   "(public inter-city ping tables). 100 Mbit/s.",
        ),
    )
}
"""The named networks of the lessons; `profile("4g")` looks one up."""


def profile(spec: str | Profile | None) -> Profile:
    """A Profile from a name ("4g", "LAN", "Wi-Fi" ...), a Profile, or None (loopback)."""
    if spec is None:
        return PROFILES["loopback"]
    if isinstance(spec, Profile):
        return spec
    key = str(spec).lower().replace("-", "").replace("_", "").replace(" ", "")
    if key not in PROFILES:
        raise ValueError(f"unknown network profile {spec!r}; choose one of {', '.join(PROFILES)} "
                         "or pass a netem.Profile")
    return PROFILES[key]


_resolve_profile = profile


class _Lane:
    """One direction of one connection: a queue of (due time, bytes) and the task sending them."""

    def __init__(self, writer: asyncio.StreamWriter, timing: dict):
        self.writer = writer
        self.queue: asyncio.Queue = asyncio.Queue(MAX_QUEUED_SLICES)
        self.link_free = 0.0
        self.last_due = 0.0
        self.last_read = -1.0
        self.burst_delay_ms = 0.0
        self.timing = timing  # shared per direction: {"aim_early": seconds}
        self.broken = False
        self.sender = asyncio.create_task(self._send_when_due())

    async def put(self, due: float, data: bytes) -> None:
        if self.broken:
            raise ConnectionResetError("the receiving end of this direction went away")
        await self.queue.put((due, data))

    async def finish(self) -> None:
        """Wait until every queued chunk has been sent (called before the EOF is passed on)."""
        await self.queue.put((0.0, None))
        await self.sender
        if self.broken:
            raise ConnectionResetError("the receiving end of this direction went away")

    async def cancel(self) -> None:
        self.sender.cancel()
        await asyncio.gather(self.sender, return_exceptions=True)

    async def _send_when_due(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, data = await self.queue.get()
            if data is None:
                return
            if self.broken:
                continue  # keep draining so a producer waiting on a full queue is released
            wait = due - loop.time() - self.timing["aim_early"]
            if wait > 0:
                await asyncio.sleep(wait)
                late = loop.time() - due
                aim = self.timing["aim_early"] + 0.25 * late
                self.timing["aim_early"] = min(MAX_AIM_EARLY, max(0.0, aim))
            try:
                self.writer.write(data)
                await self.writer.drain()
            except (ConnectionError, OSError):
                self.broken = True


class NetemProxy(TcpProxy):
    """A TcpProxy that delays, jitters and throttles each direction as `profile` says.

    profile: a name from PROFILES, a Profile, or None for no emulation.
    seed: seeds the jitter, so the same seed and the same traffic give the same delays.
    model_handshake: make each new connection wait one round trip (see the module docstring).
    """

    def __init__(self, target_host: str, target_port: int, profile: str | Profile | None = None,
                 *, seed: int = 0, model_handshake: bool = True, host: str = "127.0.0.1",
                 port: int = 0, history: int = 10_000):
        super().__init__(target_host, target_port, host=host, port=port)
        self.profile = _resolve_profile(profile)
        self.seed = seed
        self.model_handshake = model_handshake
        self._rng = {UP: random.Random(f"{seed}-up"), DOWN: random.Random(f"{seed}-down"),
                     "handshake": random.Random(f"{seed}-handshake")}
        self.delays_ms: dict[str, deque] = {UP: deque(maxlen=history), DOWN: deque(maxlen=history)}
        """The delay (latency + jitter) drawn for each burst of chunks, per direction, most recent
        last."""
        self._timing = {UP: {"aim_early": 0.0}, DOWN: {"aim_early": 0.0}}
        self.handshake_ms: dict[int, float] = {}
        """Connection id -> the modelled TCP handshake wait it paid, in ms."""
        self._lanes: dict[tuple[int, str], _Lane] = {}

    @classmethod
    def for_lab(cls, lab, profile: str | Profile | None = None, **options) -> NetemProxy:
        """A proxy in front of a running LabServer (not started: use `with` or `.start()`)."""
        return cls(lab.host, lab.port, profile, **options)

    def url(self, scheme: str = "http", path: str = "") -> str:
        """The URL through the emulated network, e.g. net.url("ws", "/ws/echo")."""
        return super().url(scheme, path)

    def toxics(self, direction: str) -> Toxics:
        return self.profile.upstream if direction == UP else self.profile.downstream

    def _draw_ms(self, toxics: Toxics, rng: random.Random) -> float:
        jitter = rng.uniform(-toxics.jitter, toxics.jitter) if toxics.jitter else 0.0
        return max(0.0, toxics.latency + jitter)

    def new_loop(self) -> asyncio.AbstractEventLoop:
        """A select()-based loop: its timers have microsecond resolution where epoll's have
        milliseconds (the delays are the point of this proxy)."""
        return asyncio.SelectorEventLoop(selectors.SelectSelector())

    # -- hooks -------------------------------------------------------------------------------
    async def on_connect(self, conn: Connection) -> None:
        """Model the TCP handshake: one round trip before the first byte goes through."""
        if not self.model_handshake or self.profile.rtt_ms <= 0:
            self.handshake_ms[conn.id] = 0.0
            return
        rng = self._rng["handshake"]
        wait = self._draw_ms(self.profile.upstream, rng) + self._draw_ms(self.profile.downstream, rng)
        self.handshake_ms[conn.id] = wait
        await asyncio.sleep(wait / 1000)

    async def deliver(self, conn: Connection, direction: str, data: bytes, writer) -> None:
        """Schedule `data` for time now + serialisation + delay; return at once (pipelining)."""
        lane = self._lanes.get((conn.id, direction))
        if lane is None:
            lane = self._lanes[conn.id, direction] = _Lane(writer, self._timing[direction])
        toxics = self.toxics(direction)
        now = asyncio.get_running_loop().time()
        if now - lane.last_read >= BURST_GAP:
            lane.burst_delay_ms = self._draw_ms(toxics, self._rng[direction])
            self.delays_ms[direction].append(lane.burst_delay_ms)
        lane.last_read = now
        if toxics.rate:
            step = max(1, int(toxics.rate * KB * SLICE_SECONDS))
            pieces = [data[i:i + step] for i in range(0, len(data), step)]
        else:
            pieces = [data]
        for piece in pieces:
            start = max(now, lane.link_free)
            lane.link_free = start + (len(piece) / (toxics.rate * KB) if toxics.rate else 0.0)
            due = max(lane.last_due, lane.link_free + lane.burst_delay_ms / 1000)
            lane.last_due = due
            await lane.put(due, piece)

    async def on_eof(self, conn: Connection, direction: str, writer) -> None:
        """Let every delayed chunk of this direction go out before the EOF follows them."""
        lane = self._lanes.pop((conn.id, direction), None)
        if lane is not None:
            await lane.finish()

    async def on_disconnect(self, conn: Connection) -> None:
        """Drop what is still queued for a connection that was cut."""
        for direction in (UP, DOWN):
            lane = self._lanes.pop((conn.id, direction), None)
            if lane is not None:
                await lane.cancel()


__all__ = ["KB", "PROFILES", "NetemProxy", "Profile", "Toxics", "profile"]
