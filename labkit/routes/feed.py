"""Route family "feed": one live price feed, readable four ways from the same Hub topic.

- short poll  `GET /api/feed?since=SEQ`           events after SEQ now (`[]` when none)
- long poll   `GET /api/feed?since=SEQ&wait=S`    held until an event arrives or S seconds pass
- SSE         `GET /sse/feed`                     `id:` is the SEQ; resumes from `Last-Event-ID`
- WebSocket   `WS /ws/feed?since=SEQ`             each event as JSON {"seq", "ts", "data"}

The source is a ticker on the server loop publishing either a seeded random walk of a price
(`"kind": "walk"`, the default) or a replay of the sample series shipped with labkit
(`"kind": "replay"`, `labkit/data/feed-sample.csv`, see data/README.md). `POST /api/feed/source`
sets its kind, rate, seed and an optional number of ticks after which it stops. It is off until
asked (a lab that nobody watches publishes nothing).

A SEQ older than the kept history is answered with 410 Gone (polls) or a "gap" notice (SSE event
`gap`, WebSocket message {"type": "gap", ...}) before the stream goes on from the oldest kept event.
A SEQ never published is refused with 422.

Epochs (resuming across a restart): every event carries the `epoch` of the topic's history, and
every poll answer names it (`Feed-Epoch`). A client resumes with `since=SEQ&epoch=E`: if E is not
the current epoch (the lab restarted and forgot its history), polls and WebSocket handshakes get
409 problem+json (`epoch`, `last_seq`) before anything streams, so the client re-syncs from a
snapshot instead of mixing two histories. SSE ids are `"<epoch>:<seq>"`; a `Last-Event-ID` from
another epoch gets a `reset` event ({"type": "reset", "epoch", "last_seq"}, id of the current
epoch) on a 200 stream, because a browser's EventSource gives up for good on a 4xx. A hub Notice
whose data has "type": "reset" reaches a live stream the same way.

Heartbeats (options per request): `?heartbeat=S` on a WebSocket route makes the server ping every S
seconds and drop a peer whose pong does not come (aiohttp `heartbeat=`); on SSE it sets how often
an idle stream gets a comment line; a long poll's `wait` bounds how long an answer can be missing.

Slow consumers: a WebSocket that falls QUEUE_LIMIT events behind is closed with 1008 and a reason
naming the SEQ to resume from. Its socket's buffer is bounded, so the Close frame waits behind what
is already buffered for up to SLOW_CLOSE_GRACE_S (a reader that catches up within that time gets
it); a peer that never reads again is then cut off. Clients must resume from the last SEQ they
received themselves (the kit's clients do), so a bare EOF loses nothing either.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import functools
import io
import json
import math
import random
import re
import socket
import weakref
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp_sse import EventSourceResponse
from websockets.frames import Close, Frame, Opcode

from labkit.server.problem import ProblemError
from labkit.server.validate import JSONInputError, json_integer, load_json, query_integer, query_number
from labkit.server.websocket import accept
from labkit.streaming.hub import (
    HUB,
    QUEUE_LIMIT,
    Ahead,
    EpochMismatch,
    Event,
    Gap,
    Notice,
    SlowConsumer,
    Subscription,
    Topic,
    ahead_problem,
    epoch_problem,
    event_schema,
    gap_problem,
    subscribe_resuming,
)

from .core import websocket_route

TOPIC = "feed"
MAX_WAIT_S = 30.0
"""Longest a long poll may ask to be held (seconds)."""
MAX_SEQ = 2**63 - 1
"""Largest SEQ a client may name (a topic would need centuries to get there)."""
MAX_RATE_HZ = 1000.0
"""Fastest ticker rate the source accepts (events per second)."""
SLOW_CLOSE_CODE = WSCloseCode.POLICY_VIOLATION
"""Close code (1008) a WebSocket gets when it falls too far behind (slow-consumer policy)."""
SEND_TIMEOUT_S = 5.0
"""A write a client does not accept within this many seconds ends its stream."""
SSE_PING_S = 15.0
"""An idle SSE stream gets a comment line this often (seconds), so proxies keep it open."""
MIN_HEARTBEAT_S, MAX_HEARTBEAT_S = 0.05, 300.0
"""Range of `?heartbeat=S` (seconds) on the WebSocket and SSE routes."""
SLOW_CLOSE_GRACE_S = 30.0
"""How long the 1008 Close frame of a slow consumer may wait behind its buffered events (s)."""
EPOCH_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""What an epoch token looks like (a client may only echo one it was given)."""
SAMPLE_SERIES = "data/feed-sample.csv"
"""The replayable series, inside the labkit package (so an installed labkit has it too)."""
KINDS = ("walk", "replay")
"""What the ticker can publish: a seeded random walk, or a replay of the sample series."""

routes = web.RouteTableDef()


@functools.cache
def sample_series() -> tuple[float, ...]:
    """The prices of the shipped sample series, in order (read once from package data)."""
    text = resources.files("labkit").joinpath(SAMPLE_SERIES).read_text(encoding="utf-8")
    return tuple(float(row["price"]) for row in csv.DictReader(io.StringIO(text)))


