"""The Hub: topics of sequence-numbered events that every push transport reads.

A topic numbers its events 1, 2, 3, ... (never reused) and keeps the last `history_limit` of them,
so a client that comes back can ask for "everything after SEQ". Asking for a SEQ older than what
is kept raises `Gap`: the transports turn that into an HTTP 410 or an explicit "gap" notice, never
a silent skip.

Live subscribers each get a bounded queue (`queue_limit` items). Slow-consumer policy: when a
subscriber's queue is full the hub drops that subscriber's queue (memory stays bounded), marks it
`overflowed` and counts the drop; its transport then tells the client (WebSocket close 1008 with a
reason saying which SEQ to resume from, an SSE "overflow" event) and ends the stream. Publishing
never waits for any subscriber, so one slow client slows nobody else.

Fast path: a transport may give a subscription a `sink`, a function that delivers an item at once
(e.g. writes an already-encoded WebSocket frame to a socket that has room) and says whether it did.
`push` offers an item to the sink only while that subscriber's queue is empty, so an item never
overtakes one that is waiting; when the sink declines (socket backed up, closing) the item is queued
and the bounded-queue policy above applies unchanged. Sinks of one topic share its `Burst`: the
first item a subscriber gets in a loop iteration is written at once, later ones are held back and
written together at the end of the iteration by ONE callback per topic (not one per subscriber).

`Hub.publish` is safe from any thread: on the server's loop it runs at once, from another thread it
is handed to the loop with `call_soon_threadsafe` and the caller gets the Event when it is stored.

Several processes (a cluster's workers) share a topic through a backplane (`backplane.py`, Redis):
the topic's `bridge` then numbers its events in one global order and every worker stores them with
`Topic.keep`; handlers publish to such a topic with `await hub.apublish(...)`.

Epoch: a topic's history lives as long as its incarnation (an in-memory lab forgets it on restart).
Each incarnation gets a new random `epoch` token and every event carries it, so a client that
resumes with `since=SEQ&epoch=E` from another incarnation is told (`EpochMismatch`, 409 over HTTP)
instead of getting events of another history or a silent gap. With a shared backplane (Redis) all
workers share one epoch per topic, and a new one (Redis lost the topic) reaches every live
subscriber as a `reset` Notice (`Topic.reset`). A resume with `since` but no epoch is never
silently served: a long poll gets 428 (`epoch_required_problem`), a stream gets a `reset` naming
the epoch right after its replay (`subscribe_resuming`); routes/feed.py says why each.

Times: `ts` is `time.time()` (wall clock, seconds) when the event was published; clients on the
same machine compute staleness as their own `time.time()` minus `ts`.

Size: longer than 500 lines because topics, subscriptions, epochs, gaps and the burst writer are one
data structure with one set of invariants (SEQ order, bounded history, bounded queues); its routes
are in labkit/routes/hub.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from labkit.server.problem import ProblemError

if TYPE_CHECKING:  # backplane imports this module
    from .backplane import RedisBackplane

HISTORY_LIMIT = 1000
"""Events a topic keeps for clients that resume (older ones are forgotten)."""

QUEUE_LIMIT = 256
"""Items a live subscriber may have waiting before it counts as a slow consumer."""

PUBLISH_TIMEOUT_S = 5.0
"""How long a publish from another thread waits for the server loop to store the event."""

MAX_ONCE_KEYS = 10_000
"""Publish keys (`Hub.apublish_once`) an unbridged topic remembers (oldest forgotten first)."""


def event_schema(data: dict | None = None) -> dict:
    """JSON Schema of an event as every transport sends it: {"seq", "epoch", "ts", "data"};
    `data` narrows the schema of the payload (an object by default)."""
    return {
        "type": "object",
        "required": ["seq", "epoch", "ts", "data"],
        "properties": {
            "seq": {"type": "integer", "minimum": 1, "description": "per topic, from 1, never reused"},
            "epoch": {"type": "string", "minLength": 1,
                      "description": "incarnation of the topic's history; SEQs count within it"},
            "ts": {"type": "number", "description": "time.time() when published (s)"},
            "data": data or {"type": "object"},
        },
    }


@dataclass(frozen=True)
class Event:
    """One published event: `seq` (per topic, from 1), `ts` (time.time() at publish), `data`,
    `epoch` (the incarnation of the topic's history that `seq` counts in)."""

    seq: int
    ts: float
    data: Any
    epoch: str = ""
    _json: list = field(default_factory=list, compare=False, repr=False)
    _encoded: dict = field(default_factory=dict, compare=False, repr=False)

    def as_dict(self) -> dict:
        return {"seq": self.seq, "epoch": self.epoch, "ts": self.ts, "data": self.data}

    @property
    def json(self) -> str:
        """The event as JSON text, encoded once however many subscribers receive it."""
        if not self._json:
            self._json.append(json.dumps(self.as_dict(), separators=(",", ":")))
        return self._json[0]

    def encoded(self, key: Any, encode: Callable[[Any], Any]) -> Any:
        """`encode(self)`, computed once per `key` however many subscribers send it."""
        return _memo(self._encoded, key, encode, self)


@dataclass(frozen=True)
class Notice:
    """An unsequenced, unstored item for live subscribers only (e.g. "someone is typing", or a
    `reset`: {"type": "reset", "epoch", "last_seq"}, the topic's history was replaced)."""

    data: Any
    _encoded: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def json(self) -> str:
        """The notice's data as JSON text (what a transport without its own rendering sends)."""
        return json.dumps(self.data, separators=(",", ":"))

    def encoded(self, key: Any, encode: Callable[[Any], Any]) -> Any:
        """`encode(self)`, computed once per `key` however many subscribers send it."""
        return _memo(self._encoded, key, encode, self)


def _memo(cache: dict, key: Any, encode: Callable[[Any], Any], item: Any) -> Any:
    """`cache[key]`, filled with `encode(item)` the first time."""
    try:
        return cache[key]
    except KeyError:
        value = cache[key] = encode(item)
        return value


class Gap(Exception):
    """The SEQ asked for is older than the topic's history: some events after it are gone."""

    def __init__(self, topic: str, since: int, oldest: int, last: int, limit: int):
        self.topic, self.since, self.oldest, self.last, self.limit = topic, since, oldest, last, limit
        self.missed = oldest - since - 1
        super().__init__(
            f"events {since + 1}..{oldest - 1} of topic {topic!r} are no longer kept (the hub keeps "
            f"the last {limit}); the oldest kept is {oldest}"
        )

    def as_dict(self) -> dict:
        return {"since": self.since, "oldest_seq": self.oldest, "last_seq": self.last,
                "missed": self.missed, "history_limit": self.limit}


class Ahead(Exception):
    """The SEQ asked for was never published (the server may have restarted since)."""

    def __init__(self, message: str, last: int = 0):
        self.last = last
        super().__init__(message)


class EpochMismatch(Exception):
    """The client resumes in another incarnation of the topic's history (e.g. before a restart):
    its SEQ means nothing here. `.epoch` is the current epoch, `.last` the current last SEQ."""

    def __init__(self, topic: str, asked: str, epoch: str, last: int):
        self.topic, self.asked, self.epoch, self.last = topic, asked, epoch, last
        super().__init__(
            f"epoch {asked!r} is not the current history of topic {topic!r} (epoch {epoch!r}, "
            f"last SEQ {last}): its events are gone; re-sync from a snapshot, then resume with "
            f"since={last}&epoch={epoch}"
        )

    def as_dict(self) -> dict:
        return {"epoch": self.epoch, "last_seq": self.last}


class SlowConsumer(Exception):
    """This subscriber fell `queue_limit` items behind and was dropped."""


class PublishUnavailable(Exception):
    """A publish that certainly did not happen (the backplane's store did not take it within its
    deadline, and will not take it later): tell the client to retry in `retry_after` s."""

    def __init__(self, message: str, retry_after: float = 1.0):
        self.retry_after = retry_after
        super().__init__(message)


@dataclass
class Counters:
    """What one transport did on one topic. bytes_sent counts payload bytes the server wrote
    (HTTP bodies, SSE event text, WebSocket message text); HTTP and frame headers are not in it."""

    delivered: int = 0
    dropped: int = 0
    requests: int = 0
    bytes_sent: int = 0


class Burst:
    """What the sinks of one topic delivered during the current loop iteration.

    A sink writes a subscriber's first item of the iteration at once (`token` tells it whether it
    already did) and calls `wrote()`; later items of the same iteration (a burst of publishes) it
    holds back and registers its flush function with `hold(flush)`. The first `wrote()` or `hold()`
    of an iteration schedules one callback; it starts the next iteration (new `token`) and calls
    the held flush functions in the order they were registered. So a fan-out of one event to 1,000
    subscribers schedules one callback, and a burst of events costs each socket two writes.
    """

    __slots__ = ("token", "_scheduled", "_held")

    def __init__(self) -> None:
        self.token = 0
        self._scheduled = False
        self._held: list[Callable[[], None]] = []

    def wrote(self) -> None:
        """A sink wrote directly in this iteration: make sure the iteration's end is scheduled."""
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._end)

    def hold(self, flush: Callable[[], None]) -> None:
        """A sink holds items back: call `flush` at the end of this iteration."""
        self._held.append(flush)
        self.wrote()

    def _end(self) -> None:
        self._scheduled = False
        self.token += 1
        held, self._held = self._held, []
        for flush in held:
            try:
                flush()
            except Exception as exc:  # noqa: BLE001 - one broken socket must not hold back others
                asyncio.get_running_loop().call_exception_handler(
                    {"message": "flushing held-back items failed", "exception": exc})


