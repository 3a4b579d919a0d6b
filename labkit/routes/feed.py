"""Route family "feed": one live price feed, readable four ways from the same Hub topic.

- short poll  `GET /api/feed?since=SEQ`           events after SEQ now (`[]` when none)
- long poll   `GET /api/feed?since=SEQ&wait=S`    held until an event arrives or S seconds pass
- SSE         `GET /sse/feed`                     `id:` is "<epoch>:<seq>"; resumes from `Last-Event-ID`
- WebSocket   `WS /ws/feed?since=SEQ&epoch=E`     each event as JSON {"seq", "epoch", "ts", "data"}

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
whose data has "type": "reset" reaches a live stream the same way (a Redis backplane that finds a
new epoch sends one to every live subscriber).

Resuming with `since=SEQ` (SEQ > 0) but no epoch: a SEQ means nothing without its history, and
after a restart the new history's SEQ 800 looks like the old one's. Never a silent skip:
- a long poll (`wait` > 0, a resume loop) is refused with 428 problem+json (type ending in
  `epoch-required`, with the current `epoch` and `last_seq`): refusing is safe there, the client
  asks again with the epoch at once, and an array of events has no room for a notice;
- a stream (WebSocket, SSE with a bare Last-Event-ID or `?since=`) replays the kept events after
  SEQ and then, before any live event, a `reset` ({"type": "reset", "epoch", "last_seq", "since",
  "detail"}; SSE: `event: reset`) naming the history they count in: a client from another epoch
  learns it must re-sync, and a blind client in the same history (lesson 06's subscribers, IoT
  devices) loses nothing. Refusing the upgrade instead would strand every such client in a
  reconnect loop;
- a short poll is a one-off read and is answered as before: every event and `Feed-Epoch` name
  the epoch. The kit's own clients always send the epoch they know.

Heartbeats (options per request): `?heartbeat=S` on a WebSocket route makes the server ping a
silent peer every S seconds and drop a peer whose pong does not come (`MaskCheck`'s heartbeat); on
SSE it sets how often an idle stream gets a comment line; a long poll's `wait` bounds how long an
answer can be missing.

Slow consumers: a WebSocket that falls QUEUE_LIMIT events behind is closed with 1008 and a reason
naming the SEQ to resume from. Its socket's buffer is bounded, so the Close frame waits behind what
is already buffered for up to SLOW_CLOSE_GRACE_S (a reader that catches up within that time gets
it); a peer that never reads again is then cut off. Clients must resume from the last SEQ they
received themselves (the kit's clients do), so a bare EOF loses nothing either.

Size: longer than 500 lines because one feed read four ways (short poll, long poll, SSE, WebSocket)
from one topic, with each route's OpenAPI and AsyncAPI description beside it; the streaming itself
is labkit/streaming/sockets.py.
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

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from labkit.server.problem import ProblemError
from labkit.server.validate import JSONInputError, json_integer, load_json, query_number
from labkit.streaming.hub import (
    HUB,
    QUEUE_LIMIT,
    Ahead,
    EpochMismatch,
    Event,
    Gap,
    Hub,
    Notice,
    SlowConsumer,
    Topic,
    ahead_problem,
    epoch_problem,
    epoch_required_problem,
    event_schema,
    gap_problem,
    subscribe_resuming,
)
from labkit.streaming.sockets import (
    EPOCH_PATTERN,
    MAX_HEARTBEAT_S,
    MAX_SEQ,
    MIN_HEARTBEAT_S,
    SEND_TIMEOUT_S,
    parse_epoch,
    parse_heartbeat,
    parse_seq,
    pump_sse,
    pump_to_websocket,
    run_websocket,
    send_message,
    sse_id,
    topic_websocket,
)

from .core import websocket_route

TOPIC = "feed"
MAX_WAIT_S = 30.0
"""Longest a long poll may ask to be held (seconds)."""
MAX_RATE_HZ = 1000.0
"""Fastest ticker rate the source accepts (events per second)."""
SSE_PING_S = 15.0
"""An idle SSE stream gets a comment line this often (seconds), so proxies keep it open."""
"""Range of `?heartbeat=S` (seconds) on the WebSocket and SSE routes."""
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

    def __init__(self, hub: Hub) -> None:
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
    if since and wait > 0 and epoch is None:  # a resume loop that could skip a new history
        raise epoch_required_problem(topic, since)
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
    if errors or rate is None or start_row is None:  # a None always comes with its error
        raise ProblemError(422, "invalid feed source settings", errors=errors)
    source = request.app[SOURCE]
    source.configure(float(rate), seed, ticks, None if price is None else float(price), kind,
                     start_row)
    return web.json_response(source.state())


SSE_RETRY_MS = 1000
"""Reconnection delay an SSE stream asks browsers to use (the `retry:` field, milliseconds)."""




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
            await pump_sse(request, sub, replay, counters)
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
    """Push each feed event as JSON {"seq", "epoch", "ts", "data"}; ?since=SEQ&epoch=E replays
    kept events first."""
    # compress=False: the fast path writes plain frames
    async with topic_websocket(request, _topic(request), compress=False) as (ws, sub, replay,
                                                                               counters):
        pump = asyncio.create_task(pump_to_websocket(request, ws, sub, replay, counters,
                                                     render_feed))

        async def on_message(text: str) -> None:
            await send_message(ws, json.dumps({"type": "error",
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
        "description": "Each feed event pushed as JSON {seq, epoch, ts, data}; ?since=SEQ&epoch=E "
                       "replays kept "
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
        "description": "text/event-stream; id is \"<epoch>:<seq>\"; resumes from Last-Event-ID.",
        "messages": {"event": {"name": "event", "payload": _EVENT}},
        "sends": ["event"],
    },
}