class FeedSource:
    """A ticker publishing prices to the hub's "feed" topic: a seeded random walk ("walk") or the
    sample series row after row ("replay", from `start_row`, wrapping round at the end).

    Events arrive as a Poisson process of mean rate `rate_hz` (random gaps, seeded too): a ticker
    with a fixed period would lock in step with a poller of the same period and hide the
    staleness that polling really has.
    """

    def __init__(self, hub):
        self.hub = hub
        self.rate_hz = 0.0
        self.kind = "walk"
        self.row = 0
        """Next row of the sample series a replay publishes."""
        self.seed: int | None = None
        self.ticks_left: int | None = None
        self.symbol = "LAB"
        self.price = 100.0
        self._rng = random.Random()
        self._timing = random.Random()
        self._task: asyncio.Task | None = None
        self.pace = {"published": 0, "started": 0.0, "behind_s": 0.0, "resets": 0}
        """Whether the ticker keeps its rate in this run: events published, loop time it started,
        how far behind its schedule it is, and how often it gave up catching up (>1 s behind)."""

    def state(self) -> dict:
        """Settings and progress, as `GET /api/feed/source` answers them. A ticker that cannot
        keep its rate says so: `achieved_rate_hz` (events per second of this run so far),
        `behind_s` (how late on its schedule), `schedule_resets` (times it fell more than 1 s
        behind and gave up catching up) and `keeping_up`."""
        pace = self.pace
        elapsed = asyncio.get_running_loop().time() - pace["started"] if pace["started"] else 0.0
        achieved = pace["published"] / elapsed if elapsed > 0 else 0.0
        topic = self.hub.topic(TOPIC)
        return {"running": self.running, "kind": self.kind, "rate_hz": self.rate_hz,
                "seed": self.seed, "ticks_left": self.ticks_left, "symbol": self.symbol,
                "price": self.price, "row": self.row, "rows": len(sample_series()),
                "last_seq": topic.last_seq, "epoch": topic.epoch,
                "published_this_run": pace["published"], "achieved_rate_hz": round(achieved, 3),
                "behind_s": round(pace["behind_s"], 4), "schedule_resets": pace["resets"],
                "keeping_up": pace["resets"] == 0 and pace["behind_s"] < 0.5}

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def configure(self, rate_hz: float, seed: int | None = None, ticks: int | None = None,
                  start_price: float | None = None, kind: str = "walk",
                  start_row: int = 0) -> None:
        """Restart the ticker with these settings (rate 0 stops it). Call on the server loop.

        The seed drives the walk and the random gaps between events (for both kinds)."""
        self.stop()
        self.rate_hz, self.ticks_left = rate_hz, ticks
        if kind != self.kind or kind == "replay":
            self.kind, self.row = kind, start_row
            self.symbol = "SAMPLE" if kind == "replay" else "LAB"
            if kind == "walk" and start_price is None and seed is None:
                self.price = 100.0
        if seed is not None or start_price is not None:
            self.seed = seed
            self._rng = random.Random(seed)
            self._timing = random.Random(None if seed is None else seed + 1)
            self.price = 100.0 if start_price is None else start_price
        if rate_hz > 0 and ticks != 0:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        """Stop publishing (the settings stay; `configure` starts it again)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def step(self) -> dict:
        """Next price: a log-normal step of 0.2 % standard deviation (walk), or the next row of
        the sample series (replay, with its row number)."""
        if self.kind == "replay":
            prices = sample_series()
            row = self.row % len(prices)
            self.price, self.row = prices[row], row + 1
            return {"symbol": self.symbol, "price": self.price, "row": row}
        self.price = round(self.price * math.exp(self._rng.gauss(0.0, 0.002)), 4)
        return {"symbol": self.symbol, "price": self.price}

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.rate_hz
        next_at = loop.time()
        self.pace = {"published": 0, "started": next_at, "behind_s": 0.0, "resets": 0}
        while self.ticks_left is None or self.ticks_left > 0:
            await self.hub.apublish(TOPIC, self.step())
            self.pace["published"] += 1
            if self.ticks_left is not None:
                self.ticks_left -= 1
            next_at += self._timing.expovariate(1.0) * period
            delay = next_at - loop.time()
            self.pace["behind_s"] = max(0.0, -delay)
            if delay < -1.0:  # fell a second behind (busy machine): do not burst to catch up
                next_at, delay = loop.time(), 0.0
                self.pace["resets"] += 1
            await asyncio.sleep(max(delay, 0.0))


SOURCE = web.AppKey("feed_source", FeedSource)


def _topic(request: web.Request) -> Topic:
    return request.app[HUB].topic(TOPIC)


def parse_seq(raw: str | None, name: str = "since") -> int | None:
    """A SEQ from the query or a header: None when absent; 422 naming `name` unless it is written
    as plain digits from 0 to MAX_SEQ (an empty value is not "absent": it is refused too)."""
    return None if raw is None else query_integer(raw, name, 0, MAX_SEQ)


def parse_epoch(raw: str | None, name: str = "epoch") -> str | None:
    """An epoch token from the query: None when absent; 422 naming `name` unless it is 1-64
    letters, digits, "_" or "-"."""
    if raw is None:
        return None
    if not re.match(EPOCH_PATTERN, raw):
        raise ProblemError(422, f"{name} must be an epoch token as the server sent it "
                           "(1-64 letters, digits, _ or -)",
                           errors=[{"field": name, "message": "not an epoch token"}])
    return raw


def parse_heartbeat(raw: str | None) -> float | None:
    """`?heartbeat=S` (seconds): None when absent; 422 unless a number in the allowed range."""
    if raw is None:
        return None
    return query_number(raw, "heartbeat", MIN_HEARTBEAT_S, MAX_HEARTBEAT_S)


def _parse_wait(raw: str | None) -> float:
    """Seconds a long poll may be held: 0 when absent; 422 unless a number from 0 to MAX_WAIT_S."""
    return 0.0 if raw is None else query_number(raw, "wait", 0.0, MAX_WAIT_S)


def _range_headers(topic: Topic) -> dict:
    return {"Feed-Last-Seq": str(topic.last_seq), "Feed-Oldest-Seq": str(topic.oldest_seq),
            "Feed-History-Limit": str(topic.history_limit), "Feed-Epoch": topic.epoch,
            "Cache-Control": "no-store"}


async def poll_response(request: web.Request, topic: Topic) -> web.Response:
    """Answer a short or long poll of `topic` (shared by the feed and the chat room)."""
    since = parse_seq(request.query.get("since"))
    epoch = parse_epoch(request.query.get("epoch"))
    wait = _parse_wait(request.query.get("wait"))
    counters = topic.counters("long_poll" if wait > 0 else "short_poll")
    counters.requests += 1
    try:
        if since is None:
            events = topic.since(None, epoch)
        else:
            events = await topic.wait_after(since, wait, epoch)
    except EpochMismatch as exc:
        raise epoch_problem(exc) from None
    except Gap as gap:
        raise gap_problem(gap) from None
    except Ahead as exc:
        raise ahead_problem(exc) from None
    body = ("[" + ",".join(e.json for e in events) + "]").encode()
    counters.delivered += len(events)
    counters.bytes_sent += len(body)
    return web.Response(body=body, content_type="application/json", headers=_range_headers(topic))


@routes.get("/api/feed")
async def feed_poll(request: web.Request) -> web.Response:
    """Events after ?since=SEQ (all kept ones without it); with &wait=S held up to S seconds."""
    return await poll_response(request, _topic(request))


@routes.get("/api/feed/source")
async def source_get(request: web.Request) -> web.Response:
    """The ticker's settings and state."""
    return web.json_response(request.app[SOURCE].state())


