"""The Hub's bridge to Redis, so that several worker processes share one history per topic.

Without a backplane every lab process numbers its own events: two workers behind one front door
have two unrelated "feed" topics, and a subscriber on worker 2 never sees what worker 1 published.
With it, a bridged topic (the feed and the chat room) lives in Redis, the way Centrifugo's Redis
engine keeps a channel:

- `labkit:<topic>:meta`, a hash: `epoch` (random, created once; a new one only if Redis lost the
  topic) and `seq`, the last SEQ handed out.
- `labkit:<topic>:stream`, a Redis Stream of events (`seq`, `ts`, `data` as JSON), trimmed to the
  topic's history limit.

Publishing runs one Lua script (atomic in Redis): take the next SEQ, append the event to the stream.
So the stream order IS the SEQ order, one global order whichever worker published. Every worker
runs one reader task (`XREAD BLOCK` on all bridged streams) that stores each event in its local
`Topic` exactly as if it had published it, so everything the transports do (replay, `since=`,
long polls, slow consumers) works unchanged, on any worker, from the same SEQs and the same epoch.

A client that resumes on another worker (`?since=`, `Last-Event-ID`) may be a little ahead of that
worker's copy (it read SEQ 50 on worker 1 while worker 2 has stored 48): `catch_up_middleware`
first asks Redis for the newest SEQ and waits until the local copy has it, so the resume gets
nothing twice and nothing missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web

from .hub import HUB, Event, Hub, PublishUnavailable, Topic, new_epoch

if TYPE_CHECKING:  # redis is imported when a backplane attaches, not with this module
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

log = logging.getLogger("labkit.server")

PREFIX = "labkit:"
CATCH_UP_TIMEOUT_S = 2.0
"""How long a resuming request waits for this worker's copy to reach Redis's newest SEQ."""
READ_BLOCK_MS = 1000
"""How long one XREAD waits for new events before asking again."""

PUBLISH_DEADLINE_S = 2.0
"""A publish that Redis has not run within this many seconds never happens: the script refuses to
run after it (Redis's own clock), and the caller gets PublishUnavailable (a chat POST: 503 with
Retry-After) about REPLY_GRACE_S later at most. So a client is told either "published" (with its
SEQ) or "not published", never a 500 for a message that was in fact published."""
REPLY_GRACE_S = 0.5
"""How long after the deadline the caller still waits for Redis's reply (a script that ran just
before the deadline answers within it; one that did not run is refused by the script itself)."""
RETRY_AFTER_S = 2
"""The Retry-After (seconds) of a publish refused because Redis did not answer in time."""
SENT_KEY_TTL_S = 3600
"""How long Redis remembers a publish key (a chat message id or Idempotency-Key) for any worker:
a retry within this time is answered with the first message, published once."""
ANON_KEY_TTL_S = 60
"""TTL of the random key a publish without a client key gets (it makes a redis-py retry of the
same script call, after a lost connection, harmless)."""

# KEYS: meta hash, stream, once key. ARGV: fresh epoch (used only if the topic has none), ts,
# data, maxlen, deadline (ms since the epoch, Redis's clock), once key TTL (s).
# Returns {"late"} (not run: past the deadline), {"dup", stored event JSON} or {"new", seq, epoch}.
_PUBLISH = """
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[5]) then
  return {'late'}
end
local prior = redis.call('GET', KEYS[3])
if prior then
  return {'dup', prior}
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'seq', seq, 'epoch', epoch,
           'ts', ARGV[2], 'data', ARGV[3])
redis.call('SET', KEYS[3], '{"seq":' .. seq .. ',"epoch":"' .. epoch .. '","ts":' .. ARGV[2] ..
           ',"data":' .. ARGV[3] .. '}', 'EX', ARGV[6])