class Subscription:
    """A live reader of one topic with a bounded queue. `await get()` returns the waiting items.

    `sink` (optional, set by the transport): called with an item while nothing is queued; returns
    True if it delivered the item itself (then the item is not queued), False to queue it.
    """

    def __init__(self, topic: Topic, transport: str, queue_limit: int):
        self.topic, self.transport, self.queue_limit = topic, transport, queue_limit
        self.overflowed = False
        self.closed = False
        self.last_seq = topic.last_seq
        """SEQ of the last event its transport delivered (the transport keeps it up to date)."""
        self.on_overflow: Callable[[], None] | None = None
        """Called once when this subscriber overflows (a transport blocked on a write uses it)."""
        self.sink: Callable[[Event | Notice], bool] | None = None
        self._items: deque = deque()
        self._waiter: asyncio.Future | None = None

    def __len__(self) -> int:
        """Items waiting to be taken."""
        return len(self._items)

    def push(self, item: Event | Notice) -> None:
        """Queue an item (never waits). A full queue marks this subscriber as a slow consumer."""
        if self.closed or self.overflowed:
            return
        if not self._items and self.sink is not None and self.sink(item):
            return  # delivered at once: nothing was waiting, so order is kept
        if len(self._items) >= self.queue_limit:
            if isinstance(item, Notice):  # ephemeral: dropping it is harmless
                self.topic.counters(self.transport).dropped += 1
                return
            self.overflowed = True
            self.topic.counters(self.transport).dropped += len(self._items) + 1
            self._items.clear()
            if self.on_overflow is not None:
                self.on_overflow()
        else:
            self._items.append(item)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> list:
        """Wait for items and take them all. [] once closed; SlowConsumer once overflowed."""
        await self.wait()
        return self.take()

    async def wait(self) -> None:
        """Wait until there are items to take, or this subscription is closed or overflowed."""
        while not self._items and not self.overflowed and not self.closed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def take(self) -> list:
        """Take every waiting item now ([] if none). Raises SlowConsumer once overflowed."""
        if self.overflowed:
            raise SlowConsumer(
                f"fell {self.queue_limit} items behind; resume with since={self.last_seq}"
            )
        items = list(self._items)
        self._items.clear()
        return items

    def close(self) -> None:
        """Stop receiving; a waiting get() returns []."""
        if not self.closed:
            self.closed = True
            self.topic.subscribers.discard(self)
            self._wake()


