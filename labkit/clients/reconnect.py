"""Clients that survive real networks: reconnect with backoff, resume, re-sync, de-duplicate, fall back.

    sub = lk.subscriber(lab, transport="ws").start(seconds=20)   # reads in the background
    sub.stats()        # state, last SEQ, reconnects, re-syncs, gaps, duplicates

What happens when a connection dies (a reset, a blackholed peer found by a heartbeat, a restart):

1. wait a backoff delay, exponential with full jitter (`backoff_delays`, after the AWS Architecture
   Blog's "Exponential Backoff And Jitter": delay = uniform(0, min(cap, base * 2**attempt))), so a
   thousand clients cut at once do not come back at the same instant;
2. reconnect and resume after the last SEQ it has, naming the epoch (`since=SEQ&epoch=E`, for SSE
   the `Last-Event-ID: E:SEQ`), so nothing is missed and nothing is repeated;
3. if the server's history is another one now (the lab restarted: a 409, a 428 for a resume
   that named no epoch, or a `reset` message/event), re-sync: take a snapshot (`GET /api/feed`:
   the kept events of the new epoch and its last SEQ), hand it to the app, then resume from that
   SEQ (snapshot + delta);
4. drop any event whose SEQ it already delivered (de-duplication), so the app sees each event once.

The WebSocket side uses the websockets library's reconnecting iterator (`async for conn in
connect(...)`) with this module's jittered delays; the URI it reconnects to is updated before each
new attempt so that it carries the current `since` and `epoch`.

Delivery semantics (`mode`):
- "at_most_once": after a cut, start again from "now": what was published meanwhile is lost
  (counted as `gaps`), nothing is repeated;
- "at_least_once": resume from the last checkpoint the app committed (every `checkpoint_every`
  events, as a consumer commits its offset): nothing is lost, but events after the checkpoint
  arrive again, and the app sees those duplicates;
- "effectively_once" (the default): at-least-once plus de-duplication by SEQ before the app:
  duplicates delivered to the app = 0.

Heartbeats: `heartbeat_s` sets the WebSocket ping interval and ping timeout (a blackholed peer is
found within about interval + timeout), SSE's read timeout (the server sends a comment line every
`heartbeat_s / 2`) and the long poll's request timeout (its `wait` plus `heartbeat_s`). Each
detection is recorded in `detections` with the mechanism that found it. heartbeat_s=None: no
heartbeat: a silent dead connection is then never noticed by the client.

Size: longer than 500 lines because one resilient subscriber over three transports (WebSocket, SSE,
long poll) shares its state machine, backoff and de-duplication; split per transport, each part
would repeat that core.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import random
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlencode

import aiohttp
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.uri import parse_uri

from labkit import _loop

from .feed import http_session, sse_blocks, target_url

PATHS = {"ws": "/ws/feed", "sse": "/sse/feed", "long_poll": "/api/feed"}
"""Where the feed is read, per transport (all three read the same Hub topic)."""
TRANSPORTS = ("ws", "sse", "long_poll")
FALLBACK = ("ws", "sse", "long_poll")
"""The order `transport="auto"` tries: WebSocket, then SSE, then long polling."""
MODES = ("at_most_once", "at_least_once", "effectively_once")
LONG_POLL_WAIT_S = 5.0
"""How long a long poll asks the server to hold it (s)."""
STOP_GRACE_S = 0.5
"""How long stop() lets the reader end by itself before cancelling it (s)."""
OPEN_TIMEOUT_S = 5.0
"""Longest a connection attempt may take before it counts as failed (s)."""


def backoff_delays(base_s: float = 0.1, cap_s: float = 5.0, *, jitter: str = "full",
                   rng: random.Random | None = None) -> Generator[float, None, None]:
    """Delays before reconnection attempts 1, 2, 3, ...: exponential, capped, with jitter.

    ceiling(n) = min(cap_s, base_s * 2**n) for attempt n = 0, 1, 2, ...;
    jitter="full": uniform(0, ceiling) (the AWS blog's "Full Jitter"); "equal": ceiling/2 +
    uniform(0, ceiling/2); "none": the ceiling itself (every client waits exactly as long).
    Pass a seeded `rng` to get the same delays again."""
    if jitter not in ("full", "equal", "none"):
        raise ValueError(f'jitter must be "full", "equal" or "none", not {jitter!r}')
    rng = rng or random.Random()
    attempt = 0
    while True:
        ceiling = min(cap_s, base_s * 2 ** min(attempt, 62))
        if jitter == "full":
            yield rng.uniform(0.0, ceiling)
        elif jitter == "equal":
            yield ceiling / 2 + rng.uniform(0.0, ceiling / 2)
        else:
            yield ceiling
        attempt += 1


class Reset(Exception):
    """The server's history is another one (409 or a reset message): re-sync from a snapshot."""

    def __init__(self, epoch: str | None, last_seq: int | None):
        super().__init__(f"history reset: epoch {epoch}, last SEQ {last_seq}")
        self.epoch, self.last_seq = epoch, last_seq


class UpgradeRefused(Exception):
    """The WebSocket handshake was answered with plain HTTP (a proxy that does not do Upgrade)."""


class Unusable(Exception):
    """This transport does not work through this path (e.g. SSE not served as a stream)."""


@dataclass
class Subscriber:
    """Read the feed with `transport` ("ws", "sse", "long_poll" or "auto": WebSocket, else SSE,
    else long polling) and keep reading across every cut. See the module docstring."""

    target: object
    transport: str = "ws"
    mode: str = "effectively_once"
    heartbeat_s: float | None = 2.0
    base_s: float = 0.1
    cap_s: float = 2.0
    jitter: str = "full"
    seed: int | None = None
    checkpoint_every: int = 10
    """at-least-once modes: the resume point moves forward every this many events."""
    dedup: bool | None = None
    """De-duplicate by SEQ (None: only in "effectively_once"). A flag so tests can remove it."""
    on_event: Callable[[dict], None] | None = None
    name: str = ""
    wait_s: float = LONG_POLL_WAIT_S
    """How long each long poll asks the server to hold it (s)."""

    state: str = field(default="idle", init=False)
    """idle, connecting, connected, reconnecting, resumed, resyncing, stopped."""
    used: str = field(default="", init=False)
    """The transport in use now (for "auto": the one the fallback settled on)."""
    epoch: str | None = field(default=None, init=False)
    last_seq: int | None = field(default=None, init=False)
    checkpoint: int | None = field(default=None, init=False)
    delivered: list[tuple] = field(default_factory=list, init=False)
    """(epoch, seq, published ts, received ts, via) of each event handed to the app, in order."""
    duplicates_seen: int = field(default=0, init=False)
    duplicates_delivered: int = field(default=0, init=False)
    gaps: int = field(default=0, init=False)
    """Events known to be missing (a jump in SEQ, a gap notice, a history cut short)."""
    resyncs: int = field(default=0, init=False)
    connects: int = field(default=0, init=False)
    attempts: list[float] = field(default_factory=list, init=False)
    """time.time() of every connection attempt (WebSocket: when it succeeded or failed, which for
    a refused connection is when it started; SSE and long poll: when the request was sent)."""
    attempt_starts: list[float] = field(default_factory=list, init=False)
    """time.time() at which each reconnection attempt began: when its backoff delay ran out (what
    jitter spreads; `attempts` records when each one ended, which a busy client loop delays)."""
    detections: list[dict] = field(default_factory=list, init=False)
    """Dead connections found: {"mechanism", "at"} (time.time())."""
    fallbacks: list[dict] = field(default_factory=list, init=False)
    errors: list[str] = field(default_factory=list, init=False)
    done: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.transport not in (*TRANSPORTS, "auto"):
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)} or auto")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if self.dedup is None:
            self.dedup = self.mode == "effectively_once"
        self._rng = random.Random(self.seed)
        self._stop: asyncio.Event | None = None
        self._future: concurrent.futures.Future[Subscriber] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._cut: Callable[[], object] | None = None
        """Closes the live connection at once (chaos tests cut it from outside)."""

    @property
    def _http(self) -> aiohttp.ClientSession:
        """The HTTP session of the current run (arun() opens it)."""
        if self._session is None:
            raise RuntimeError("the subscriber is not running: start() it")
        return self._session

    def _stopped(self) -> bool:
        """Whether stop() was called during the current run (arun() makes the event first)."""
        assert self._stop is not None, "arun() makes the stop event before reading"
        return self._stop.is_set()

    # -- the app side ----------------------------------------------------------------------
    def _deliver(self, event: dict, via: str) -> None:
        """Hand one event to the app unless it is a duplicate (with de-duplication on)."""
        seq, epoch = event["seq"], event.get("epoch")
        if epoch is not None and self.epoch is not None and epoch != self.epoch:
            if self.mode != "at_most_once":
                self.errors.append(f"event of epoch {epoch} while in {self.epoch}: dropped")
                return  # another history: never mixed in (a re-sync brings the new one)
            self.epoch, self.last_seq, self.checkpoint = epoch, None, None  # "from now" again
            self.resyncs += 1
        if self.epoch is None:
            self.epoch = epoch
        if self.last_seq is not None and seq <= self.last_seq:
            self.duplicates_seen += 1
            if self.dedup:
                return
            self.duplicates_delivered += 1
        elif self.last_seq is not None and seq > self.last_seq + 1:
            self.gaps += seq - self.last_seq - 1
        self.delivered.append((epoch, seq, event.get("ts"), time.time(), via))
        self.last_seq = seq if self.last_seq is None else max(self.last_seq, seq)
        if self.checkpoint is None or seq - self.checkpoint >= self.checkpoint_every:
            self.checkpoint = seq
        if self.on_event is not None:
            self.on_event(event)

    def _resume_from(self) -> int | None:
        """The SEQ to resume after: none in at-most-once (start from now), else the checkpoint
        (at-least-once) or the last delivered SEQ (effectively-once with checkpoint_every=1)."""
        if self.mode == "at_most_once":
            return None
        return self.checkpoint

    async def _resync(self, reset: Reset) -> None:
        """Snapshot + delta: take the kept events of the new history, then resume after them."""
        self.state = "resyncing"
        self.resyncs += 1
        async with self._http.get(target_url(self.target) + PATHS["long_poll"],
                                     timeout=aiohttp.ClientTimeout(total=OPEN_TIMEOUT_S)) as resp:
            snapshot = await resp.json() if resp.status == 200 else []
            epoch = resp.headers.get("Feed-Epoch", reset.epoch)
            last = int(resp.headers.get("Feed-Last-Seq", reset.last_seq or 0))
        self.epoch, self.last_seq, self.checkpoint = epoch, None, None
        if self.mode == "at_most_once":  # no replay: from now on
            self.last_seq = self.checkpoint = last
            return
        first = snapshot[0]["seq"] if snapshot else last + 1
        self.gaps += first - 1  # events of the new history that are no longer kept
        self.last_seq = self.checkpoint = first - 1
        for event in snapshot:
            self._deliver(event, "snapshot")
        self.last_seq = self.checkpoint = max(last, self.last_seq or 0)

    async def _start_point(self) -> None:
        """First contact: learn the current epoch and last SEQ, start after it (from now on)."""
        async with self._http.get(target_url(self.target) + PATHS["long_poll"] + "?since=0",
                                     timeout=aiohttp.ClientTimeout(total=OPEN_TIMEOUT_S)) as resp:
            await resp.read()
            self.epoch = resp.headers.get("Feed-Epoch")
            self.last_seq = self.checkpoint = int(resp.headers.get("Feed-Last-Seq", "0"))

    def _query(self) -> dict:
        since = self._resume_from()
        query: dict[str, int | float | str] = {} if since is None else {"since": since}
        if since is not None and self.epoch is not None:
            query["epoch"] = self.epoch
        return query

    # -- the run ---------------------------------------------------------------------------
    async def arun(self, seconds: float) -> Subscriber:
        """Read for `seconds` (or until `stop()`), reconnecting as needed."""
        self._stop = asyncio.Event()
        self.done = False
        order = FALLBACK if self.transport == "auto" else (self.transport,)
        try:
            async with asyncio.timeout(seconds), http_session(target_url(self.target)) as session:
                self._session = session
                await self._with_retries(self._start_point)
                step = 0
                while not self._stopped():
                    self.used = order[step]
                    try:
                        await getattr(self, "_run_" + self.used)()
                    except (UpgradeRefused, Unusable) as exc:
                        if step + 1 >= len(order):
                            raise
                        self.fallbacks.append({"from": self.used, "to": order[step + 1],
                                               "why": str(exc), "at": time.time()})
                        step += 1
        except TimeoutError:
            pass
        except (UpgradeRefused, Unusable, InvalidHandshake) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.state, self.done, self._session = "stopped", True, None
        return self

    def start(self, seconds: float = 30.0) -> Subscriber:
        """Run in the background on labkit's client loop for at most `seconds`; returns self."""
        self._future = asyncio.run_coroutine_threadsafe(self.arun(seconds), _loop.client_loop())
        return self

    def stop(self, timeout: float = 10.0) -> Subscriber:
        """Stop reading (waits at most `timeout` s for the reader to end)."""
        stop_all([self], timeout)
        return self

    def _ask_to_stop(self) -> None:
        """Tell the reader to stop and cut its live connection (from any thread)."""
        loop = _loop.client_loop()
        if self._stop is not None:
            loop.call_soon_threadsafe(self._stop.set)
            if self._cut is not None:
                loop.call_soon_threadsafe(self._cut)

    def cut(self) -> None:
        """Break the live connection now (as a network reset would); the client reconnects."""
        if self._cut is not None:
            _loop.client_loop().call_soon_threadsafe(self._cut)

    async def _with_retries(self, attempt) -> None:
        """Run `attempt()` until it succeeds, waiting backoff delays between failures."""
        delays = backoff_delays(self.base_s, self.cap_s, jitter=self.jitter, rng=self._rng)
        while True:
            try:
                return await attempt()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                self.state = "reconnecting"
                await asyncio.sleep(next(delays))

    async def _pause_after_cut(self) -> None:
        """A connection that worked just died: wait one jittered first delay before reconnecting
        (without it, every client cut by the same event comes back at the same instant)."""
        self.state = "reconnecting"
        await asyncio.sleep(next(backoff_delays(self.base_s, self.cap_s, jitter=self.jitter,
                                                rng=self._rng)))
        self.attempt_starts.append(time.time())

    def _noted(self, delays: Generator[float, None, None]) -> Generator[float, None, None]:
        """`delays`, noting when each attempt they delay will begin (now + the delay)."""
        for delay in delays:
            self.attempt_starts.append(time.time() + delay)
            yield delay

    def _connected(self) -> None:
        if self.used == "ws":
            self.attempts.append(time.time())  # a WebSocket attempt that worked (failed ones: _retryable)
        self.connects += 1
        self.state = "resumed" if self.connects > 1 else "connected"

    # -- WebSocket: the websockets library's reconnecting iterator ---------------------------
    def _ws_url(self) -> str:
        query = self._query()
        if self.heartbeat_s is not None:
            query["heartbeat"] = self.heartbeat_s
        url = target_url(self.target, "ws") + PATHS["ws"]
        return url + ("?" + urlencode(query) if query else "")

    def _retryable(self, exc: Exception) -> Exception | None:
        """websockets' `process_exception`: which failed attempts to retry (with backoff)."""
        self.attempts.append(time.time())
        self.state = "reconnecting"
        if isinstance(exc, InvalidStatus):
            status = exc.response.status_code
            if status in (409, 428):
                body = json.loads(exc.response.body or b"{}")
                return Reset(body.get("epoch"), body.get("last_seq"))
            if status >= 500:
                return None
            return UpgradeRefused(f"the WebSocket handshake got HTTP {status}")
        if isinstance(exc, InvalidHandshake):
            return UpgradeRefused(f"the WebSocket handshake failed: {exc}")
        if isinstance(exc, OSError | TimeoutError | EOFError):
            return None
        return exc

    async def _run_ws(self) -> None:
        ping = self.heartbeat_s
        self.attempt_starts.append(time.time())  # the iterator's first attempt starts now
        factory = connect(self._ws_url(), compression=None, open_timeout=OPEN_TIMEOUT_S,
                          ping_interval=ping, ping_timeout=ping,
                          close_timeout=min(1.0, ping or 1.0),
                          max_size=2**20, process_exception=self._retryable,
                          reconnect_delays=lambda: self._noted(backoff_delays(
                              self.base_s, self.cap_s, jitter=self.jitter, rng=self._rng)))
        try:
            # connect's __aiter__ is an async generator, typed as a plain AsyncIterator
            connections_gen = cast(AsyncGenerator[Any, None], factory.__aiter__())
            async with contextlib.aclosing(connections_gen) as connections:
                async for conn in connections:
                    self._connected()
                    reset = await self._read_ws(conn)
                    if reset is not None:
                        await self._resync(reset)
                    if self._stopped():
                        return
                    await self._pause_after_cut()
                    # resume where this connection stopped (as websockets does for a redirect)
                    factory.uri = self._ws_url()
                    factory.ws_uri = parse_uri(factory.uri)
        except Reset as reset:  # refused with 409: another history
            await self._resync(reset)

    async def _read_ws(self, conn) -> Reset | None:
        """Deliver what one connection brings until it ends; a reset message ends it early."""
        self._cut = conn.transport.abort
        try:
            async for raw in conn:
                message = json.loads(raw)
                if "seq" in message:
                    self._deliver(message, "ws")
                elif message.get("type") == "reset":
                    if "since" in message and message.get("epoch") == self.epoch:
                        continue  # only names the history we resumed in (we sent no epoch)
                    return Reset(message.get("epoch"), message.get("last_seq"))
                elif message.get("type") == "gap":
                    self.gaps += message.get("missed", 0)
        except ConnectionClosed:
            pass
        finally:
            self._cut = None
        sent = conn.protocol.close_sent  # the Close this side sent (or tried to), if any
        if sent is not None and sent.code == 1011 and "keepalive" in sent.reason:
            self.detections.append({"mechanism": "ws ping timeout", "at": time.time()})
        elif conn.close_code == 1008:
            self.errors.append(f"closed 1008: {conn.close_reason}")
        return None

    # -- Server-Sent Events ------------------------------------------------------------------
    def _sse_headers(self) -> dict:
        headers = {"Accept": "text/event-stream"}
        since = self._resume_from()
        if since is not None and self.epoch is not None:
            headers["Last-Event-ID"] = f"{self.epoch}:{since}"
        return headers

    async def _run_sse(self) -> None:
        query = {} if self.heartbeat_s is None else {"heartbeat": self.heartbeat_s / 2}
        url = target_url(self.target) + PATHS["sse"] + ("?" + urlencode(query) if query else "")
        read_timeout = self.heartbeat_s  # silence longer than this: the stream is dead
        while not self._stopped():
            self.attempts.append(time.time())
            try:
                timeout = aiohttp.ClientTimeout(total=None, sock_connect=OPEN_TIMEOUT_S,
                                                sock_read=read_timeout)
                async with self._http.get(url, headers=self._sse_headers(),
                                             timeout=timeout) as resp:
                    if resp.status != 200 or resp.content_type != "text/event-stream":
                        if resp.status >= 500:
                            raise aiohttp.ClientResponseError(resp.request_info, (),
                                                              status=resp.status)
                        raise Unusable(f"SSE answered HTTP {resp.status} {resp.content_type}")
                    self._connected()
                    transport = resp.connection.transport if resp.connection else None
                    self._cut = transport.abort if transport is not None else None
                    reset = await self._read_sse(resp)
                self._cut = None
                if reset is not None:
                    await self._resync(reset)
                    continue
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError,
                    aiohttp.ClientResponseError, TimeoutError) as exc:
                if isinstance(exc, TimeoutError | aiohttp.SocketTimeoutError):
                    self.detections.append({"mechanism": "sse read timeout", "at": time.time()})
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._cut = None
            if self._stopped():
                return
            await self._pause_after_cut()

    async def _read_sse(self, resp) -> Reset | None:
        async for kind, payload in sse_blocks(resp.content):
            if payload is not None:
                if kind == "message":
                    self._deliver(payload, "sse")
                elif kind == "reset":
                    if "since" in payload and payload.get("epoch") == self.epoch:
                        continue  # only names the history we resumed in (we sent no epoch)
                    return Reset(payload.get("epoch"), payload.get("last_seq"))
                elif kind == "gap":
                    self.gaps += payload.get("missed", 0)
            if self._stopped():
                return None
        return None

    # -- long polling -------------------------------------------------------------------------
    async def _run_long_poll(self) -> None:
        url = target_url(self.target) + PATHS["long_poll"]
        total = None if self.heartbeat_s is None else self.wait_s + self.heartbeat_s
        failed = False
        while not self._stopped():
            if failed and self.mode == "at_most_once":  # after a cut: from the newest SEQ on
                await self._with_retries(self._start_point)
            since = self._resume_from() if failed else self.last_seq
            # the first poll after (re)connecting is answered at once: it proves the path works
            reconnecting = failed or self.connects == 0
            query: dict[str, int | float | str] = {"since": since or 0,
                                                   "wait": 0 if reconnecting else self.wait_s}
            if self.epoch is not None:
                query["epoch"] = self.epoch
            self.attempts.append(time.time())
            try:
                request = asyncio.ensure_future(self._poll_once(url, query, total))
                self._cut = request.cancel  # a cut (or stop) ends the held request at once
                try:
                    status, body = await request
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # this reader itself is being cancelled
                    if self._stopped():
                        return
                    raise aiohttp.ClientConnectionError("the connection was cut") from None
                finally:
                    self._cut = None
                if status in (409, 428):  # another history, or a resume without its epoch
                    await self._resync(Reset(body.get("epoch"), body.get("last_seq")))
                    continue
                if status == 410:
                    self.gaps += body.get("missed", 0)
                    self.last_seq = self.checkpoint = body["oldest_seq"] - 1
                    continue
                if status != 200:
                    raise Unusable(f"long poll answered HTTP {status}")
                if failed or self.connects == 0:
                    self._connected()
                failed = False
                for event in body:
                    self._deliver(event, "long_poll")
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                if isinstance(exc, TimeoutError):
                    self.detections.append({"mechanism": "long-poll timeout", "at": time.time()})
                self.errors.append(f"{type(exc).__name__}: {exc}")
                failed = True
                await self._pause_after_cut()

    async def _poll_once(self, url: str, query: dict, total: float | None) -> tuple[int, Any]:
        async with self._http.get(url, params=query,
                                     timeout=aiohttp.ClientTimeout(total=total)) as resp:
            return resp.status, await resp.json(content_type=None)

    # -- results -------------------------------------------------------------------------------
    def stats(self) -> dict:
        """What happened so far, as one row."""
        return {"name": self.name, "transport": self.used or self.transport, "mode": self.mode,
                "state": self.state, "epoch": self.epoch, "last_seq": self.last_seq,
                "delivered": len(self.delivered), "gaps": self.gaps, "resyncs": self.resyncs,
                "duplicates_seen": self.duplicates_seen,
                "duplicates_delivered": self.duplicates_delivered,
                "connects": self.connects, "attempts": len(self.attempts),
                "detections": len(self.detections)}


def stop_all(subscribers, timeout: float = 10.0) -> None:
    """Stop every subscriber at once: ask them all, give them STOP_GRACE_S together to end by
    themselves, cancel the rest (e.g. a connection attempt into a blackhole), and wait at most
    `timeout` s for every socket to be closed. Stopping 300 one after another would take 300
    grace periods; experiments call this in a `finally`, so an interrupted cell (the kernel's
    stop button) leaves no connection behind."""
    subs = list(subscribers)
    for sub in subs:
        sub._ask_to_stop()
    futures = [sub._future for sub in subs if sub._future is not None]
    concurrent.futures.wait(futures, STOP_GRACE_S)
    for future in futures:
        if not future.done():
            future.cancel()
    concurrent.futures.wait(futures, timeout)
    for sub in subs:
        if sub._future is not None and sub._future.done() and not sub._future.cancelled():
            exc = sub._future.exception()
            if exc is not None:
                sub.errors.append(f"{type(exc).__name__}: {exc}")
        sub.state, sub.done = "stopped", True


def subscriber(target, transport: str = "ws", **options) -> Subscriber:
    """A resuming, de-duplicating feed reader (see `Subscriber`); call `.start(seconds)`."""
    return Subscriber(target, transport, **options)