return {'new', seq, epoch}
"""


_Entry = tuple[str, dict[str, str]]
"""A stream entry as this client reads it (decode_responses=True): (entry id, fields). redis-py
types replies for every protocol and decoding at once (bytes | str | None, lists or dicts)."""


def keys(topic: str) -> tuple[str, str]:
    """Redis keys of a topic: (meta hash, stream)."""
    return f"{PREFIX}{topic}:meta", f"{PREFIX}{topic}:stream"


class RedisBackplane:
    """Bridges chosen topics of one Hub to Redis at `url` (redis://host:port/db)."""

    def __init__(self, url: str, topics: dict[str, dict]):
        self.url = url
        self.topic_limits = dict(topics)
        self._closing = False
        """Bridged topic names -> the limits to create them with (as `Hub.topic` takes them)."""
        self.redis: Redis | None = None
        self.hub: Hub | None = None
        self._script: AsyncScript | None = None
        self._last_ids: dict[str, str] = {}
        self._waiters: dict[tuple[str, int], asyncio.Future] = {}
        self._reader: asyncio.Task | None = None
        self.received = 0
        """Events this worker has read from Redis (and not already kept when it published them)."""
        self.kept_at_once = 0
        """Events this worker published and kept at once (the next SEQ here, so in order)."""
        self.resets = 0
        """New epochs (Redis lost a topic) this worker has told its live subscribers of."""

    # -- life cycle ------------------------------------------------------------------------
    async def attach(self, hub: Hub) -> None:
        """Connect, create the bridged topics with Redis's epoch and kept history, start reading."""
        import redis.asyncio as aioredis

        self.hub = hub
        self.redis = client = aioredis.Redis.from_url(self.url, decode_responses=True)
        self._script = client.register_script(_PUBLISH)
        for name, limits in self.topic_limits.items():
            meta, stream = keys(name)
            await client.hsetnx(meta, "epoch", new_epoch())
            epoch = await client.hget(meta, "epoch")
            if not isinstance(epoch, str):  # hsetnx just set it; decode_responses=True gives str
                raise RuntimeError(f"Redis has no epoch for topic {name!r}")
            topic = hub.topics.get(name)
            if topic is None:
                topic = hub.topic(name, **limits)
            topic.epoch, topic.bridge = epoch, self
            topic.history.clear()
            kept = cast("list[_Entry]", await client.xrevrange(stream, count=topic.history_limit))
            for _entry_id, fields in reversed(kept):
                topic.keep(_event(fields))
            self._last_ids[stream] = kept[0][0] if kept else "0-0"
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            # bounded: a blocking XREAD ends within READ_BLOCK_MS however redis-py takes the cancel
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reader), READ_BLOCK_MS / 1000 + 1)
            self._reader = None
        for future in self._waiters.values():
            future.cancel()
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None

    def _attached(self) -> tuple[Redis, Hub]:
        """The Redis client and the Hub of an attached backplane."""
        if self.redis is None or self.hub is None:
            raise RuntimeError("the backplane is not attached (call attach() first) or is closed")
        return self.redis, self.hub

    # -- publish and read ------------------------------------------------------------------
    async def publish(self, topic: Topic, data: Any) -> Event:
        """Number `data` in Redis's one order and return the Event (stored here too unless this
        worker's reader lags). Raises PublishUnavailable if Redis did not take it in time."""
        return (await self.publish_once(topic, data, None))[0]

    async def publish_once(self, topic: Topic, data: Any, key: str | None) -> tuple[Event, bool]:
        """Publish `data` unless `key` was published by any worker within SENT_KEY_TTL_S: (the
        event, whether it is the earlier one). Check and publish are one Lua script (atomic).

        Within PUBLISH_DEADLINE_S (+ REPLY_GRACE_S) it either returns the published event or
        raises PublishUnavailable, and then it did not happen: the script refuses to run once the
        deadline has passed on Redis's clock (a stalled Redis runs queued commands when it wakes)."""
        from redis.exceptions import RedisError

        if self._script is None:
            raise RuntimeError("the backplane is not attached (call attach() first)")
        meta, stream = keys(topic.name)
        once = f"{PREFIX}{topic.name}:once:" + (key or "anon:" + uuid.uuid4().hex)
        payload = json.dumps(data, separators=(",", ":"))
        ts = repr(time.time())
        deadline_ms = int((time.time() + PUBLISH_DEADLINE_S) * 1000)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + PUBLISH_DEADLINE_S + REPLY_GRACE_S
        try:
            async with asyncio.timeout_at(give_up):
                reply = await self._script(
                    keys=[meta, stream, once],
                    args=[new_epoch(), ts, payload, topic.history_limit, deadline_ms,
                          SENT_KEY_TTL_S if key else ANON_KEY_TTL_S])
        except (TimeoutError, OSError, RedisError) as exc:
            raise unavailable(exc) from None
        if reply[0] == "late":
            raise unavailable("Redis ran the publish after its deadline, so it refused it")
        if reply[0] == "dup":
            first = json.loads(reply[1])
            return Event(first["seq"], first["ts"], first["data"], first["epoch"]), True
        seq, epoch = int(reply[1]), reply[2]
        if topic.epoch == epoch and topic.last_seq == seq - 1:
            # the next SEQ here: keep it now (the reader skips its copy), so the publisher's own
            # subscribers and its reply do not wait for the round trip through the reader
            self.kept_at_once += 1
            return topic.keep(Event(seq, float(ts), json.loads(payload), epoch)), False
        if topic.last_seq >= seq and topic.epoch == epoch:
            with contextlib.suppress(LookupError):
                return _find(topic, seq), False
        future = self._waiters.setdefault((topic.name, seq), loop.create_future())
        try:  # read-your-writes on this worker, but never past the deadline: it did happen
            async with asyncio.timeout_at(give_up):
                return await future, False
        except TimeoutError:
            return Event(seq, float(ts), json.loads(payload), epoch), False
        finally:
            self._waiters.pop((topic.name, seq), None)

    async def _read(self) -> None:
        """Store every event of the bridged streams, in stream order, in the local topics.

        It reads on a connection of its own, outside redis-py's pool: one XREAD BLOCK after the
        other, so each event costs one send and one parsed reply (the pool's take, check and
        give back of a connection per command cost about as much as parsing the reply)."""
        names = {keys(name)[1]: name for name in self.topic_limits}
        client, hub = self._attached()
        conn = None
        try:
            while True:
                try:
                    if conn is None:
                        conn = client.connection_pool.make_connection()
                        await conn.connect()
                    streams = list(self._last_ids)
                    await conn.send_command("XREAD", "COUNT", 1000, "BLOCK", READ_BLOCK_MS,
                                            "STREAMS", *streams,
                                            *(self._last_ids[s] for s in streams))
                    reply = await conn.read_response()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - Redis away for a moment: say so, retry
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            await conn.disconnect(nowait=True)
                        conn = None
                    task = asyncio.current_task()
                    if self._closing or (task is not None and task.cancelling()):
                        return  # closing: a cancelled blocking read can surface as an error
                    log.warning("backplane: reading from Redis failed (%s); retrying", exc)
                    await asyncio.sleep(0.2)
                    continue
                for stream, entries in _batches(reply):
                    topic = hub.topic(names[stream])
                    for entry_id, flat in entries:
                        self._last_ids[stream] = entry_id
                        self._deliver(topic, _event(dict(zip(flat[::2], flat[1::2],
                                                             strict=True))))
        finally:
            if conn is not None:  # a cancelled XREAD leaves its reply unread: drop the socket
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)

    def _deliver(self, topic: Topic, event: Event) -> None:
        if event.epoch != topic.epoch:  # Redis lost the topic and began a new history:
            topic.reset(event.epoch, event.seq - 1)  # live subscribers get a `reset` first
            self.resets += 1
        if event.seq <= topic.last_seq:
            return  # already stored (never deliver twice)
        topic.keep(event)
        self.received += 1
        future = self._waiters.pop((topic.name, event.seq), None)
        if future is not None and not future.done():
            future.set_result(event)

    async def catch_up(self) -> None:
        """Wait until every bridged topic here holds the newest SEQ Redis has handed out."""
        client, hub = self._attached()
        async with client.pipeline(transaction=False) as pipe:
            for name in self.topic_limits:
                pipe.hget(keys(name)[0], "seq")
            newest = await pipe.execute()
        deadline = asyncio.get_running_loop().time() + CATCH_UP_TIMEOUT_S
        for name, seq in zip(self.topic_limits, newest, strict=True):
            topic = hub.topic(name)
            while seq is not None and topic.last_seq < int(seq):
                if asyncio.get_running_loop().time() > deadline:
                    return
                await asyncio.sleep(0.002)

    def stats(self) -> dict:
        return {"url": self.url, "topics": sorted(self.topic_limits), "received": self.received,
                "kept_at_once": self.kept_at_once, "resets": self.resets}