class Topic:
    """A named stream: sequence numbers, bounded history, live subscribers, counters."""

    def __init__(self, name: str, history_limit: int = HISTORY_LIMIT,
                 queue_limit: int = QUEUE_LIMIT, epoch: str | None = None):
        self.name, self.history_limit, self.queue_limit = name, history_limit, queue_limit
        self.epoch = epoch or new_epoch()
        """Random token of this incarnation of the history (shared by all workers with a backplane)."""
        self.history: deque[Event] = deque(maxlen=history_limit)
        self.subscribers: set[Subscription] = set()
        self.published = 0
        self._seq = itertools.count(1)
        self._counters: dict[str, Counters] = {}
        self._changed: asyncio.Event | None = None
        self.burst = Burst()
        """Shared by the sinks of this topic's subscribers (see `Burst`)."""
        self.bridge: RedisBackplane | None = None
        """The backplane that numbers and orders this topic's events (None: this process does)."""
        self.once: OrderedDict[str, Event] = OrderedDict()
        """Publish keys already used here -> their event (`Hub.apublish_once`, unbridged topics)."""

    @property
    def last_seq(self) -> int:
        """SEQ of the newest event (0 before the first)."""
        return self.history[-1].seq if self.history else 0

    @property
    def oldest_seq(self) -> int:
        """SEQ of the oldest event still kept (last_seq + 1 when nothing is kept)."""
        return self.history[0].seq if self.history else self.last_seq + 1

    def counters(self, transport: str) -> Counters:
        """The counters of `transport` ("short_poll", "long_poll", "sse", "ws", "rest") on this
        topic, created at zero on first use."""
        return self._counters.setdefault(transport, Counters())

    def _append(self, data: Any) -> Event:
        return self.keep(Event(next(self._seq), time.time(), data, self.epoch))

    def keep(self, event: Event) -> Event:
        """Keep `event` (numbered here or by the backplane) and hand it to every live subscriber."""
        self.history.append(event)
        self.published += 1
        for sub in list(self.subscribers):
            sub.push(event)
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        return event

    def reset(self, epoch: str, last_seq: int = 0) -> None:
        """The history was replaced (a backplane's store lost it): take the new `epoch`, forget
        the old events and tell every live subscriber with a `reset` Notice (rendered on every
        streaming transport; a poll that names the old epoch gets 409)."""
        self.epoch = epoch
        self.history.clear()
        self.once.clear()
        notice = Notice(reset_data(self, last_seq))
        for sub in list(self.subscribers):
            sub.last_seq = last_seq
            sub.push(notice)

    def check_epoch(self, epoch: str | None) -> None:
        """Raise EpochMismatch if `epoch` is given and is not this topic's current one."""
        if epoch is not None and epoch != self.epoch:
            raise EpochMismatch(self.name, epoch, self.epoch, self.last_seq)

    def since(self, seq: int | None, epoch: str | None = None) -> list[Event]:
        """Kept events after `seq` (None: all kept). Raises EpochMismatch if `epoch` is given and
        is not the current one, Gap if some were forgotten, Ahead if `seq` was never published."""
        self.check_epoch(epoch)
        if seq is None:
            return list(self.history)
        last = self.last_seq
        if seq > last:
            raise Ahead(f"since={seq} is ahead of topic {self.name!r}, whose last SEQ is {last} "
                        "(the server may have restarted: start again from since=0)", last)
        if seq < self.oldest_seq - 1:
            raise Gap(self.name, seq, self.oldest_seq, last, self.history_limit)
        if seq == last:
            return []
        start = len(self.history) - (last - seq)
        return list(itertools.islice(self.history, start, None))

    def subscribe(self, transport: str, since: int | None = None,
                  epoch: str | None = None) -> tuple[Subscription, list[Event]]:
        """A live subscription plus the kept events after `since` (None: from now on).

        Both are taken in one step, so nothing is missed or repeated between the replay and the
        live part. Raises EpochMismatch / Gap / Ahead like `since()`.
        """
        self.check_epoch(epoch)
        replay = [] if since is None else self.since(since)
        sub = Subscription(self, transport, self.queue_limit)
        if since is not None:
            sub.last_seq = since
        self.subscribers.add(sub)
        return sub, replay

    async def wait_after(self, seq: int, timeout: float, epoch: str | None = None) -> list[Event]:
        """Events after `seq`, waiting up to `timeout` s for one to be published (long poll).
        Raises EpochMismatch if `epoch` is given and is not (or stops being) the current one."""
        events = self.since(seq, epoch)
        if events or timeout <= 0:
            return events
        if self._changed is None:
            self._changed = asyncio.Event()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return []
        return self.since(seq, epoch)

    def stats(self) -> dict:
        subs: dict[str, int] = {}
        for sub in self.subscribers:
            subs[sub.transport] = subs.get(sub.transport, 0) + 1
        return {
            "epoch": self.epoch,
            "last_seq": self.last_seq,
            "oldest_seq": self.oldest_seq,
            "history_limit": self.history_limit,
            "queue_limit": self.queue_limit,
            "published": self.published,
            "subscribers": subs,
            "counters": {name: vars(c).copy() for name, c in sorted(self._counters.items())},
        }