async def read_json_object(request: web.Request) -> dict:
    """The request body as a JSON object: 415 if not JSON, 400 if malformed, 422 if not an object."""
    if request.content_type != "application/json":
        raise ProblemError(415, f"send Content-Type: application/json (got {request.content_type!r})")
    try:
        body = load_json(await request.read())
    except JSONInputError as exc:
        raise ProblemError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProblemError(422, "the body must be a JSON object",
                           errors=[{"field": "", "message": "expected an object"}])
    return body


@routes.post("/api/feed/source")
async def source_set(request: web.Request) -> web.Response:
    """Set the ticker: {"rate_hz": R, "kind": "walk"|"replay", "seed": S, "ticks": N,
    "start_price": P (walk), "start_row": I (replay)}; rate 0 stops it."""
    body = await read_json_object(request)
    errors = []
    kind = body.get("kind", "walk")
    if kind not in KINDS:
        errors.append({"field": "kind", "message": 'either "walk" or "replay"'})
    start_row = json_integer(body.get("start_row", 0))
    rows = len(sample_series())
    if start_row is None or not 0 <= start_row < rows:
        errors.append({"field": "start_row", "message": f"a whole number from 0 to {rows - 1}"})
    elif start_row and kind != "replay":
        errors.append({"field": "start_row", "message": 'only with "kind": "replay"'})
    rate = body.get("rate_hz")
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 <= rate <= MAX_RATE_HZ:
        errors.append({"field": "rate_hz", "message": f"a number from 0 to {MAX_RATE_HZ:g}"})
    seed = body.get("seed")
    if seed is not None and (seed := json_integer(seed)) is None:  # JSON Schema: 3.0 is an integer
        errors.append({"field": "seed", "message": "a whole number or null"})
    ticks = body.get("ticks")
    if ticks is not None and ((ticks := json_integer(ticks)) is None or ticks < 0):
        errors.append({"field": "ticks", "message": "a whole number >= 0 or null"})
    price = body.get("start_price")
    if price is not None and (not isinstance(price, int | float) or isinstance(price, bool)
                              or not price > 0):
        errors.append({"field": "start_price", "message": "a positive number or null"})
    if price is not None and kind == "replay":
        errors.append({"field": "start_price", "message": "a replay's prices come from the series"})
    unknown = sorted(set(body) - {"rate_hz", "kind", "seed", "ticks", "start_price", "start_row"})
    errors += [{"field": k, "message": "unknown field"} for k in unknown]
    if errors:
        raise ProblemError(422, "invalid feed source settings", errors=errors)
    source = request.app[SOURCE]
    source.configure(float(rate), seed, ticks, None if price is None else float(price), kind,
                     start_row)
    return web.json_response(source.state())


SSE_RETRY_MS = 1000
"""Reconnection delay an SSE stream asks browsers to use (the `retry:` field, milliseconds)."""


def sse_id(epoch: str, seq: int) -> str:
    """The SSE event id of an event: "<epoch>:<seq>"."""
    return f"{epoch}:{seq}"