def unavailable(cause: object) -> PublishUnavailable:
    """The PublishUnavailable of a publish Redis did not take (it did not happen)."""
    return PublishUnavailable(
        f"not published: Redis did not take it within {PUBLISH_DEADLINE_S:g} s ({cause}); "
        f"it will not be published later: retry in {RETRY_AFTER_S} s (with the same "
        "Idempotency-Key or message id, a retry is published at most once)", RETRY_AFTER_S)


def _batches(reply: Any) -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """A raw XREAD reply as (stream, [(entry id, [field, value, ...]), ...]) pairs: RESP3 (redis-py's
    default) answers a map, RESP2 a list of pairs, a timed-out BLOCK nothing."""
    if not reply:
        return []
    return list(reply.items()) if isinstance(reply, dict) else [tuple(pair) for pair in reply]


def _event(fields: dict) -> Event:
    return Event(int(fields["seq"]), float(fields["ts"]), json.loads(fields["data"]),
                 fields["epoch"])


def _find(topic: Topic, seq: int) -> Event:
    for event in reversed(topic.history):
        if event.seq == seq:
            return event
    raise LookupError(f"SEQ {seq} of {topic.name!r} is no longer kept")


BACKPLANE = web.AppKey("backplane", RedisBackplane)


def _resuming(request: web.Request) -> bool:
    return "since" in request.query or "Last-Event-ID" in request.headers


@web.middleware
async def catch_up_middleware(request: web.Request, handler):
    """Before a resume (`since=` or `Last-Event-ID`), let this worker's copy reach Redis's newest
    SEQ, so a client coming from another worker is never "ahead" here."""
    backplane = request.app.get(BACKPLANE)
    if backplane is not None and _resuming(request):
        with contextlib.suppress(Exception):  # Redis away: serve from what is stored here
            await backplane.catch_up()
    return await handler(request)


def use_redis(app: web.Application, url: str, topics: dict[str, dict]) -> None:
    """Bridge `app`'s hub to Redis at `url` for `topics` (name -> Topic options such as
    history_limit; call before the app starts)."""
    app[BACKPLANE] = RedisBackplane(url, topics)
    app.middlewares.append(catch_up_middleware)

    async def _attach(app: web.Application) -> None:
        await app[BACKPLANE].attach(app[HUB])

    async def _close(app: web.Application) -> None:
        await app[BACKPLANE].close()

    app.on_startup.append(_attach)
    app.on_cleanup.append(_close)