class Hub:
    """All topics of one lab server. Lives on the server's loop; `publish` works from any thread."""

    def __init__(self, history_limit: int = HISTORY_LIMIT, queue_limit: int = QUEUE_LIMIT):
        self.history_limit, self.queue_limit = history_limit, queue_limit
        self.topics: dict[str, Topic] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread_id: int | None = None

    def bind(self) -> None:
        """Attach to the running loop and its thread: the server's (done at app startup)."""
        self.loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()

    def topic(self, name: str, **limits) -> Topic:
        """The topic called `name`, created on first use (limits apply only when creating)."""
        topic = self.topics.get(name)
        if topic is None:
            topic = self.topics[name] = Topic(
                name, limits.get("history_limit", self.history_limit),
                limits.get("queue_limit", self.queue_limit),
            )
        return topic

    def _on_loop_thread(self) -> bool:
        return self.loop is None or threading.get_ident() == self._thread_id

    def publish(self, topic: str, data: Any) -> Event:
        """Store `data` as the next event of `topic` and hand it to every live subscriber.

        A topic bridged to a backplane is numbered by the backplane, which takes a round trip:
        on the server loop use `await apublish(...)` for it (from another thread this waits)."""
        if self._on_loop_thread():
            target = self.topic(topic)
            if target.bridge is not None:
                raise RuntimeError(f"topic {topic!r} goes through a backplane: "
                                   "use `await hub.apublish(...)` on the server loop")
            return target._append(data)
        loop = self.loop
        if loop is None:  # _on_loop_thread() is True while the hub has no loop
            raise RuntimeError("the hub is not attached to a loop")
        if self.topic(topic).bridge is not None:
            return asyncio.run_coroutine_threadsafe(
                self.apublish(topic, data), loop).result(PUBLISH_TIMEOUT_S)
        done: concurrent.futures.Future = concurrent.futures.Future()

        def _do() -> None:
            try:
                done.set_result(self.topic(topic)._append(data))
            except Exception as exc:  # noqa: BLE001 - hand it to the publishing thread
                done.set_exception(exc)

        loop.call_soon_threadsafe(_do)
        return done.result(PUBLISH_TIMEOUT_S)

    async def apublish(self, topic: str, data: Any) -> Event:
        """`publish` for the server loop that also works for a topic bridged to a backplane (it
        returns once the event, numbered in the one global order, is stored here too). Raises
        PublishUnavailable when the backplane certainly did not take it."""
        target = self.topic(topic)
        if target.bridge is not None:
            return await target.bridge.publish(target, data)
        return target._append(data)

    async def apublish_once(self, topic: str, data: Any, key: str) -> tuple[Event, bool]:
        """Publish `data` unless `key` was already published: (the event, whether it is the one
        published before under `key`). A bridged topic keeps the keys in its backplane's store
        (Redis, with a TTL), so a retry reaching another worker is recognised; an unbridged one
        remembers the last MAX_ONCE_KEYS keys in this process."""
        target = self.topic(topic)
        if target.bridge is not None:
            return await target.bridge.publish_once(target, data, key)
        if (seen := target.once.get(key)) is not None:
            return seen, True
        event = target.once[key] = target._append(data)
        while len(target.once) > MAX_ONCE_KEYS:
            target.once.popitem(last=False)
        return event, False

    def notify(self, topic: str, data: Any, *, skip: Subscription | None = None) -> int:
        """Send an ephemeral Notice to the live subscribers of `topic` (not stored, no SEQ).
        Call on the server loop. Returns how many subscribers it was queued for."""
        notice = Notice(data)
        targets = [s for s in self.topic(topic).subscribers if s is not skip]
        for sub in targets:
            sub.push(notice)
        return len(targets)

    def stats(self) -> dict:
        return {name: topic.stats() for name, topic in sorted(self.topics.items())}


