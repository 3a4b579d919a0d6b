"""The Redis backplane in one process: two Hubs (two "workers") bridged to one real redis-server."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from test_cluster import need_redis

from labkit import _loop
from labkit.streaming.backplane import RedisBackplane
from labkit.streaming.hub import EpochMismatch, Hub


@pytest.fixture(scope="module")
def redis_url():
    need_redis()
    from labkit.cluster.redis_server import RedisServer

    server = RedisServer().start()
    yield server.url
    server.stop()


def run(coro):
    return _loop.run(coro, timeout=60)


async def two_workers(url: str, topics=None):
    hubs = []
    for _ in range(2):
        hub = Hub()
        hub.bind()
        backplane = RedisBackplane(url, topics or {"t": {"history_limit": 50}})
        await backplane.attach(hub)
        hubs.append((hub, backplane))
    return hubs


async def close(hubs):
    for _hub, backplane in hubs:
        await backplane.close()


def test_both_workers_see_every_event_in_one_order_with_one_epoch(redis_url):
    async def scenario():
        (a, _), (b, _) = hubs = await two_workers(redis_url, {"order": {}})
        sub_a, _ = a.topic("order").subscribe("ws")
        sub_b, _ = b.topic("order").subscribe("ws")
        published = await asyncio.gather(*(
            (a if i % 2 else b).apublish("order", {"i": i}) for i in range(40)))
        while len(sub_a) < 40 or len(sub_b) < 40:
            await asyncio.sleep(0.01)
        seen_a, seen_b = sub_a.take(), sub_b.take()
        await close(hubs)
        return published, seen_a, seen_b, a.topic("order").epoch, b.topic("order").epoch

    published, seen_a, seen_b, epoch_a, epoch_b = run(scenario())
    assert sorted(e.seq for e in published) == list(range(1, 41))  # numbered once, globally
    assert [(e.seq, e.data) for e in seen_a] == [(e.seq, e.data) for e in seen_b]
    assert [e.seq for e in seen_a] == list(range(1, 41))
    assert epoch_a == epoch_b and {e.epoch for e in seen_a} == {epoch_a}


def test_resume_on_the_other_worker_gets_nothing_twice_and_nothing_missing(redis_url):
    async def scenario():
        (a, _), (b, bp_b) = hubs = await two_workers(redis_url, {"resume": {}})
        for i in range(10):
            await a.apublish("resume", i)
        await bp_b.catch_up()
        replay = b.topic("resume").since(6, epoch=a.topic("resume").epoch)
        with pytest.raises(EpochMismatch):
            b.topic("resume").since(6, epoch="another-incarnation")
        await close(hubs)
        return [e.seq for e in replay]

    assert run(scenario()) == [7, 8, 9, 10]


def test_a_worker_that_starts_late_loads_the_kept_history_from_redis(redis_url):
    async def scenario():
        first = Hub()
        first.bind()
        bp = RedisBackplane(redis_url, {"late": {"history_limit": 5}})
        await bp.attach(first)
        for i in range(12):
            await first.apublish("late", i)
        late = Hub()
        late.bind()
        bp_late = RedisBackplane(redis_url, {"late": {"history_limit": 5}})
        await bp_late.attach(late)
        kept = [e.seq for e in late.topic("late").history]
        await bp.close()
        await bp_late.close()
        return kept, late.topic("late").epoch == first.topic("late").epoch

    kept, same_epoch = run(scenario())
    assert kept == [8, 9, 10, 11, 12] and same_epoch


def test_a_bridged_topic_refuses_a_synchronous_publish_on_the_loop(redis_url):
    async def scenario():
        hubs = await two_workers(redis_url, {"sync": {}})
        hub = hubs[0][0]
        try:
            with pytest.raises(RuntimeError, match="apublish"):
                hub.publish("sync", 1)
            assert hub.publish("not-bridged", 1).seq == 1  # other topics stay in-process
        finally:
            await close(hubs)

    run(scenario())


def test_a_publish_from_another_thread_goes_through_redis(redis_url):
    import threading

    async def scenario():
        hubs = await two_workers(redis_url, {"threads": {}})
        (a, _), (b, bp_b) = hubs
        result = {}
        thread = threading.Thread(target=lambda: result.update(event=a.publish("threads", "x")))
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.01)
        await bp_b.catch_up()
        seen = [e.seq for e in b.topic("threads").history]
        await close(hubs)
        return result["event"].seq, seen

    seq, seen_on_b = run(scenario())
    assert seen_on_b == [seq]


def test_the_publisher_keeps_its_next_seq_at_once_and_the_other_worker_once(redis_url):
    async def scenario():
        (a, bp_a), (b, bp_b) = hubs = await two_workers(redis_url, {"own": {}})
        sub_a, _ = a.topic("own").subscribe("ws")
        sub_b, _ = b.topic("own").subscribe("ws")
        reader = bp_a._reader
        assert reader is not None
        reader.cancel()  # a reads nothing back: what a holds, it kept when it published
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(reader, 5)
        events = []
        for i in range(5):
            events.append(await a.apublish("own", {"i": i}))
            assert len(sub_a) == i + 1  # on the publisher already when apublish returns
        bp_a._reader = asyncio.get_running_loop().create_task(bp_a._read())
        await bp_b.catch_up()
        while len(sub_b) < 5:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # a's reader reads its own events back (and skips them)
        seen_a, seen_b, stats_a = sub_a.take(), sub_b.take(), bp_a.stats()
        await close(hubs)
        return events, seen_a, seen_b, stats_a

    events, seen_a, seen_b, stats_a = run(scenario())
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [(e.seq, e.data) for e in seen_a] == [(e.seq, e.data) for e in seen_b] == [
        (e.seq, e.data) for e in events]  # each once, in order, on both workers
    assert stats_a["kept_at_once"] == 5 and stats_a["received"] == 0


def test_a_publisher_behind_redis_waits_for_its_reader_and_keeps_the_order(redis_url):
    async def scenario():
        (a, bp_a), (b, _) = hubs = await two_workers(redis_url, {"behind": {}})
        sub_a, _ = a.topic("behind").subscribe("ws")
        reader = bp_a._reader
        assert reader is not None
        reader.cancel()  # worker a stops reading: it will not see b's event by itself
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(reader, 5)
        first = await b.apublish("behind", "from b")
        mine = asyncio.ensure_future(a.apublish("behind", "from a"))
        await asyncio.sleep(0.3)
        held = (mine.done(), len(sub_a))  # a's SEQ is not its next one: not kept out of order
        bp_a._reader = asyncio.get_running_loop().create_task(bp_a._read())
        own = await mine
        seen = [(e.seq, e.data) for e in sub_a.take()]
        stats = bp_a.stats()
        await close(hubs)
        return first, own, held, seen, stats

    first, own, held, seen, stats = run(scenario())
    assert held == (False, 0)
    assert (first.seq, own.seq) == (1, 2)
    assert seen == [(1, "from b"), (2, "from a")]
    assert stats["kept_at_once"] == 0 and stats["received"] == 2