def _sse_since(request: web.Request) -> tuple[int | None, str | None, str]:
    """Where an SSE client resumes: (SEQ, epoch, the name it came in). The Last-Event-ID header
    (what a reconnecting browser sends: "<epoch>:<seq>", or a bare SEQ) wins over ?since=&epoch=."""
    header = request.headers.get("Last-Event-ID")
    query = parse_seq(request.query.get("since")), parse_epoch(request.query.get("epoch"))
    if header is not None:  # the query is still checked: a bad ?since= is a 422 either way
        epoch, colon, seq = header.rpartition(":")
        name = "Last-Event-ID"
        return parse_seq(seq, name), parse_epoch(epoch, name) if colon else None, name
    return *query, "since"


def reset_message(topic: Topic, last_seq: int) -> dict:
    """What a client resuming from another epoch is told once streaming."""
    return {"type": "reset", "epoch": topic.epoch, "last_seq": last_seq}


@routes.get("/sse/feed")
async def feed_sse(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events of the feed; id is "<epoch>:<seq>"; resumes after Last-Event-ID (or
    ?since=&epoch=). A Last-Event-ID of another epoch gets a `reset` event, then live events."""
    topic = _topic(request)
    since, epoch, name = _sse_since(request)
    heartbeat = parse_heartbeat(request.query.get("heartbeat"))
    reset = name == "Last-Event-ID" and epoch is not None and epoch != topic.epoch
    if reset:  # an EventSource gives up on a 4xx: tell it on a 200 stream instead
        since, epoch = None, None
    try:
        sub, replay, gap = subscribe_resuming(topic, "sse", since, name, epoch)
    except EpochMismatch as exc:  # ?since=&epoch= from another epoch: refused before streaming
        raise epoch_problem(exc) from None
    counters = topic.counters("sse")
    response = EventSourceResponse(ping_interval=heartbeat or SSE_PING_S,
                                   send_timeout=SEND_TIMEOUT_S)
    try:
        await response.prepare(request)

        async def send(text: str, **kw) -> None:
            await response.send(text, **kw)
            counters.bytes_sent += len(text)

        if reset:
            await send(json.dumps(reset_message(topic, sub.last_seq)), event="reset",
                       id=sse_id(topic.epoch, sub.last_seq), retry=SSE_RETRY_MS)
        elif since is None:  # a fresh stream: tell the browser where it starts (an id, no event)
            head = f"id: {sse_id(topic.epoch, sub.last_seq)}\nretry: {SSE_RETRY_MS}\n\n"
            await response.write(head.encode())
            counters.bytes_sent += len(head)
        if gap is not None:
            await send(json.dumps(gap.as_dict()), event="gap")
        try:  # the same fast path as the WebSocket's: each event encoded once, written by publish
            await _pump_frames(request, None, sub, replay, counters, framing=SSE_FRAMING)
        except SlowConsumer as exc:
            await send(json.dumps({"detail": str(exc), "last_seq": sub.last_seq}),
                       event="overflow")
    except (ConnectionResetError, TimeoutError):
        pass
    finally:
        sub.close()
        if response.prepared:
            with contextlib.suppress(Exception):
                response.stop_streaming()
    return response


async def pump_to_websocket(request: web.Request, ws: web.WebSocketResponse, sub: Subscription,
                            replay: list, counters, render=lambda item: item.json) -> None:
    """Send the replay, then every item the subscription gets, until it closes or overflows.

    `request` is the handler's request: its `transport` is the client's socket (the fast path
    writes frames to it; a client that will not take a Close frame is cut off through it).
    `render(item)` gives the text a subscriber receives for a hub item (None: send nothing).

    A slow consumer is closed with 1008 and a reason that says which SEQ to resume from.

    Fast path (sockets without compression; the feed never compresses): a server's frames are not
    masked, so one event's frame is the same bytes for every subscriber. Each item is rendered and
    framed once (`Event.encoded`) and:
    - while this subscriber has nothing queued and its socket's write buffer is at or under the
      transport's high-water mark, publish hands the frame to the socket itself (`sub.sink`), with
      no task switch, as websockets' `broadcast()` does: the first frame of a loop iteration is
      written at once, later ones are joined into one write at the end of the iteration (one
      callback per topic flushes every subscriber that held frames back: `hub.Burst`), so a burst
      of events costs two system calls per socket, not one per event, and a single event
      schedules one callback however many subscribers it reaches;
    - otherwise the item is queued (bounded: a full queue is the slow-consumer case) and this pump
      drains the whole queue into one write, first waiting for the socket to drain below its
      low-water mark. The sink declines while anything is queued, so order is kept.
    A socket that negotiated compression takes the plain path: one `send_str` per item.
    """
    closing: list[asyncio.Task] = []

    def on_overflow() -> None:
        # The pump may be waiting for this very client to drain: close from another task.
        closing.append(asyncio.ensure_future(linger_close(
            request, ws, SLOW_CLOSE_CODE, _slow_reason(sub), SLOW_CLOSE_GRACE_S)))
        SLOW_CLOSES[ws] = closing[-1]

    sub.on_overflow = on_overflow
    try:
        if ws.compress:
            await _pump_compressed(ws, sub, replay, counters, render)
        else:
            await _pump_frames(request, ws, sub, replay, counters, render)
    except SlowConsumer:
        if closing:  # shielded: the handler ending must not cut the close handshake short
            await asyncio.shield(asyncio.gather(*closing, return_exceptions=True))
    except (ConnectionResetError, RuntimeError):
        return  # the client went away while we were writing
    finally:
        sub.sink = None


def text_frame(text: str) -> bytes:
    """An unmasked, unfragmented WebSocket text frame (what a server sends) holding `text`."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


@dataclasses.dataclass(frozen=True)
class Framing:
    """How a fast-path stream puts hub items on its socket: `encode(item)` gives an item's bytes
    (None: send nothing), computed once per item under `key` however many subscribers it reaches;
    `wrap(data)` frames the bytes of one write (e.g. as an HTTP/1.1 chunk); `payload(item, data)`
    is what `counters.bytes_sent` counts for it."""

    key: object
    encode: Callable[[Any], bytes | None]
    wrap: Callable[[bytes], bytes] = bytes
    payload: Callable[[Any, bytes], int] = lambda item, data: len(data)


def _websocket_framing(render) -> Framing:
    def encode(item) -> bytes | None:
        text = render(item)
        return None if text is None else text_frame(text)

    return Framing(render, encode, payload=lambda item, frame: len(frame) - _header_len(frame))


def sse_event_bytes(item) -> bytes | None:
    """An event of the SSE stream as bytes: `id: <epoch>:<seq>` and its JSON as `data:`; a reset
    Notice as an `event: reset`; other Notices are not for SSE (None)."""
    if isinstance(item, Event):
        return f"id: {sse_id(item.epoch, item.seq)}\ndata: {item.json}\n\n".encode()
    if isinstance(item.data, dict) and item.data.get("type") == "reset":
        return (f"event: reset\nid: {sse_id(item.data['epoch'], item.data['last_seq'])}\n"
                f"data: {json.dumps(item.data)}\n\n").encode()
    return None


def _http_chunk(data: bytes) -> bytes:
    """`data` as one chunk of an HTTP/1.1 chunked body (how the SSE response is streamed)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


SSE_FRAMING = Framing("sse", sse_event_bytes, wrap=_http_chunk,
                      payload=lambda item, data: len(item.json) if isinstance(item, Event)
                      else len(data))
"""The SSE stream's fast path: an event's block is the same bytes for every subscriber (its id
and data), so it is encoded once and written to each socket as a chunk of the response body."""


async def _pump_frames(request: web.Request, ws: web.WebSocketResponse | None, sub: Subscription,
                       replay: list, counters, render=None, *, framing: Framing | None = None
                       ) -> None:
    """The fast path of `pump_to_websocket` (and of the SSE stream, with `framing=SSE_FRAMING`
    and no `ws`): pre-encoded frames written to the socket itself."""
    transport, writer = request.transport, request.writer
    if transport is None:
        return
    framing = framing or _websocket_framing(render)
    high_water = transport.get_write_buffer_limits()[1]
    burst = sub.topic.burst
    pending: list[bytes] = []  # frames held back until the end of this loop iteration
    pending_size = [0]
    wrote_in = [-1]  # burst.token of the loop iteration in which the sink last wrote directly

    def encode(item) -> bytes | None:
        return item.encoded(framing.key, framing.encode)

    def account(item, frame: bytes) -> None:
        if isinstance(item, Event):  # the frame is (about to be) in the socket's buffer
            sub.last_seq = item.seq
            counters.delivered += 1
        counters.bytes_sent += framing.payload(item, frame)

    def can_write() -> bool:
        return not (ws is not None and ws.closed) and not transport.is_closing()

    def flush() -> None:
        """Write the frames the sink held back in one go (a burst of events: one write)."""
        if pending and can_write():
            transport.write(framing.wrap(b"".join(pending)))
        pending.clear()
        pending_size[0] = 0

    def sink(item) -> bool:
        """Take the item if the socket has room, else decline so that the hub queues it. The first
        frame of a loop iteration is written at once (lowest latency for a single event); later
        ones are held back and written together when the topic's `Burst` ends the iteration."""
        if not can_write() or transport.get_write_buffer_size() + pending_size[0] > high_water:
            return False
        frame = encode(item)
        if frame is None:
            return True
        if pending or wrote_in[0] == burst.token:
            if not pending:
                burst.hold(flush)
            pending.append(frame)
            pending_size[0] += len(frame)
        else:
            wrote_in[0] = burst.token
            burst.wrote()
            transport.write(framing.wrap(frame))
        account(item, frame)
        return True

    def write_batch(items) -> None:
        flush()  # frames the sink took come first
        frames = []
        for item in items:
            frame = encode(item)
            if frame is not None:
                frames.append(frame)
                account(item, frame)
        if frames:
            transport.write(framing.wrap(b"".join(frames)))

    tell_overflow = sub.on_overflow

    def on_overflow() -> None:
        flush()  # what the close reason says was delivered must be in the socket before the Close
        if tell_overflow is not None:
            tell_overflow()

    sub.on_overflow = on_overflow
    if not can_write():
        return
    write_batch(replay)
    sub.sink = sink
    try:
        while True:
            await sub.wait()
            if transport.get_write_buffer_size() > high_water:
                await writer.drain()  # the queue may fill meanwhile: the slow-consumer case
            items = sub.take()
            if sub.closed or not can_write():
                return
            write_batch(items)
    finally:
        sub.sink = None
        flush()


def _header_len(frame: bytes) -> int:
    """Length of the header of an unmasked frame (2, 4 or 10 bytes, by its length byte)."""
    length = frame[1] & 0x7F
    return 2 if length < 126 else 4 if length == 126 else 10


async def _pump_compressed(ws: web.WebSocketResponse, sub: Subscription, replay: list, counters,
                           render) -> None:
    """The plain path of `pump_to_websocket` (a compressed socket): one `send_str` per item."""
    items = replay
    while True:
        for item in items:
            text = render(item)
            if text is None:
                continue
            if isinstance(item, Event):
                sub.last_seq = item.seq
                counters.delivered += 1
            await ws.send_str(text)
            counters.bytes_sent += len(text)
        items = await sub.get()
        if not items:
            return


SLOW_CLOSES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""WebSocket -> its slow-consumer close task, which the handler waits for before it ends (an
ended handler closes the socket, and with the client's input unread that is an RST)."""


def _slow_reason(sub: Subscription) -> str:
    return f"too slow: resume with since={sub.last_seq}&epoch={sub.topic.epoch}"


async def close_or_abort(request: web.Request, ws: web.WebSocketResponse, code: int,
                         reason: str, timeout: float = SEND_TIMEOUT_S) -> None:
    """Close `ws` with `code`; a peer that does not take the Close frame within `timeout` s
    is cut off (its socket, `request.transport`, is aborted)."""
    try:
        async with asyncio.timeout(timeout):
            await ws.close(code=code, message=reason.encode()[:123])
    except (TimeoutError, ConnectionResetError, RuntimeError):
        transport = request.transport
        if transport is not None:
            transport.abort()


async def linger_close(request: web.Request, ws: web.WebSocketResponse, code: int, reason: str,
                       timeout: float) -> None:
    """Close a slow consumer so that the Close reaches it: send the Close frame (it waits behind
    the events already buffered, a bounded amount, until the client reads them) and keep reading
    what the client still sends (the handler's loop reads and drops it: `run_websocket`) until the
    client's own Close arrives. A peer that does neither within `timeout` s is cut off.

    Why not `ws.close()`: while the handler waits in `receive()`, aiohttp's close() ends that wait
    and closes the socket at once. A socket closed with unread input makes the kernel send an RST,
    and the RST makes the client's kernel discard the Close and every event still buffered for it:
    the client sees a bare EOF (what most cut clients used to get)."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    # aiohttp has no public "send the Close, keep reading" call: write the frame to the socket
    # (after the events already in its buffer, which the fast path wrote the same way)
    transport.write(Frame(Opcode.CLOSE, Close(code, reason[:120]).serialize()).serialize(mask=False))
    try:
        async with asyncio.timeout(timeout):
            while not ws.closed:  # the handler's receive() gets the client's Close and closes
                await asyncio.sleep(0.05)
    except TimeoutError:
        transport.abort()


async def run_websocket(ws: web.WebSocketResponse, pump: asyncio.Task, on_message) -> None:
    """Read the client's messages with `on_message` while `pump` sends; end both together. A
    client being closed as a slow consumer (`linger_close`) has what it still sends read and
    dropped until its Close arrives."""
    try:
        async for msg in ws:
            if ws in SLOW_CLOSES:
                continue  # cut off: read (so its socket never resets) but not acted on
            if msg.type is WSMsgType.TEXT:
                await on_message(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.close(code=WSCloseCode.UNSUPPORTED_DATA,
                               message=b"binary messages are not accepted here")
                break
            if pump.done() and ws not in SLOW_CLOSES:
                break
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        closing = SLOW_CLOSES.pop(ws, None)
        if closing is not None:  # a slow consumer's close handshake: let it finish (bounded)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(closing)


STREAM_SEND_BUFFER = 256 * 1024
"""Kernel send buffer of a push stream's socket (SO_SNDBUF, bytes). Linux grows an unset one up to
tcp_wmem's maximum (4 MiB by default) per connection, so a client that stopped reading could sit
on megabytes before anyone noticed; bounded, the Hub's slow-consumer rule (a full queue closes the
stream with 1008 and the SEQ to resume from) applies after a known amount of memory."""


def bound_send_buffer(request: web.Request) -> None:
    """Cap the kernel send buffer of this request's socket at STREAM_SEND_BUFFER."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SEND_BUFFER)


@contextlib.asynccontextmanager
async def topic_websocket(request: web.Request, topic: Topic, *, compress: bool = True,
                          first: tuple[dict, ...] = ()):
    """Subscribe after ?since=SEQ, open the WebSocket, send `first` messages and any gap notice,
    then yield (ws, subscription, replay, counters); the subscription is closed on the way out.

    Shared by every WebSocket route that streams a hub topic (the feed, the chat room). Refusals
    (a bad or never-published SEQ, an `epoch` that is not the current one: 409) happen before the
    upgrade, as problem+json. `?heartbeat=S`: ping every S seconds, drop a peer that stops
    answering (aiohttp's heartbeat).
    """
    since = parse_seq(request.query.get("since"))
    epoch = parse_epoch(request.query.get("epoch"))
    heartbeat = parse_heartbeat(request.query.get("heartbeat"))
    try:
        sub, replay, gap = subscribe_resuming(topic, "ws", since, epoch=epoch)
    except EpochMismatch as exc:  # another incarnation's SEQ: refused before the upgrade
        raise epoch_problem(exc) from None
    try:
        ws = await accept(request, compress=compress, heartbeat=heartbeat)
        bound_send_buffer(request)
        for message in first:
            await ws.send_str(json.dumps(message))
        if gap is not None:
            await ws.send_str(json.dumps({"type": "gap", **gap.as_dict()}))
        yield ws, sub, replay, topic.counters("ws")
    finally:
        sub.close()


def render_feed(item) -> str | None:
    """What a feed WebSocket receives for a hub item: an event as JSON; a "reset" Notice (the
    history was replaced while streaming) as {"type": "reset", "epoch", "last_seq"}."""
    if isinstance(item, Event):
        return item.json
    if isinstance(item, Notice) and isinstance(item.data, dict) and item.data.get("type") == "reset":
        return json.dumps(item.data)
    return None


@routes.get("/ws/feed")
@websocket_route
async def feed_ws(request: web.Request) -> web.WebSocketResponse:
    """Push each feed event as JSON {"seq", "ts", "data"}; ?since=SEQ replays kept events first."""
    # compress=False: the fast path writes plain frames
    async with topic_websocket(request, _topic(request), compress=False) as (ws, sub, replay,
                                                                               counters):
        pump = asyncio.create_task(pump_to_websocket(request, ws, sub, replay, counters,
                                                     render_feed))

        async def on_message(text: str) -> None:
            await ws.send_str(json.dumps({"type": "error",
                                          "detail": "this feed is read-only; send nothing"}))

        await run_websocket(ws, pump, on_message)
    return ws


async def _stop_source(app: web.Application) -> None:
    app[SOURCE].stop()


def setup(app: web.Application) -> None:
    app[SOURCE] = FeedSource(app[HUB])
    app.on_shutdown.append(_stop_source)
    app.add_routes(routes)


_EVENT = event_schema()
_SOURCE_STATE = {
    "type": "object",
    "properties": {
        "running": {"type": "boolean"}, "kind": {"enum": list(KINDS)},
        "rate_hz": {"type": "number"}, "row": {"type": "integer"}, "rows": {"type": "integer"},
        "seed": {"type": ["integer", "null"]}, "ticks_left": {"type": ["integer", "null"]},
        "symbol": {"type": "string"}, "price": {"type": "number"}, "last_seq": {"type": "integer"},
        "epoch": {"type": "string", "description": "the feed's current epoch"},
        "published_this_run": {"type": "integer"},
        "achieved_rate_hz": {"type": "number", "description": "events per second so far this run"},
        "behind_s": {"type": "number", "description": "how late the ticker is on its schedule"},
        "schedule_resets": {"type": "integer",
                            "description": "times it fell over 1 s behind and gave up catching up"},
        "keeping_up": {"type": "boolean", "description": "false once it could not keep its rate"},
    },
}
_RANGE_HEADERS = {
    "Feed-Last-Seq": {"schema": {"type": "integer"}, "description": "SEQ of the newest event"},
    "Feed-Oldest-Seq": {"schema": {"type": "integer"}, "description": "SEQ of the oldest kept"},
    "Feed-History-Limit": {"schema": {"type": "integer"}, "description": "events kept"},
}
JSON_BODY_ERRORS = {str(status): {"$ref": "#/components/responses/Problem"}
                    for status in (400, 415, 422)}
"""OpenAPI responses of a route that reads a JSON body with `read_json_object` and validates it."""
SINCE_PARAM = {
    "name": "since", "in": "query", "required": False,
    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
    "description": "Return events after this SEQ (without it: every kept event). Plain digits; "
                   "an empty value is refused. A SEQ the topic has not reached yet (above "
                   "Feed-Last-Seq) is refused with 422, one it no longer keeps with 410.",
}
EPOCH_PARAM = {
    "name": "epoch", "in": "query", "required": False,
    "schema": {"type": "string", "pattern": EPOCH_PATTERN},
    "description": "The epoch of the events the client already has (from their `epoch` or "
                   "Feed-Epoch). If the topic's history is another one now (the lab restarted), "
                   "the answer is 409 with the current `epoch` and `last_seq`: re-sync from a "
                   "snapshot, never mix two histories.",
}
_EPOCH_CONFLICT = {"$ref": "#/components/responses/Problem",
                   "description": "`epoch` is not the current history (type ends in "
                                  "epoch-changed): the body gives `epoch` and `last_seq`"}
HEARTBEAT_PARAM = {
    "name": "heartbeat", "in": "query", "required": False,
    "schema": {"type": "number", "minimum": MIN_HEARTBEAT_S, "maximum": MAX_HEARTBEAT_S},
    "description": "Seconds between server heartbeats (SSE: comment lines on an idle stream)",
}
WAIT_PARAM = {
    "name": "wait", "in": "query", "required": False,
    "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S, "default": 0},
    "description": "Long poll: hold the request up to this many seconds until an event arrives",
}


def poll_operation(summary: str, op_id: str, what: str) -> dict:
    """The OpenAPI operation of a route answered by `poll_response` (the feed, the chat room)."""
    return {
        "summary": summary,
        "operationId": op_id,
        "parameters": [SINCE_PARAM, EPOCH_PARAM, WAIT_PARAM],
        "responses": {
            "200": {"description": f"{what} after SEQ, oldest first ([] when none)",
                    "headers": _RANGE_HEADERS,
                    "content": {"application/json": {"schema": {"type": "array",
                                                                "items": _EVENT}}}},
            "409": _EPOCH_CONFLICT,
            "410": {"$ref": "#/components/responses/Problem",
                    "description": "`since` is older than the kept history: the body gives "
                                   "`oldest_seq`, `last_seq`, `missed` and `history_limit`"},
            "422": {"$ref": "#/components/responses/Problem",
                    "description": "A parameter is malformed or out of range, or `since` is "
                                   "ahead of the newest SEQ (never published; the server may "
                                   "have restarted): `errors` names the field, `last_seq` is "
                                   "the newest SEQ when `since` is ahead"},
        },
    }


OPENAPI_PATHS = {
    "/api/feed": {"get": poll_operation("Short or long poll of the feed", "feedPoll", "Events")},
    "/api/feed/source": {
        "get": {
            "summary": "The feed ticker's settings",
            "operationId": "feedSourceGet",
            "responses": {"200": {"description": "Ticker state",
                                  "content": {"application/json": {"schema": _SOURCE_STATE}}}},
        },
        "post": {
            "summary": "Start, change or stop the feed ticker",
            "operationId": "feedSourceSet",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["rate_hz"], "additionalProperties": False,
                "properties": {
                    "rate_hz": {"type": "number", "minimum": 0, "maximum": MAX_RATE_HZ},
                    "kind": {"enum": list(KINDS), "default": "walk",
                             "description": "a seeded random walk, or a replay of the sample "
                                            "series shipped with labkit"},
                    "start_row": {"type": "integer", "minimum": 0,
                                  "maximum": len(sample_series()) - 1, "default": 0,
                                  "description": "replay only: first row of the series"},
                    "seed": {"type": ["integer", "null"]},
                    "ticks": {"type": ["integer", "null"], "minimum": 0},
                    "start_price": {"type": ["number", "null"], "exclusiveMinimum": 0,
                                    "description": "walk only"},
                },
                # a replay's prices come from the series; only a replay has rows to start from
                "if": {"required": ["kind"], "properties": {"kind": {"const": "replay"}}},
                "then": {"properties": {"start_price": {"type": "null"}}},
                "else": {"properties": {"start_row": {"const": 0}}},
            }}}},
            "responses": {
                "200": {"description": "Ticker state",
                        "content": {"application/json": {"schema": _SOURCE_STATE}}},
                **JSON_BODY_ERRORS,
            },
        },
    },
    "/sse/feed": {
        "get": {
            "summary": "The feed as Server-Sent Events (id = \"<epoch>:<seq>\")",
            "operationId": "feedSse",
            "parameters": [
                {"name": "Last-Event-ID", "in": "header", "required": False,
                 "schema": {"type": "string", "pattern": r"^([A-Za-z0-9_-]{1,64}:)?(0|[1-9][0-9]{0,18})$"},
                 "description": "Resume after this event id, \"<epoch>:<seq>\" (browsers send "
                                "it when reconnecting; a bare SEQ is accepted too). From "
                                "another epoch: a `reset` event on the 200 stream"},
                {**SINCE_PARAM, "description": "Resume after this SEQ (when no Last-Event-ID)"},
                EPOCH_PARAM, HEARTBEAT_PARAM,
            ],
            "responses": {
                "200": {"description": "An event stream: `id: <epoch>:<seq>`, `data: {seq, epoch, "
                                       "ts, data}`; named events `gap` and `overflow` tell of "
                                       "lost events, `reset` of a history that was replaced "
                                       "({type, epoch, last_seq}: re-sync from a snapshot)",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                "409": _EPOCH_CONFLICT,
                "422": {"$ref": "#/components/responses/Problem"},
            },
        }
    },
}