def new_epoch() -> str:
    """A fresh random epoch token (8 hex digits)."""
    return secrets.token_hex(4)


def gap_problem(gap: Gap) -> ProblemError:
    """A too-old SEQ as HTTP 410 Gone, with the range still kept."""
    return ProblemError(410, str(gap) + f". Resume from since={gap.oldest - 1} (and accept the "
                        "loss) or start again from the oldest kept event.", **gap.as_dict())


EPOCH_CHANGED_TYPE = "https://labkit.invalid/problems/epoch-changed"
"""Problem type of a resume from another epoch (a URI ending in "epoch-changed")."""


def epoch_problem(exc: EpochMismatch) -> ProblemError:
    """A resume from another incarnation of the history as HTTP 409 Conflict, with the current
    epoch and last SEQ (type suffix "epoch-changed")."""
    return ProblemError(409, str(exc), type=EPOCH_CHANGED_TYPE, **exc.as_dict())


def ahead_problem(exc: Ahead, name: str = "since") -> ProblemError:
    """A never-published SEQ as HTTP 422, naming the parameter it came in and the newest SEQ."""
    return ProblemError(422, str(exc), last_seq=exc.last,
                        errors=[{"field": name, "message": "never published"}])


def reset_data(topic: Topic, last_seq: int) -> dict:
    """The `reset` message: {"type": "reset", "epoch", "last_seq"} (the history the client knew
    is not this one: re-sync from a snapshot, then resume with since=last_seq&epoch=epoch)."""
    return {"type": "reset", "epoch": topic.epoch, "last_seq": last_seq}


