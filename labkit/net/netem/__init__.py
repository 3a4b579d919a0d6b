"""NetemProxy: an emulated network link between a client and the lab server, with switchable faults.

Put it between a client and the lab server and every byte pays what the link's model says:

    with NetemProxy.for_lab(lab, "4g") as net:
        lk.rest(net.url()).get("/healthz")      # ~2 round trips of a 4G network

Faults ("toxics", named after toxiproxy's where they match) can be switched on and off while
connections are open, e.g. to cut a live WebSocket while a widget watches:

    net = NetemProxy.for_lab(lab, "4g").start()
    ws = lk.websocket(net.url("ws"), "/ws/echo")
    net.toxic("timeout")                          # blackhole: nothing passes, nothing is closed
    net.clear("timeout")                          # the link works again
    net.toxic("reset_peer", after_ms=500)         # RST to both peers 0.5 s from now
    net.toxic("idle_timeout", seconds=2)          # a load balancer closing idle connections
    net.toxic("refuse_upgrade")                   # a plain-HTTP proxy: WebSocket upgrades get 403
    net.toxic("loss", probability=0.05, rto_ms=200, seed=1)   # modelled retransmission stalls
    net.active_toxics                             # {"idle_timeout": {...}, ...}
    net.clear()                                   # every toxic off
    net.stop()

What it models, per direction (upstream: client -> server, downstream: server -> client):

- `latency` (ms): a fixed one-way delay (toxiproxy "latency"); `jitter` (ms): an extra delay per
  burst of chunks, uniform in [-jitter, +jitter], drawn from a seeded generator so a run repeats.
  Delays pipeline: a chunk read at time t leaves at t + delay without holding up the chunks after
  it, and a chunk never overtakes the one before it in its direction.
- `rate` (KB/s, 1 KB = 1000 bytes): the bandwidth of the LINK. All connections of one proxy share
  each direction's rate and one first-in-first-out queue in front of it, as flows share a real
  bottleneck: four parallel downloads together get the rate, not four times it (first come,
  first served: equal shares are not promised). The queue holds at most
  max(64 KiB, bandwidth-delay product) of link time; when it is full the proxy stops reading and
  TCP flow control holds the senders back.
- The TCP handshake: the kernel completes it with the proxy's listening socket before the proxy's
  code sees the connection, and user space cannot delay a SYN/ACK. So the proxy adds it back: a
  new connection waits one configured round trip before its first byte is forwarded
  (`handshake_ms` records the wait per connection). TLS needs no model: its handshake is ordinary
  bytes and pays its own round trips.
- TCP slow start (a model, like the handshake): a new connection may send an initial window of
  INITIAL_WINDOW = 10 segments of MSS = 1460 bytes (RFC 6928) per direction. A round ends when
  its first bytes are acknowledged: one way back after they reached the far end, and at least
  one configured round trip after the round began. A round that filled the window doubles it;
  when the window covers the bandwidth-delay product (rate x round trip) slow start is over and
  only the link limits the connection (with no rate the window keeps doubling). So a 256 kB
  answer on a new intercontinental connection takes five rounds (14.6 + 29.2 + 58.4 + 116.8 kB,
  then the rest), not one: `slow_start_rounds(size, bdp=...)` does the arithmetic. Bytes the
  window does not allow yet stay unread in the sender's socket, as in a real sender's buffer.

What it does not model: packet loss and retransmission (except as the `loss` toxic's stall),
reordering, duplication, congestion control after slow start (a loss never halves a window;
a window never shrinks after idle), the receiver's window, Nagle's algorithm and delayed ACKs,
queueing delay in the slow-start rounds beyond the first bytes of a round, per-packet header
bytes (the counters count the bytes the end points wrote), and any head-of-line blocking unless
the loss toxic is on. The model is good for the lessons' questions (how many round trips, how
many bytes, who waits for whom); it is not a packet-level simulator.

Faults (`net.toxic(kind, **params)` on, `net.clear(kind=None)` off; they apply to connections
already open and to new ones, from the moment they are switched on):

- `"timeout"` (toxiproxy "timeout" with timeout=0), `direction="both"`: a blackhole. Bytes read
  are dropped, nothing is closed, and an end point that closes or resets is not passed on while
  the toxic is on: a half-open connection where neither side knows. `clear` lets later bytes and
  held ends through (the dropped bytes stay lost). The kernel still accepts new connections.
- `"reset_peer"`: `after_ms=` (default 0: at once) or `after_bytes=` (bytes forwarded in
  `direction`, default both ways counted together, since the toxic reached the connection): close
  both sockets with SO_LINGER 0, so both peers get an RST. With after_bytes exactly that many bytes
  go through before the reset. A connection opened while the toxic is on gets the same treatment.
- `"idle_timeout"`: `seconds=`: close (FIN to both sides) a connection that carried no byte in
  either direction for that long, like nginx's proxy_read_timeout or an AWS ALB's idle timeout
  (both default to 60 s). Any byte, a ping frame too, restarts the clock.
- `"refuse_upgrade"`: `status=403`: a proxy that speaks only plain HTTP. A request carrying
  `Upgrade: websocket` is not forwarded; the client gets a plain HTTP `status` answer one
  downstream delay later and the connection is closed. Connections already upgraded stay up.
- `"loss"`: `probability=`, `rto_ms=200`, `seed=0`, `direction="both"`. A user-space proxy sees a
  byte stream, not segments, so it cannot drop one; it models what a lost segment costs the
  application: each chunk counts as ceil(bytes / MSS) segments, each lost with `probability`
  (seeded per connection and direction), and a chunk with a lost segment arrives `rto_ms` late,
  with every later byte of that connection and direction waiting behind it (head-of-line
  blocking). Other connections are not held up. 200 ms is Linux's minimum retransmission timeout;
  fast retransmit and tail-loss probes often recover in one or two round trips instead, so the
  stall is at the slow end of what TCP does. `losses` lists every modelled loss.

The proxy runs in its own process (started by `start()`, controlled over a pipe), so its timers
do not wait for the kernel's GIL while a cell, the lab server or a client computes. The process
ends with `stop()`, when the NetemProxy is garbage collected, at interpreter exit, and by itself
when the pipe closes (the kernel died). `process=False` runs it on a thread of this process
instead (the way it ran before; benchmarks/netem_fidelity.py compares the two). `lateness_ms`
shows the link's own timing error: how late it wrote each chunk after its due time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import re
import selectors
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .proxy import DOWN, UP, Connection, TcpProxy

KB = 1000
"""Bytes in the KB of `rate` (toxiproxy's bandwidth toxic counts rate in KB/s)."""

MSS = 1460
"""Maximum segment size assumed by the slow-start and loss models: a 1500-byte Ethernet MTU minus
20 bytes of IPv4 and 20 of TCP header."""

INITIAL_WINDOW = 10
"""Segments a new connection may send before its first acknowledgement (RFC 6928)."""

SLICE_SECONDS = 0.005
"""Under a bandwidth limit, chunks are cut into slices of at most this much link time, so a large
transfer trickles out smoothly instead of arriving in 64 KiB bursts."""

MAX_AIM_EARLY = 0.002
"""Most a lane wakes early (s). A sleeping event loop wakes late: epoll rounds its timeout to whole
milliseconds (so the proxy's loop uses select(), which takes microseconds), and the process must
then be scheduled, typically 0.1-0.4 ms. Each direction keeps a running estimate of how late it
delivered and aims that much early, so the delays stay centred on the configured ones."""

BURST_GAP = 0.001
"""Chunks read less than this many seconds apart in one direction form a burst (say, the headers
and the body of one request) and share one jitter draw: packets sent back to back meet the same
queues on a real path. Independent draws would delay a two-chunk HTTP message by the larger of two
draws, a bias against HTTP that a real network does not have."""

MIN_QUEUE_BYTES = 65536
"""Smallest bottleneck queue per direction; the queue is max(this, bandwidth-delay product)."""

MAX_QUEUED_SLICES = 256
"""Slices waiting per connection and direction before its reader pauses."""

START_TIMEOUT = 10.0
"""Seconds start() waits for the proxy process to listen (and a control call for its answer)."""

TOXIC_KINDS = ("timeout", "reset_peer", "idle_timeout", "refuse_upgrade", "loss")
"""The faults `NetemProxy.toxic` knows (see the module docstring)."""

_DIRECTIONS = {"both": (UP, DOWN), "up": (UP,), "upstream": (UP,), "down": (DOWN,),
               "downstream": (DOWN,)}
_UPGRADE = re.compile(rb"(?im)^upgrade:[ \t]*websocket")
_REASONS = {400: "Bad Request", 403: "Forbidden", 426: "Upgrade Required", 501: "Not Implemented",
            502: "Bad Gateway", 503: "Service Unavailable"}


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


_resolve_profile = profile


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


# -- faults: checked in the caller's process, applied in the proxy's ----------------------------
def check_toxic(kind: str, params: dict) -> dict:
    """The parameters of a toxic with defaults filled in; ValueError for anything wrong."""
    def number(name, value, low=0.0, high=math.inf):
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise ValueError(f"toxic {kind!r}: {name} must be a number in [{low:g}, {high:g}], "
                             f"got {value!r}")
        return value

    def direction(value):
        if value not in _DIRECTIONS:
            raise ValueError(f"toxic {kind!r}: direction must be 'both', 'up' or 'down', got {value!r}")
        return value

    defaults = {
        "timeout": {"direction": "both"},
        "reset_peer": {"after_ms": None, "after_bytes": None, "direction": "both"},
        "idle_timeout": {"seconds": None},
        "refuse_upgrade": {"status": 403},
        "loss": {"probability": None, "rto_ms": 200.0, "seed": 0, "direction": "both"},
    }
    if kind not in defaults:
        raise ValueError(f"unknown toxic {kind!r}; choose one of {', '.join(TOXIC_KINDS)}")
    unknown = set(params) - set(defaults[kind])
    if unknown:
        raise ValueError(f"toxic {kind!r} takes {', '.join(defaults[kind])}; "
                         f"not {', '.join(sorted(unknown))}")
    p = {**defaults[kind], **params}
    if "direction" in p:
        direction(p["direction"])
    if kind == "reset_peer":
        if p["after_ms"] is not None and p["after_bytes"] is not None:
            raise ValueError("toxic 'reset_peer': give after_ms or after_bytes, not both")
        if p["after_bytes"] is None:
            p["after_ms"] = number("after_ms", 0 if p["after_ms"] is None else p["after_ms"])
        elif isinstance(p["after_bytes"], bool) or not isinstance(p["after_bytes"], int) \
                or p["after_bytes"] < 0:
            raise ValueError(f"toxic 'reset_peer': after_bytes must be a whole number >= 0, "
                             f"got {p['after_bytes']!r}")
    elif kind == "idle_timeout":
        if p["seconds"] is None:
            raise ValueError("toxic 'idle_timeout' needs seconds=, e.g. net.toxic('idle_timeout', "
                             "seconds=60)")
        number("seconds", p["seconds"], 0.001)
    elif kind == "refuse_upgrade":
        if p["status"] not in _REASONS:
            raise ValueError(f"toxic 'refuse_upgrade': status must be one of "
                             f"{', '.join(map(str, _REASONS))}, got {p['status']!r}")
    elif kind == "loss":
        if p["probability"] is None:
            raise ValueError("toxic 'loss' needs probability=, e.g. net.toxic('loss', probability=0.02)")
        number("probability", p["probability"], 0.0, 1.0)
        number("rto_ms", p["rto_ms"])
        if isinstance(p["seed"], bool) or not isinstance(p["seed"], int | str):
            raise ValueError(f"toxic 'loss': seed must be an int or a str, got {p['seed']!r}")
    return p


# -- the engine: runs in the proxy's process (or thread) ------------------------------------------
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


class _Flow:
    """Slow-start state of one direction of one connection."""

    def __init__(self, window: int, open_: bool):
        self.window = window
        self.open = open_
        self.round_start: float | None = None
        self.round_sent = 0
        self.round_acked_at: float | None = None  # when the round's first bytes are acknowledged


@dataclass
class _ConnState:
    conn: Connection
    flows: dict
    lanes: dict = field(default_factory=dict)
    last_activity: float = 0.0
    upgraded: bool = False
    refused: bool = False
    head_tail: bytes = b""
    reset_budget: int | None = None
    reset_dirs: tuple = ()
    timers: dict = field(default_factory=dict)
    loss_rng: dict = field(default_factory=dict)
    sent: dict = field(default_factory=lambda: {UP: 0, DOWN: 0})


class NetemEngine(TcpProxy):
    """The emulated link itself (a TcpProxy); NetemProxy runs one in its own process."""

    def __init__(self, target_host: str, target_port: int, profile: Profile, *, seed: int = 0,
                 model_handshake: bool = True, slow_start: bool = True, host: str = "127.0.0.1",
                 port: int = 0, history: int = 10_000):
        super().__init__(target_host, target_port, host=host, port=port)
        self.profile = profile
        self.model_handshake, self.slow_start = model_handshake, slow_start
        self._rng = {UP: random.Random(f"{seed}-up"), DOWN: random.Random(f"{seed}-down"),
                     "handshake": random.Random(f"{seed}-handshake")}
        self.delays_ms: dict[str, deque] = {UP: deque(maxlen=history), DOWN: deque(maxlen=history)}
        self._timing = {d: {"aim_early": 0.0, "late_ms": deque(maxlen=history)} for d in (UP, DOWN)}
        self.handshake_ms: dict[int, float] = {}
        self.losses: deque = deque(maxlen=history)
        self.toxics_on: dict[str, dict] = {}
        self._states: dict[int, _ConnState] = {}
        self._links: dict[str, _Link] = {}
        self._unblocked: asyncio.Event | None = None

    def new_loop(self) -> asyncio.AbstractEventLoop:
        """A select()-based loop: its timers have microsecond resolution where epoll's have
        milliseconds (the delays are the point of this proxy). select() handles file descriptors
        below 1024, so one proxy carries up to about 500 connections at a time."""
        return asyncio.SelectorEventLoop(selectors.SelectSelector())

    async def serve(self) -> NetemEngine:
        rtt_s = self.profile.rtt_ms / 1000
        self._links = {UP: _Link(self.profile.upstream, rtt_s),
                       DOWN: _Link(self.profile.downstream, rtt_s)}
        self._unblocked = asyncio.Event()
        self._unblocked.set()
        return await super().serve()

    def toxics(self, direction: str) -> Toxics:
        return self.profile.upstream if direction == UP else self.profile.downstream

    def _draw_ms(self, toxics: Toxics, rng: random.Random) -> float:
        jitter = rng.uniform(-toxics.jitter, toxics.jitter) if toxics.jitter else 0.0
        return max(0.0, toxics.latency + jitter)

    # -- control ---------------------------------------------------------------------------------
    async def command(self, op: str, args: dict):
        """One control call (from NetemProxy): stats, delays, toxic, clear."""
        if op == "stats":
            return {"connections": [c.as_dict() for c in self.connections],
                    "handshake_ms": self.handshake_ms, "losses": list(self.losses),
                    "toxics": self.toxics_on}
        if op == "delays":
            return {d: list(v) for d, v in self.delays_ms.items()}
        if op == "lateness":
            return {d: list(self._timing[d]["late_ms"]) for d in (UP, DOWN)}
        if op == "toxic":
            self.set_toxic(args["kind"], check_toxic(args["kind"], args.get("params", {})))
            return self.toxics_on
        if op == "clear":
            self.clear_toxic(args.get("kind"))
            return self.toxics_on
        raise ValueError(f"unknown control call {op!r}")

    def set_toxic(self, kind: str, params: dict) -> None:
        self.clear_toxic(kind)
        self.toxics_on[kind] = params
        if kind == "timeout":
            self._unblocked.clear()
        for state in list(self._states.values()):
            self._apply(state, kind, params)

    def clear_toxic(self, kind: str | None = None) -> None:
        for name in [kind] if kind else list(self.toxics_on):
            if self.toxics_on.pop(name, None) is None:
                continue
            if name == "timeout":
                self._unblocked.set()
            for state in self._states.values():
                timer = state.timers.pop(name, None)
                if timer is not None:
                    timer.cancel()
                if name == "reset_peer":
                    state.reset_budget = None

    def _apply(self, state: _ConnState, kind: str, params: dict) -> None:
        """Start what a toxic does to one connection (timers, budgets, generators)."""
        if kind == "reset_peer":
            if params["after_bytes"] is not None and params["after_bytes"] > 0:
                state.reset_budget = params["after_bytes"]
                state.reset_dirs = _DIRECTIONS[params["direction"]]
            else:
                state.timers[kind] = asyncio.create_task(
                    self._reset_later(state, (params["after_ms"] or 0) / 1000))
        elif kind == "idle_timeout":
            state.timers[kind] = asyncio.create_task(self._watch_idle(state, params["seconds"]))
        elif kind == "loss":
            seed = params["seed"]
            state.loss_rng = {d: random.Random(f"{seed}-loss-{state.conn.id}-{d}") for d in (UP, DOWN)}

    async def _reset_later(self, state: _ConnState, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        self.cut(state.conn, "reset_peer", reset=True)

    async def _watch_idle(self, state: _ConnState, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        while (wait := state.last_activity + seconds - loop.time()) > 0:
            await asyncio.sleep(wait)
        self.cut(state.conn, "idle_timeout")

    def _blackholed(self, direction: str) -> bool:
        toxic = self.toxics_on.get("timeout")
        return toxic is not None and direction in _DIRECTIONS[toxic["direction"]]

    # -- hooks -----------------------------------------------------------------------------------
    async def on_connect(self, conn: Connection) -> None:
        """Set the connection up (toxics already on apply to it), then model the TCP handshake:
        one round trip before the first byte goes through."""
        loop = asyncio.get_running_loop()
        flows = {d: _Flow(INITIAL_WINDOW * MSS,
                          not self.slow_start or self.profile.rtt_ms <= 0
                          or self._links[d].bdp <= INITIAL_WINDOW * MSS) for d in (UP, DOWN)}
        state = self._states[conn.id] = _ConnState(conn, flows, last_activity=loop.time())
        for kind, params in self.toxics_on.items():
            self._apply(state, kind, params)
        if not self.model_handshake or self.profile.rtt_ms <= 0:
            self.handshake_ms[conn.id] = 0.0
            return
        rng = self._rng["handshake"]
        wait = self._draw_ms(self.profile.upstream, rng) + self._draw_ms(self.profile.downstream, rng)
        self.handshake_ms[conn.id] = wait
        await asyncio.sleep(wait / 1000)

    async def deliver(self, conn: Connection, direction: str, data: bytes, writer) -> None:
        """Apply the toxics to a chunk just read, then schedule it on the link (see _send)."""
        state = self._states[conn.id]
        now = asyncio.get_running_loop().time()
        state.last_activity = now
        if state.refused or self._blackholed(direction):
            return  # dropped
        if not state.upgraded:
            if direction == DOWN and data.startswith(b"HTTP/1.1 101"):
                state.upgraded = True
            elif direction == UP and "refuse_upgrade" in self.toxics_on:
                scan = state.head_tail + data
                state.head_tail = scan[-2048:]
                if _UPGRADE.search(scan):
                    await self._refuse(state, self.toxics_on["refuse_upgrade"]["status"])
                    return
        reset_after = False
        if state.reset_budget is not None and direction in state.reset_dirs:
            if len(data) >= state.reset_budget:
                data, reset_after = data[:state.reset_budget], True
            state.reset_budget -= len(data)
        await self._send(state, direction, data, writer, now)
        if reset_after:
            state.reset_budget = None
            state.refused = True  # nothing more passes
            lane = state.lanes[direction]
            await lane.put(lane.last_due, lambda: self.cut(conn, "reset_peer", reset=True))

    async def _refuse(self, state: _ConnState, status: int) -> None:
        """Answer a WebSocket upgrade as a plain-HTTP proxy would, then close."""
        state.refused = True
        body = (f"{status} {_REASONS[status]}: this proxy forwards plain HTTP only, "
                "not WebSocket upgrades.\n").encode()
        answer = (f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: text/plain; charset=utf-8"
                  f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
        now = asyncio.get_running_loop().time()
        await self._send(state, DOWN, answer, state.conn.client, now)
        lane = state.lanes[DOWN]
        await lane.put(lane.last_due, lambda: self.cut(state.conn, "refuse_upgrade"))

    async def _window_room(self, flow: _Flow, link: _Link, loop) -> float:
        """Bytes the slow-start window lets this direction send now; sleeps while it is full."""
        while not flow.open:
            now = loop.time()
            if flow.round_start is not None:
                acked = flow.round_acked_at or flow.round_start + self.profile.rtt_ms / 1000
                if now >= acked:  # the round is acknowledged: a round that filled the window doubles it
                    if flow.round_sent >= flow.window:
                        flow.window *= 2
                        flow.open = flow.window >= link.bdp
                    flow.round_start = None
                    continue
                if flow.round_sent >= flow.window:
                    await asyncio.sleep(acked - now)
                    continue
            else:
                flow.round_start, flow.round_sent, flow.round_acked_at = now, 0, None
            return flow.window - flow.round_sent
        return math.inf

    async def _send(self, state: _ConnState, direction: str, data: bytes, writer, now: float) -> None:
        """Schedule `data` for its due time: slow-start window, shared link, delay, loss."""
        loop = asyncio.get_running_loop()
        lane = state.lanes.get(direction)
        if lane is None:
            lane = state.lanes[direction] = _Lane(writer, self._timing[direction], state)
        link, flow, toxics = self._links[direction], state.flows[direction], self.toxics(direction)
        if now - lane.last_read >= BURST_GAP:
            lane.burst_delay_ms = self._draw_ms(toxics, self._rng[direction])
            self.delays_ms[direction].append(lane.burst_delay_ms)
        lane.last_read = now
        step = max(1, int(link.rate * SLICE_SECONDS)) if link.rate else len(data)
        back_ms = self.toxics(UP if direction == DOWN else DOWN).latency
        pos = 0
        while pos < len(data):
            room = await self._window_room(flow, link, loop)
            piece = data[pos:pos + int(min(step, room, len(data) - pos))]
            pos += len(piece)
            now = loop.time()
            if link.rate:
                while (backlog := link.free_at - now) > link.queue_s:  # the queue is full: wait
                    await asyncio.sleep(backlog - link.queue_s)
                    now = loop.time()
                link.free_at = max(now, link.free_at) + len(piece) / link.rate
                leaves = link.free_at
            else:
                leaves = now
            stall = self._loss_stall(state, direction, piece)
            due = max(lane.last_due, leaves + lane.burst_delay_ms / 1000 + stall)
            lane.last_due = due
            if not flow.open:
                flow.round_sent += len(piece)
                if flow.round_acked_at is None:  # the round's first bytes arrive, the ACK returns
                    flow.round_acked_at = max(flow.round_start + self.profile.rtt_ms / 1000,
                                              due + back_ms / 1000)
            state.sent[direction] += len(piece)
            await lane.put(due, piece)

    def _loss_stall(self, state: _ConnState, direction: str, piece: bytes) -> float:
        """Seconds this piece waits for a modelled retransmission (0 unless the loss toxic hits it);
        bytes after it wait behind it, since a lane never lets a chunk overtake."""
        toxic = self.toxics_on.get("loss")
        if toxic is None or direction not in _DIRECTIONS[toxic["direction"]] or not state.loss_rng:
            return 0.0
        rng = state.loss_rng[direction]
        segments = max(1, math.ceil(len(piece) / MSS))
        lost = sum(rng.random() < toxic["probability"] for _ in range(segments))
        if not lost:
            return 0.0
        self.losses.append({"conn": state.conn.id, "direction": direction,
                            "offset": state.sent[direction], "bytes": len(piece),
                            "segments_lost": lost, "stall_ms": toxic["rto_ms"],
                            "t_ns": time.perf_counter_ns()})
        return toxic["rto_ms"] / 1000

    async def on_eof(self, conn: Connection, direction: str, writer) -> None:
        """Let every delayed chunk of this direction go out before the EOF follows them."""
        state = self._states.get(conn.id)
        lane = state.lanes.pop(direction, None) if state else None
        if lane is not None:
            await lane.finish()

    async def on_end(self, conn: Connection, direction: str) -> None:
        """While a blackhole covers `direction`, its end is not passed on (half-open)."""
        while self._blackholed(direction):
            await self._unblocked.wait()

    async def on_disconnect(self, conn: Connection) -> None:
        """Drop what is still queued for a connection that ended; stop its timers."""
        state = self._states.pop(conn.id, None)
        if state is None:
            return
        for timer in state.timers.values():
            timer.cancel()
        for lane in state.lanes.values():
            await lane.cancel()


# -- the proxy process -----------------------------------------------------------------------------
def _child_main(config_json: str) -> None:
    """Entry point of the proxy process: serve, answer control lines on stdin, exit at its EOF."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupted kernel must not kill the link
    config = json.loads(config_json)
    config["profile"] = Profile.from_dict(config["profile"])
    target = config.pop("target")
    engine = NetemEngine(*target, **config)
    loop = engine.new_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_child_serve(engine))
    finally:
        loop.close()


async def _child_serve(engine: NetemEngine) -> None:
    loop = asyncio.get_running_loop()
    out = sys.stdout.fileno()

    def reply(message) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(out, data):]

    try:
        await engine.serve()
    except OSError as exc:
        reply({"error": f"cannot listen on {engine.host}:{engine.port}: {exc}"})
        return
    reply({"port": engine.port})
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            request = json.loads(line)
            try:
                reply({"ok": await engine.command(request["op"], request.get("args", {}))})
            except (ValueError, KeyError, TypeError) as exc:
                reply({"error": str(exc)})
    finally:
        await engine.aclose()


class _ProcessBackend:
    """A NetemEngine in a child process, driven by JSON lines over its stdin and stdout."""

    def __init__(self, config: dict):
        self.config = config
        self.proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._buffer = b""

    def start(self) -> int:
        package_root = str(Path(__file__).resolve().parents[2])  # the folder that holds labkit/
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the process)
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-m", "labkit.net.netem", json.dumps(self.config)],  # -S: start faster
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env,
            start_new_session=True, close_fds=True)
        try:
            answer = self._read()
        except BaseException:
            self.stop()
            raise
        if "error" in answer:
            self.stop()
            raise OSError(answer["error"])
        return answer["port"]

    def _read(self) -> dict:
        deadline = time.monotonic() + START_TIMEOUT
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise TimeoutError(f"the netem proxy process did not answer in {START_TIMEOUT} s")
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    self._stderr.seek(0)
                    detail = self._stderr.read().decode(errors="replace").strip().splitlines()[-3:]
                    raise RuntimeError("the netem proxy process ended: " + " | ".join(detail))
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def call(self, op: str, **args):
        with self._lock:
            self.proc.stdin.write((json.dumps({"op": op, "args": args}) + "\n").encode())
            self.proc.stdin.flush()
            answer = self._read()
        if "error" in answer:
            raise ValueError(answer["error"])
        return answer["ok"]

    def stop(self) -> None:
        _end_process(self.proc)
        self._stderr.close()


def _end_process(proc: subprocess.Popen | None) -> None:
    """Close the control pipe (the process then stops by itself), kill it if it does not."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(OSError, ValueError):
        proc.stdin.close()
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(3)
    with contextlib.suppress(OSError, ValueError):
        proc.stdout.close()


class _ThreadBackend:
    """A NetemEngine on a daemon thread of this process (shares this interpreter's GIL)."""

    def __init__(self, config: dict):
        config = dict(config)
        config["profile"] = Profile.from_dict(config["profile"])
        self.engine = NetemEngine(*config.pop("target"), **config)

    def start(self) -> int:
        self.engine.start()
        return self.engine.port

    def call(self, op: str, **args):
        future = asyncio.run_coroutine_threadsafe(self.engine.command(op, args), self.engine.loop)
        return json.loads(json.dumps(future.result(START_TIMEOUT)))

    def stop(self) -> None:
        self.engine.stop()


# -- the public face ---------------------------------------------------------------------------
class NetemProxy:
    """An emulated link in front of `target_host:target_port`, as `profile` says.

    profile: a name from PROFILES, a Profile, or None for no emulation.
    seed: seeds the jitter, so the same seed and the same traffic give the same delays.
    model_handshake: make each new connection wait one round trip (see the module docstring).
    slow_start: make new connections ramp up as TCP slow start does (see the module docstring).
    process: run the link in its own process (default) or, with False, on a thread of this one.
    """

    def __init__(self, target_host: str, target_port: int, profile: str | Profile | None = None,
                 *, seed: int = 0, model_handshake: bool = True, slow_start: bool = True,
                 host: str = "127.0.0.1", port: int = 0, history: int = 10_000,
                 process: bool = True):
        self.target = (target_host, target_port)
        self.host, self.port = host, port
        self.profile = _resolve_profile(profile)
        self.seed = seed
        self.model_handshake, self.slow_start, self.process = model_handshake, slow_start, process
        self._config = {"target": [target_host, target_port], "profile": asdict(self.profile),
                        "seed": seed, "model_handshake": model_handshake, "slow_start": slow_start,
                        "host": host, "port": port, "history": history}
        self._backend = None
        self._finalizer = None
        self._pending_toxics: dict[str, dict] = {}
        self._last = {"connections": [], "handshake_ms": {}, "losses": [], "toxics": {},
                      "delays": {UP: [], DOWN: []}}

    @classmethod
    def for_lab(cls, lab, profile: str | Profile | None = None, **options) -> NetemProxy:
        """A proxy in front of a running LabServer (not started: use `with` or `.start()`)."""
        return cls(lab.host, lab.port, profile, **options)

    def url(self, scheme: str = "http", path: str = "") -> str:
        """The URL through the emulated network, e.g. net.url("ws", "/ws/echo")."""
        return f"{scheme}://{self.host}:{self.port}{path}"

    def toxics(self, direction: str) -> Toxics:
        """The profile's delay and rate knobs for `direction` ("up" or "down")."""
        return self.profile.upstream if direction == UP else self.profile.downstream

    def __repr__(self) -> str:
        state = f"listening on {self.url()}" if self._backend else "not started"
        toxics = ", ".join(self.active_toxics) or "none"
        return (f"<NetemProxy {self.profile.name} -> {self.target[0]}:{self.target[1]}, {state}, "
                f"toxics: {toxics}>")

    # -- faults ----------------------------------------------------------------------------------
    def toxic(self, kind: str, **params) -> NetemProxy:
        """Switch a fault on now (see the module docstring); again with new params replaces it."""
        checked = check_toxic(kind, params)
        if self._backend is None:
            self._pending_toxics[kind] = checked
        else:
            self._last["toxics"] = self._backend.call("toxic", kind=kind, params=checked)
        return self

    def clear(self, kind: str | None = None) -> NetemProxy:
        """Switch one fault off, or every fault with kind=None."""
        if kind is not None and kind not in TOXIC_KINDS:
            raise ValueError(f"unknown toxic {kind!r}; choose one of {', '.join(TOXIC_KINDS)}")
        if self._backend is None:
            self._pending_toxics = {} if kind is None else {
                k: v for k, v in self._pending_toxics.items() if k != kind}
        else:
            self._last["toxics"] = self._backend.call("clear", kind=kind)
        return self

    @property
    def active_toxics(self) -> dict[str, dict]:
        """The faults switched on now, with their parameters."""
        if self._backend is None:
            return dict(self._pending_toxics)
        return dict(self._last["toxics"])

    # -- what happened ---------------------------------------------------------------------------
    def _stats(self) -> dict:
        if self._backend is not None:
            self._last.update(self._backend.call("stats"))
        return self._last

    @property
    def connections(self) -> list[Connection]:
        """Every connection so far (id, opened_ns, closed_ns, bytes, ended_by), oldest first."""
        return [Connection(**c) for c in self._stats()["connections"]]

    @property
    def bytes_up(self) -> int:
        """Bytes client -> server over every connection so far (as read by the proxy)."""
        return sum(c["bytes"][UP] for c in self._stats()["connections"])

    @property
    def bytes_down(self) -> int:
        """Bytes server -> client over every connection so far (as read by the proxy)."""
        return sum(c["bytes"][DOWN] for c in self._stats()["connections"])

    @property
    def handshake_ms(self) -> dict[int, float]:
        """Connection id -> the modelled TCP handshake wait it paid, in ms."""
        return {int(k): v for k, v in self._stats()["handshake_ms"].items()}

    @property
    def losses(self) -> list[dict]:
        """Every loss the loss toxic modelled: conn, direction, offset (bytes of that direction
        before the chunk), bytes, segments_lost, stall_ms, t_ns (perf_counter_ns when the chunk
        was scheduled; the same clock in every process on Linux)."""
        return list(self._stats()["losses"])

    @property
    def delays_ms(self) -> dict[str, list[float]]:
        """The delay (latency + jitter) drawn for each burst of chunks, per direction, oldest
        first."""
        if self._backend is not None:
            self._last["delays"] = self._backend.call("delays")
        return self._last["delays"]

    @property
    def lateness_ms(self) -> dict[str, list[float]]:
        """Per direction, how late each chunk was written compared with its due time, in ms (negative:
        early), oldest first: the emulator's own timing error on the sending side, not the
        client's or the server's. A chunk read late is not counted here (its due time is set when
        it is read)."""
        if self._backend is not None:
            self._last["lateness"] = self._backend.call("lateness")
        return self._last.get("lateness", {UP: [], DOWN: []})

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> NetemProxy:
        """Start the link (its own process by default); returns once it listens."""
        if self._backend is not None:
            return self
        backend = (_ProcessBackend if self.process else _ThreadBackend)(self._config)
        self.port = backend.start()
        self._backend = backend
        if isinstance(backend, _ProcessBackend):
            self._finalizer = weakref.finalize(self, _end_process, backend.proc)
        for kind, params in self._pending_toxics.items():
            self._last["toxics"] = backend.call("toxic", kind=kind, params=params)
        self._pending_toxics = {}
        return self

    def stop(self) -> None:
        """Stop the link and cut its connections; what happened stays readable. Safe twice."""
        backend, self._backend = self._backend, None
        if backend is None:
            return
        try:
            self._last.update(backend.call("stats"))
            self._last["delays"] = backend.call("delays")
            self._last["lateness"] = backend.call("lateness")
        except (OSError, ValueError, RuntimeError, TimeoutError):
            pass  # the process is gone already: keep what was last seen
        finally:
            backend.stop()
            if self._finalizer is not None:
                self._finalizer.detach()

    def __enter__(self) -> NetemProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["INITIAL_WINDOW", "KB", "MSS", "PROFILES", "TOXIC_KINDS", "NetemEngine", "NetemProxy",
           "Profile", "Toxics", "profile", "slow_start_rounds"]


if __name__ == "__main__":
    _child_main(sys.argv[1])
