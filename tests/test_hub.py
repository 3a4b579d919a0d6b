"""The Hub: sequence numbers, bounded history, resume rules, slow consumers, thread safety."""

from __future__ import annotations

import asyncio
import threading

import pytest

from labkit.streaming.hub import HUB, Ahead, Event, Gap, Hub, Notice, SlowConsumer, Topic


def run_async(coro):
    """Run a coroutine on a loop of its own thread (a session may already run one here)."""
    from labkit import _loop

    return _loop.run(coro, timeout=120)


def test_sequence_starts_at_one_and_never_repeats():
    hub = Hub()
    seqs = [hub.publish("t", {"n": i}).seq for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert hub.publish("other", {}).seq == 1  # per topic


def test_history_is_bounded_and_the_bound_is_visible():
    hub = Hub(history_limit=10)
    for i in range(25):
        hub.publish("t", i)
    topic = hub.topic("t")
    assert len(topic.history) == 10
    stats = hub.stats()["t"]
    assert (stats["history_limit"], stats["oldest_seq"], stats["last_seq"]) == (10, 16, 25)


def test_since_returns_exactly_the_events_after_seq():
    hub = Hub(history_limit=10)
    for i in range(25):
        hub.publish("t", i)
    topic = hub.topic("t")
    assert [e.seq for e in topic.since(20)] == [21, 22, 23, 24, 25]
    assert [e.seq for e in topic.since(15)] == list(range(16, 26))  # oldest kept is next: no gap
    assert topic.since(25) == []
    assert [e.seq for e in topic.since(None)] == list(range(16, 26))


def test_too_old_seq_is_a_gap_and_future_seq_is_refused():
    hub = Hub(history_limit=10)
    for i in range(25):
        hub.publish("t", i)
    with pytest.raises(Gap) as info:
        hub.topic("t").since(3)
    assert (info.value.oldest, info.value.missed) == (16, 12)
    with pytest.raises(Ahead):
        hub.topic("t").since(26)


def test_subscribe_joins_replay_and_live_without_loss_or_repeat():
    async def scenario():
        hub = Hub()
        hub.bind()
        for i in range(5):
            hub.publish("t", i)
        sub, replay = hub.topic("t").subscribe("ws", since=2)
        hub.publish("t", 5)
        hub.publish("t", 6)
        live = await sub.get()
        return [e.seq for e in replay], [e.seq for e in live]

    replay, live = run_async(scenario())
    assert replay + live == [3, 4, 5, 6, 7]


def test_slow_consumer_is_dropped_with_bounded_memory_and_others_unaffected():
    async def scenario():
        hub = Hub(queue_limit=4)
        hub.bind()
        slow, _ = hub.topic("t").subscribe("ws")
        fast, _ = hub.topic("t").subscribe("sse")
        got = []
        for i in range(10):
            hub.publish("t", i)
            got += [e.seq for e in await fast.get()]
        assert len(slow) == 0  # its queue was dropped, not kept growing
        with pytest.raises(SlowConsumer, match="since=0"):
            await slow.get()
        return got, hub.stats()["t"]["counters"]

    got, counters = run_async(scenario())
    assert got == list(range(1, 11))
    assert counters["ws"]["dropped"] == 5  # 4 queued + the one that did not fit
    assert counters.get("sse", {}).get("dropped", 0) == 0


def test_notices_are_ephemeral_and_skip_the_sender():
    async def scenario():
        hub = Hub()
        hub.bind()
        a, _ = hub.topic("t").subscribe("ws")
        b, _ = hub.topic("t").subscribe("ws")
        assert hub.notify("t", {"type": "typing"}, skip=a) == 1
        items = await b.get()
        return items, len(a), hub.topic("t").history

    items, a_len, history = run_async(scenario())
    assert items == [Notice({"type": "typing"})] and a_len == 0 and len(history) == 0


def test_closed_subscription_wakes_with_nothing():
    async def scenario():
        hub = Hub()
        hub.bind()
        sub, _ = hub.topic("t").subscribe("ws")
        waiter = asyncio.ensure_future(sub.get())
        await asyncio.sleep(0)
        sub.close()
        return await waiter, len(hub.topic("t").subscribers)

    assert run_async(scenario()) == ([], 0)


def test_publish_from_other_threads_lands_on_the_server_loop(lab):
    hub = lab.app[HUB]
    results: list[Event] = []

    def worker(k):
        for i in range(50):
            results.append(hub.publish("threads", {"worker": k, "i": i}))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    seqs = sorted(e.seq for e in results)
    assert seqs == list(range(1, 201))
    kept = lab.call(_history_seqs(hub))
    assert kept == list(range(1, 201))


async def _history_seqs(hub):
    return [e.seq for e in hub.topic("threads").history]


def test_hub_stats_route(lab):
    from labkit.clients.rest import RestClient

    with RestClient(lab) as api:
        lab.app[HUB].publish("feed", {"price": 1})
        body = api.get("/api/hub").json()
    assert body["topics"]["feed"]["last_seq"] == 1
    assert body["topics"]["feed"]["history_limit"] > 0
    assert body["server_thread_cpu_s"] > 0


def test_sink_takes_items_only_while_nothing_is_queued():
    """The fast path: an item goes to the sink only if the queue is empty, so order is kept."""
    async def scenario():
        hub = Hub()
        hub.bind()
        sub, _ = hub.topic("t").subscribe("ws")
        direct, accepting = [], [True]

        def sink(item):
            if accepting[0]:
                direct.append(item.seq)
            return accepting[0]

        sub.sink = sink
        hub.publish("t", 1)          # empty queue, sink accepts: delivered directly
        accepting[0] = False
        hub.publish("t", 2)          # sink declines: queued
        accepting[0] = True
        hub.publish("t", 3)          # queue not empty: queued behind 2, sink not asked
        queued = [e.seq for e in await sub.get()]
        hub.publish("t", 4)          # queue empty again: direct
        return direct, queued

    direct, queued = run_async(scenario())
    assert direct == [1, 4] and queued == [2, 3]


def test_burst_ends_with_one_callback_per_topic_and_flushes_in_order():
    """Sinks of 100 subscribers share the topic's Burst: one scheduled callback per loop iteration
    (not one per subscriber); held flushes run in order and a new iteration gets a new token."""
    async def scenario():
        loop = asyncio.get_running_loop()
        topic = Topic("t")
        burst, scheduled, flushed = topic.burst, [], []
        real_call_soon = loop.call_soon
        def call_soon(callback, *args, **kw):
            if getattr(callback, "__self__", None) is burst:
                scheduled.append(callback)
            return real_call_soon(callback, *args, **kw)

        loop.call_soon = call_soon
        try:
            first = burst.token
            for i in range(100):
                burst.wrote()
                burst.hold(lambda i=i: flushed.append(i))
            during = (len(scheduled), list(flushed), burst.token)
            await asyncio.sleep(0)  # the iteration ends
            after = (len(scheduled), list(flushed), burst.token)
        finally:
            loop.call_soon = real_call_soon
        return first, during, after

    first, during, after = run_async(scenario())
    assert during == (1, [], first)
    assert after == (1, list(range(100)), first + 1)


def test_slow_consumer_policy_still_applies_when_the_sink_declines():
    async def scenario():
        hub = Hub(queue_limit=3)
        hub.bind()
        sub, _ = hub.topic("t").subscribe("ws")
        sub.sink = lambda item: False  # a socket that is always backed up
        overflowed = []
        sub.on_overflow = lambda: overflowed.append(True)
        for i in range(5):
            hub.publish("t", i)
        with pytest.raises(SlowConsumer):
            sub.take()
        return overflowed, len(sub), hub.stats()["t"]["counters"]["ws"]["dropped"]

    assert run_async(scenario()) == ([True], 0, 4)


def test_subscribe_resuming_tells_of_a_gap_and_refuses_an_unpublished_seq():
    from labkit.server.problem import ProblemError
    from labkit.streaming.hub import subscribe_resuming

    topic = Topic("t", history_limit=3)
    for i in range(6):
        topic._append(i)
    sub, replay, gap = subscribe_resuming(topic, "sse", 1)
    assert [e.seq for e in replay] == [4, 5, 6] and gap is not None
    assert gap.as_dict()["missed"] == 2 and sub.last_seq == 3
    sub, replay, gap = subscribe_resuming(topic, "ws", 5)
    assert [e.seq for e in replay] == [6] and gap is None
    with pytest.raises(ProblemError) as exc:
        subscribe_resuming(topic, "sse", 9, "Last-Event-ID")
    assert exc.value.status == 422 and "Last-Event-ID" in str(exc.value.extra)
    assert topic.counters("sse").requests == 1 and topic.counters("ws").requests == 1


def test_every_event_carries_the_epoch_of_its_topic_and_a_new_topic_gets_a_new_one():
    hub = Hub()
    event = hub.publish("t", {"n": 1})
    topic = hub.topic("t")
    assert isinstance(topic.epoch, str) and topic.epoch and event.epoch == topic.epoch
    assert event.as_dict() == {"seq": 1, "epoch": topic.epoch, "ts": event.ts, "data": {"n": 1}}
    assert f'"epoch":"{topic.epoch}"' in event.json
    assert hub.stats()["t"]["epoch"] == topic.epoch
    again = Hub()  # a restarted in-memory lab: the same SEQs mean other events
    again.publish("t", {"n": 1})
    assert again.topic("t").epoch != topic.epoch
    assert Topic("x", epoch="shared").epoch == "shared"


def test_since_with_another_epoch_is_refused_and_the_current_one_is_accepted():
    from labkit.streaming.hub import EpochMismatch

    topic = Topic("t")
    for i in range(5):
        topic._append(i)
    assert [e.seq for e in topic.since(3, epoch=topic.epoch)] == [4, 5]
    assert [e.seq for e in topic.since(3)] == [4, 5]  # no epoch given: no check
    with pytest.raises(EpochMismatch) as info:
        topic.since(3, epoch="old-one")
    assert (info.value.epoch, info.value.last) == (topic.epoch, 5)
    assert info.value.as_dict() == {"epoch": topic.epoch, "last_seq": 5}
    with pytest.raises(EpochMismatch):  # even a SEQ that would be fine in this epoch
        topic.since(0, epoch="old-one")
    with pytest.raises(EpochMismatch):
        topic.subscribe("ws", 2, epoch="old-one")
    assert not topic.subscribers


def test_resuming_from_another_epoch_is_a_409_problem_naming_the_current_epoch():
    from labkit.streaming.hub import EpochMismatch, epoch_problem, subscribe_resuming

    topic = Topic("t")
    for i in range(4):
        topic._append(i)
    with pytest.raises(EpochMismatch) as info:
        subscribe_resuming(topic, "ws", 2, epoch="before-restart")
    assert not topic.subscribers and topic.counters("ws").requests == 0
    problem = epoch_problem(info.value)
    assert problem.status == 409 and problem.extra["type"].endswith("epoch-changed")
    assert (problem.extra["epoch"], problem.extra["last_seq"]) == (topic.epoch, 4)
    sub, replay, gap = subscribe_resuming(topic, "ws", 2, epoch=topic.epoch)
    assert [e.seq for e in replay] == [3, 4] and gap is None


def test_a_long_poll_with_another_epoch_is_refused_before_waiting():
    from labkit.streaming.hub import EpochMismatch

    async def scenario():
        topic = Topic("t")
        topic._append(1)
        with pytest.raises(EpochMismatch):
            await topic.wait_after(1, 30, epoch="gone")
        waiter = asyncio.ensure_future(topic.wait_after(1, 30, epoch=topic.epoch))
        await asyncio.sleep(0)
        topic._append(2)
        return [e.seq for e in await waiter]

    assert run_async(scenario()) == [2]