ASYNCAPI_CHANNELS = {
    "feedWebSocket": {
        "address": "/ws/feed",
        "title": "Feed over WebSocket",
        "description": "Each feed event pushed as JSON {seq, ts, data}; ?since=SEQ replays kept "
                       "events first; a too-old SEQ gets {type: gap} first; a client that falls "
                       f"{QUEUE_LIMIT} events behind is closed with 1008.",
        "bindings": {"ws": {"query": {"type": "object", "properties": {
            "since": SINCE_PARAM["schema"], "epoch": EPOCH_PARAM["schema"],
            "heartbeat": HEARTBEAT_PARAM["schema"]}}}},
        "messages": {
            "event": {"name": "event", "payload": _EVENT},
            "reset": {"name": "reset", "payload": {"type": "object", "properties": {
                "type": {"const": "reset"}, "epoch": {"type": "string"},
                "last_seq": {"type": "integer"}}}},
            "gap": {"name": "gap", "payload": {"type": "object", "properties": {
                "type": {"const": "gap"}, "since": {"type": "integer"},
                "oldest_seq": {"type": "integer"}, "missed": {"type": "integer"}}}},
        },
        "sends": ["event", "gap", "reset"],
    },
    "feedSse": {
        "address": "/sse/feed",
        "title": "Feed over Server-Sent Events",
        "description": "text/event-stream; id is the SEQ; resumes from Last-Event-ID.",
        "messages": {"event": {"name": "event", "payload": _EVENT}},
        "sends": ["event"],
    },
}
