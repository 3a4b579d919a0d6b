"""The Redis backplane in one process: two Hubs (two "workers") bridged to one real redis-server."""

from __future__ import annotations

import asyncio

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
