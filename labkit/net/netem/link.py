"""The link model: named networks (Profile, PROFILES), TCP slow start (and its restart after idle),
and the queues a chunk waits in.

What is modelled here, and only modelled: each direction's bandwidth as one shared bottleneck with a
first-in-first-out queue (`_Link`), a one-way delay with jitter per burst of chunks (`Toxics`), the
slow-start window of each direction of each connection (`_Flow`, `slow_start_rounds`), which falls
back to the initial window after a silence (`restart_after_idle`). What is real:
the bytes, and the time a `_Lane` waits before it writes them to a real socket at their due time
(the event loop's timers, corrected by a running estimate of how late they wake: MAX_AIM_EARLY).
Profiles and `slow_start_rounds` are plain data and arithmetic that a notebook uses without a
proxy; `_Link`, `_Lane` and `_Flow` run on the engine's event loop (engine.py).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import _ConnState

KB = 1000
"""Bytes in the KB of `rate` (toxiproxy's bandwidth toxic counts rate in KB/s)."""

MSS = 1448
"""Payload bytes per segment assumed by the slow-start and loss models: a 1500-byte Ethernet MTU
minus 20 bytes of IPv4, 20 of TCP and 12 of the timestamps option Linux puts on every segment
(the SYN's MSS option says 1,460; `labkit.net.wire.MSS` is the same number)."""

RTO_MIN = 0.2
"""Linux's smallest retransmission timeout (s). A direction idle for longer than about one RTO
(round trip + RTO_MIN here) restarts slow start: see `restart_after_idle`."""

INITIAL_WINDOW = 10
"""Segments a new connection may send before its first acknowledgement (RFC 6928)."""

SLICE_SECONDS = 0.005
"""Under a bandwidth limit, chunks are cut into slices of at most this much link time, so a large
transfer trickles out smoothly instead of arriving in 64 KiB bursts."""

MAX_AIM_EARLY = 0.002
"""Most a lane wakes early (s). A sleeping event loop wakes late: epoll rounds its timeout to whole
milliseconds (so the proxy's loop waits in select() on the epoll descriptor, which takes
microseconds: `NetemEngine.new_loop`), and the process must then be scheduled, typically 0.1-0.4
ms. Each direction keeps a running estimate of how late it delivered and aims that much early, so
the delays stay centred on the configured ones."""

BURST_GAP = 0.001
"""Chunks read less than this many seconds apart in one direction form a burst (say, the headers
and the body of one request) and share one jitter draw: packets sent back to back meet the same
queues on a real path. Independent draws would delay a two-chunk HTTP message by the larger of two
draws, a bias against HTTP that a real network does not have."""

MIN_QUEUE_BYTES = 65536
"""Smallest bottleneck queue per direction; the queue is max(this, bandwidth-delay product)."""

MAX_QUEUED_SLICES = 256
"""Slices waiting per connection and direction before its reader pauses."""

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

    @classmethod
    def from_dict(cls, data: dict) -> Profile:
        return cls(data["name"], Toxics(**data["upstream"]), Toxics(**data["downstream"]),
                   data.get("source", ""))


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



def slow_start_rounds(size: int, *, mss: int = MSS, initial_window: int = INITIAL_WINDOW,
                      bdp: float = math.inf) -> int:
    """Rounds (round trips of sending) a new connection needs for `size` bytes under the slow-start
    model: the window starts at initial_window x mss and doubles per round until it covers `bdp`."""
    window, sent, rounds = initial_window * mss, 0, 0
    while sent < size:
        rounds += 1
        if window >= bdp:
            return rounds  # slow start is over: the link, not the window, sets the pace
        sent += window
        window *= 2
    return rounds


class _Link:
    """One direction's bottleneck, shared by every connection: when it is next free, how fast."""

    def __init__(self, toxics: Toxics, rtt_s: float):
        self.rate = toxics.rate * KB if toxics.rate else None
        self.free_at = 0.0
        self.bdp = self.rate * rtt_s if self.rate else math.inf
        self.queue_s = max(MIN_QUEUE_BYTES, self.bdp) / self.rate if self.rate else math.inf


class _Lane:
    """One direction of one connection on its way out: (due time, bytes or action) in order."""

    def __init__(self, writer: asyncio.StreamWriter, timing: dict, state: _ConnState):
        self.writer, self.timing, self.state = writer, timing, state
        self.queue: asyncio.Queue = asyncio.Queue(MAX_QUEUED_SLICES)
        self.last_due = 0.0
        self.last_read = -1.0
        self.burst_delay_ms = 0.0
        self.broken = False
        self.sender = asyncio.create_task(self._send_when_due())

    async def put(self, due: float, item) -> None:
        if self.broken:
            raise ConnectionResetError("the receiving end of this direction went away")
        await self.queue.put((due, item))

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
            due, item = await self.queue.get()
            if item is None:
                return
            if self.broken:
                continue  # keep draining so a producer waiting on a full queue is released
            wait = due - loop.time() - self.timing["aim_early"]
            if wait > 0:
                await asyncio.sleep(wait)
                late = loop.time() - due
                aim = self.timing["aim_early"] + 0.25 * late
                self.timing["aim_early"] = min(MAX_AIM_EARLY, max(0.0, aim))
            if callable(item):  # an action queued behind the bytes before it (reset, close)
                item()
                continue
            try:
                self.writer.write(item)
                self.state.last_activity = now = loop.time()
                self.timing["late_ms"].append((now - due) * 1000)
                await self.writer.drain()
            except (ConnectionError, OSError):
                self.broken = True


def restart_after_idle(rtt_s: float) -> float:
    """Seconds of silence after which a direction's window falls back to the initial window.

    RFC 5681 4.1: a sender that sent nothing for longer than its retransmission timeout restarts
    slow start. Linux does (net.ipv4.tcp_slow_start_after_idle = 1, the default); its timeout is
    about the smoothed round trip plus RTO_MIN while the path is steady."""
    return rtt_s + RTO_MIN


class _Flow:
    """Slow-start state of one direction of one connection."""

    def __init__(self, window: int, open_: bool):
        self.window = window
        self.open = open_
        self.round_start: float | None = None
        self.round_sent = 0
        self.round_acked_at: float | None = None  # when the round's first bytes are acknowledged
        self.last_due: float | None = None        # when this direction's last bytes left
        self.restarts = 0

