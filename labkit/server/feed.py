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
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import io
import json
import math
import random
from importlib import resources

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp_sse import EventSourceResponse
from websockets.frames import Frame, Opcode

from .core import websocket_route
from .hub import (
    HUB,
    QUEUE_LIMIT,
    Ahead,
    Event,
    Gap,
    SlowConsumer,
    Subscription,
    Topic,
    ahead_problem,
    event_schema,
    gap_problem,
    subscribe_resuming,
)
from .problem import ProblemError
from .validate import json_integer, query_integer, query_number
from .websocket import accept

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

    def state(self) -> dict:
        """Settings and progress, as `GET /api/feed/source` answers them."""
        return {"running": self.running, "kind": self.kind, "rate_hz": self.rate_hz,
                "seed": self.seed, "ticks_left": self.ticks_left, "symbol": self.symbol,
                "price": self.price, "row": self.row, "rows": len(sample_series()),
                "last_seq": self.hub.topic(TOPIC).last_seq}

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
        while self.ticks_left is None or self.ticks_left > 0:
            self.hub.publish(TOPIC, self.step())
            if self.ticks_left is not None:
                self.ticks_left -= 1
            next_at += self._timing.expovariate(1.0) * period
            delay = next_at - loop.time()
            if delay < -1.0:  # fell a second behind (busy machine): do not burst to catch up
                next_at, delay = loop.time(), 0.0
            await asyncio.sleep(max(delay, 0.0))


SOURCE = web.AppKey("feed_source", FeedSource)


def _topic(request: web.Request) -> Topic:
    return request.app[HUB].topic(TOPIC)


def parse_seq(raw: str | None, name: str = "since") -> int | None:
    """A SEQ from the query or a header: None when absent; 422 naming `name` unless it is written
    as plain digits from 0 to MAX_SEQ (an empty value is not "absent": it is refused too)."""
    return None if raw is None else query_integer(raw, name, 0, MAX_SEQ)


def _parse_wait(raw: str | None) -> float:
    """Seconds a long poll may be held: 0 when absent; 422 unless a number from 0 to MAX_WAIT_S."""
    return 0.0 if raw is None else query_number(raw, "wait", 0.0, MAX_WAIT_S)


def _range_headers(topic: Topic) -> dict:
    return {"Feed-Last-Seq": str(topic.last_seq), "Feed-Oldest-Seq": str(topic.oldest_seq),
            "Feed-History-Limit": str(topic.history_limit), "Cache-Control": "no-store"}


async def poll_response(request: web.Request, topic: Topic) -> web.Response:
    """Answer a short or long poll of `topic` (shared by the feed and the chat room)."""
    since = parse_seq(request.query.get("since"))
    wait = _parse_wait(request.query.get("wait"))
    counters = topic.counters("long_poll" if wait > 0 else "short_poll")
    counters.requests += 1
    try:
        if since is None:
            events = topic.since(None)
        else:
            events = await topic.wait_after(since, wait)
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
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
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


def _sse_since(request: web.Request) -> tuple[int | None, str]:
    """Where an SSE client resumes, and the name it came in: the Last-Event-ID header (what a
    reconnecting browser sends) wins over ?since=."""
    header = request.headers.get("Last-Event-ID")
    if header is not None:
        return parse_seq(header, "Last-Event-ID"), "Last-Event-ID"
    return parse_seq(request.query.get("since")), "since"