EPOCH_REQUIRED_TYPE = "https://labkit.invalid/problems/epoch-required"
"""Problem type of a poll that resumes (`since` > 0) without naming its epoch."""


def epoch_required_problem(topic: Topic, since: int) -> ProblemError:
    """A long poll resuming after SEQ `since` without `epoch` as HTTP 428, naming the current
    epoch and last SEQ: a SEQ means nothing without the history it counts in."""
    return ProblemError(
        428, f"since={since} without epoch: a SEQ counts within one history, and this topic's "
        f"may have been replaced since you read it (now epoch {topic.epoch!r}, last SEQ "
        f"{topic.last_seq}). Resume with since={since}&epoch=<the epoch of your events>, or "
        "re-sync from since=0.", type=EPOCH_REQUIRED_TYPE, epoch=topic.epoch,
        last_seq=topic.last_seq, errors=[{"field": "epoch", "message": "required with since"}])


def subscribe_resuming(topic: Topic, transport: str, since: int | None,
                       name: str = "since", epoch: str | None = None,
                       ) -> tuple[Subscription, list[Event], Gap | None]:
    """What every streaming transport (SSE, WebSocket) does when a client connects after `since`.

    Returns the subscription, the kept events to replay, and the Gap if `since` was too old: then
    the stream goes on from the oldest kept event and the transport must tell the client (never a
    silent skip). A SEQ never published is refused before anything starts: 422 naming `name`.
    An `epoch` that is given and not the current one raises EpochMismatch (the transport answers
    409 with `epoch_problem` before streaming). Counts one request for `transport`.
    """
    topic.check_epoch(epoch)
    try:
        sub, replay = topic.subscribe(transport, since)
        gap = None
    except Gap as exc:
        gap = exc
        sub, replay = topic.subscribe(transport, exc.oldest - 1)
    except Ahead as exc:
        raise ahead_problem(exc, name) from None
    topic.counters(transport).requests += 1
    if since and epoch is None:  # a blind resume: right after the replay, before anything live
        sub.push(Notice({**reset_data(topic, topic.last_seq), "since": since,
                         "detail": BLIND_RESUME}))
    return sub, replay, gap


BLIND_RESUME = ("you resumed with since= but no epoch: the events after since count in this "
                "epoch; if yours came from another one, they are not these: re-sync from a "
                "snapshot and resume with since=SEQ&epoch=E")
"""Detail of the `reset` a stream gets (after its replay, before any live event) when a client
resumes without naming its epoch."""


HUB = web.AppKey("hub", Hub)
"""The app's Hub."""
