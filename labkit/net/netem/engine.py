"""NetemEngine: the emulated link itself, a TcpProxy whose hooks apply the link model and the faults.

It runs where the link runs: in the proxy's own process (backends.py), or on a thread. Real: the
listening socket, both TCP connections of each proxied connection, the bytes and their order.
Modelled (link.py): when each chunk may leave (handshake, slow-start window, shared bandwidth,
delay, jitter, loss stall). Its event loop decides how precisely the delays are kept: see
`NetemEngine.new_loop`.
"""

from __future__ import annotations

import asyncio
import math
import random
import select
import selectors
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from labkit.server.listen import Limits

from ..proxy import DOWN, IDLE_TIMEOUT_S, UP, Connection, TcpProxy
from .faults import _DIRECTIONS, _REASONS, _UPGRADE, check_toxic
from .link import (
    BURST_GAP,
    INITIAL_WINDOW,
    MSS,
    SLICE_SECONDS,
    Profile,
    Toxics,
    _Flow,
    _Lane,
    _Link,
    restart_after_idle,
)


def _fine_epoll_selector() -> type[selectors.BaseSelector] | None:
    """An epoll selector whose waits keep the microseconds of their timeout (None without epoll)."""
    if not hasattr(selectors, "EpollSelector"):
        return None

    class FineEpollSelector(selectors.EpollSelector):
        """epoll for the descriptors, select() on the one epoll descriptor for the timeout.

        epoll_wait() takes whole milliseconds, so EpollSelector rounds every timeout up: a lane due
        in 0.3 ms would wake 0.7 ms late. The epoll descriptor itself is readable exactly when one
        of its descriptors is ready, and it was created with the loop, so it is low enough for
        select(), whose timeout has microseconds: wait on it there, then collect the events with
        a zero timeout. Should it ever be 1,024 or above, waits fall back to epoll's milliseconds.
        """

        _fine = True

        def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            if self._fine and timeout is not None and timeout > 0:
                try:
                    select.select([self.fileno()], [], [], timeout)
                    timeout = 0
                except ValueError:  # descriptor out of range for select(): wait in epoll instead
                    self._fine = False
            return super().select(timeout)

    return FineEpollSelector


_FineEpollSelector = _fine_epoll_selector()


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
                 port: int = 0, history: int = 10_000, limits: dict | None = None):
        # limits: max_connections, per_peer_share (the listener's) and idle_timeout (the proxy's)
        limits = dict(limits or {})
        idle = limits.pop("idle_timeout", IDLE_TIMEOUT_S)
        super().__init__(target_host, target_port, host=host, port=port, limits=Limits(**limits),
                         idle_timeout=idle)
        self.profile = profile
        self.model_handshake, self.slow_start = model_handshake, slow_start
        self._rng = {UP: random.Random(f"{seed}-up"), DOWN: random.Random(f"{seed}-down"),
                     "handshake": random.Random(f"{seed}-handshake")}
        self.delays_ms: dict[str, deque] = {UP: deque(maxlen=history), DOWN: deque(maxlen=history)}
        self._timing: dict[str, dict[str, Any]] = {
            d: {"aim_early": 0.0, "late_ms": deque(maxlen=history)} for d in (UP, DOWN)}
        self.handshake_ms: dict[int, float] = {}
        self.losses: deque = deque(maxlen=history)
        self.restarts = 0  # slow-start restarts after idle (RFC 5681 4.1), all connections
        self.toxics_on: dict[str, dict] = {}
        self._states: dict[int, _ConnState] = {}
        self._links: dict[str, _Link] = {}
        self._unblocked = asyncio.Event()  # set: no blackhole holds bytes back (made anew in serve)
        self._unblocked.set()

    def new_loop(self) -> asyncio.AbstractEventLoop:
        """The platform's default selector, which takes any number of descriptors (select() stops
        at 1,024, about 500 connections), with timers of microsecond resolution where the platform
        has none of its own: epoll rounds its timeout up to whole milliseconds, and the delays
        are the point of this proxy (kqueue takes nanoseconds)."""
        if _FineEpollSelector is not None and selectors.DefaultSelector is selectors.EpollSelector:
            return asyncio.SelectorEventLoop(_FineEpollSelector())
        return asyncio.SelectorEventLoop(selectors.DefaultSelector())

    async def serve(self) -> NetemEngine:
        rtt_s = self.profile.rtt_ms / 1000
        self._links = {UP: _Link(self.profile.upstream, rtt_s),
                       DOWN: _Link(self.profile.downstream, rtt_s)}
        self._unblocked = asyncio.Event()
        self._unblocked.set()
        await super().serve()
        return self

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
                    "slow_start_restarts": self.restarts,
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
        self._restart_if_idle(flow, link, now)
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
            lane.last_due = flow.last_due = due
            if not flow.open:
                flow.round_sent += len(piece)
                if flow.round_acked_at is None:  # the round's first bytes arrive, the ACK returns
                    flow.round_acked_at = max(flow.round_start + self.profile.rtt_ms / 1000,
                                              due + back_ms / 1000)
            state.sent[direction] += len(piece)
            await lane.put(due, piece)

    def _restart_if_idle(self, flow: _Flow, link: _Link, now: float) -> None:
        """RFC 5681 4.1: after a silence longer than the retransmission timeout, a direction whose
        window grew starts again from the initial window (slow start restarts), as Linux does with
        net.ipv4.tcp_slow_start_after_idle = 1. Only with slow_start on; `restarts` counts them."""
        if (not self.slow_start or flow.last_due is None or self.profile.rtt_ms <= 0
                or now - flow.last_due <= restart_after_idle(self.profile.rtt_ms / 1000)):
            return
        initial = INITIAL_WINDOW * MSS
        if flow.window > initial and link.bdp > initial:
            flow.window, flow.open, flow.round_start = initial, False, None
            flow.restarts += 1
            self.restarts += 1

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