@routes.get("/sse/feed")
async def feed_sse(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events of the feed; id is the SEQ; resumes after Last-Event-ID (or ?since=)."""
    topic = _topic(request)
    since, name = _sse_since(request)
    sub, replay, gap = subscribe_resuming(topic, "sse", since, name)
    counters = topic.counters("sse")
    response = EventSourceResponse(ping_interval=SSE_PING_S, send_timeout=SEND_TIMEOUT_S)
    try:
        await response.prepare(request)

        async def send(text: str, **kw) -> None:
            await response.send(text, **kw)
            counters.bytes_sent += len(text)

        if gap is not None:
            await send(json.dumps(gap.as_dict()), event="gap")
        items = replay
        while True:
            for event in items:
                await send(event.json, id=str(event.seq))
                counters.delivered += 1
                sub.last_seq = event.seq
            try:
                items = await sub.get()
            except SlowConsumer as exc:
                await send(json.dumps({"detail": str(exc), "last_seq": sub.last_seq}),
                           event="overflow")
                break
            if not items:  # closed: the server is stopping
                break
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
        # the pump may be waiting for this very client to drain: close from another task
        closing.append(asyncio.ensure_future(
            close_or_abort(request, ws, SLOW_CLOSE_CODE, _slow_reason(sub))))

    sub.on_overflow = on_overflow
    try:
        if ws.compress:
            await _pump_compressed(ws, sub, replay, counters, render)
        else:
            await _pump_frames(request, ws, sub, replay, counters, render)
    except SlowConsumer:
        if closing:
            await asyncio.gather(*closing, return_exceptions=True)
    except (ConnectionResetError, RuntimeError):
        return  # the client went away while we were writing
    finally:
        sub.sink = None


def text_frame(text: str) -> bytes:
    """An unmasked, unfragmented WebSocket text frame (what a server sends) holding `text`."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


async def _pump_frames(request: web.Request, ws: web.WebSocketResponse, sub: Subscription,
                       replay: list, counters, render) -> None:
    """The fast path of `pump_to_websocket`: pre-encoded frames written to the socket itself."""
    transport, writer = request.transport, request.writer
    if transport is None:
        return
    high_water = transport.get_write_buffer_limits()[1]
    burst = sub.topic.burst
    pending: list[bytes] = []  # frames held back until the end of this loop iteration
    pending_size = [0]
    wrote_in = [-1]  # burst.token of the loop iteration in which the sink last wrote directly

    def encode(item) -> bytes | None:
        text = render(item)
        return None if text is None else text_frame(text)

    def account(item, frame: bytes) -> None:
        if isinstance(item, Event):  # the frame is (about to be) in the socket's buffer
            sub.last_seq = item.seq
            counters.delivered += 1
        counters.bytes_sent += len(frame) - _header_len(frame)

    def can_write() -> bool:
        return not ws.closed and not transport.is_closing()

    def flush() -> None:
        """Write the frames the sink held back in one go (a burst of events: one write)."""
        if pending and can_write():
            transport.write(b"".join(pending))
        pending.clear()
        pending_size[0] = 0

    def sink(item) -> bool:
        """Take the item if the socket has room, else decline so that the hub queues it. The first
        frame of a loop iteration is written at once (lowest latency for a single event); later
        ones are held back and written together when the topic's `Burst` ends the iteration."""
        if not can_write() or transport.get_write_buffer_size() + pending_size[0] > high_water:
            return False
        frame = item.encoded(render, encode)
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
            transport.write(frame)
        account(item, frame)
        return True

    def write_batch(items) -> None:
        flush()  # frames the sink took come first
        frames = []
        for item in items:
            frame = item.encoded(render, encode)
            if frame is not None:
                frames.append(frame)
                account(item, frame)
        if frames:
            transport.write(b"".join(frames))

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


def _slow_reason(sub: Subscription) -> str:
    return f"too slow: resume with since={sub.last_seq}"


async def close_or_abort(request: web.Request, ws: web.WebSocketResponse, code: int,
                         reason: str) -> None:
    """Close `ws` with `code`; a peer that does not take the Close frame within SEND_TIMEOUT_S
    is cut off (its socket, `request.transport`, is aborted)."""
    try:
        async with asyncio.timeout(SEND_TIMEOUT_S):
            await ws.close(code=code, message=reason.encode()[:123])
    except (TimeoutError, ConnectionResetError, RuntimeError):
        transport = request.transport
        if transport is not None:
            transport.abort()


async def run_websocket(ws: web.WebSocketResponse, pump: asyncio.Task, on_message) -> None:
    """Read the client's messages with `on_message` while `pump` sends; end both together."""
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await on_message(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.close(code=WSCloseCode.UNSUPPORTED_DATA,
                               message=b"binary messages are not accepted here")
                break
            if pump.done():
                break
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump


@contextlib.asynccontextmanager
async def topic_websocket(request: web.Request, topic: Topic, *, compress: bool = True,
                          first: tuple[dict, ...] = ()):
    """Subscribe after ?since=SEQ, open the WebSocket, send `first` messages and any gap notice,
    then yield (ws, subscription, replay, counters); the subscription is closed on the way out.

    Shared by every WebSocket route that streams a hub topic (the feed, the chat room). Refusals
    (a bad or never-published SEQ) happen before the upgrade, as problem+json.
    """
    since = parse_seq(request.query.get("since"))
    sub, replay, gap = subscribe_resuming(topic, "ws", since)
    try:
        ws = await accept(request, compress=compress)
        for message in first:
            await ws.send_str(json.dumps(message))
        if gap is not None:
            await ws.send_str(json.dumps({"type": "gap", **gap.as_dict()}))
        yield ws, sub, replay, topic.counters("ws")
    finally:
        sub.close()


@routes.get("/ws/feed")
@websocket_route
async def feed_ws(request: web.Request) -> web.WebSocketResponse:
    """Push each feed event as JSON {"seq", "ts", "data"}; ?since=SEQ replays kept events first."""
    # compress=False: the fast path writes plain frames
    async with topic_websocket(request, _topic(request), compress=False) as (ws, sub, replay,
                                                                               counters):
        pump = asyncio.create_task(pump_to_websocket(request, ws, sub, replay, counters))

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
        "parameters": [SINCE_PARAM, WAIT_PARAM],
        "responses": {
            "200": {"description": f"{what} after SEQ, oldest first ([] when none)",
                    "headers": _RANGE_HEADERS,
                    "content": {"application/json": {"schema": {"type": "array",
                                                                "items": _EVENT}}}},
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
            "summary": "The feed as Server-Sent Events (id = SEQ)",
            "operationId": "feedSse",
            "parameters": [
                {"name": "Last-Event-ID", "in": "header", "required": False,
                 "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
                 "description": "Resume after this SEQ (browsers send it when reconnecting)"},
                {**SINCE_PARAM, "description": "Resume after this SEQ (when no Last-Event-ID)"},
            ],
            "responses": {
                "200": {"description": "An event stream: `id: SEQ`, `data: {seq, ts, data}`; "
                                       "named events `gap` and `overflow` tell of lost events",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}}},
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
            "since": SINCE_PARAM["schema"]}}}},
        "messages": {
            "event": {"name": "event", "payload": _EVENT},
            "gap": {"name": "gap", "payload": {"type": "object", "properties": {
                "type": {"const": "gap"}, "since": {"type": "integer"},
                "oldest_seq": {"type": "integer"}, "missed": {"type": "integer"}}}},
        },
        "sends": ["event", "gap"],
    },
    "feedSse": {
        "address": "/sse/feed",
        "title": "Feed over Server-Sent Events",
        "description": "text/event-stream; id is the SEQ; resumes from Last-Event-ID.",
        "messages": {"event": {"name": "event", "payload": _EVENT}},
        "sends": ["event"],
    },
}
