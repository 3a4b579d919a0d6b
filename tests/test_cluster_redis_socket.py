"""A cluster's workers reach the kit's redis-server over its Unix domain socket (real processes,
real redis-server, real sockets), and the fan-out measurement runs from load processes of its own."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import pytest
from test_cluster import need_redis

from labkit.cluster import Cluster
from labkit.lessons import scaling


def redis_clients(port: int) -> list[dict]:
    """CLIENT LIST of the redis-server on 127.0.0.1:`port` (asked over TCP), one dict a client."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    try:
        return list(client.client_list())
    finally:
        client.close()


@pytest.fixture(scope="module")
def two():
    need_redis()
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("no Unix domain sockets on this platform: the workers use TCP")
    with Cluster(2, backplane="redis") as cluster:
        yield cluster


def test_workers_use_the_unix_socket_and_deliver_across_workers(two):
    assert two.redis is not None and two.redis.socket_path is not None
    path = two.redis.socket_path
    assert two.redis_url == f"unix://{path}?db=0" and Path(path).is_socket()
    with urllib.request.urlopen(two.url + "/api/cluster", timeout=10) as r:
        assert json.loads(r.read())["backplane"] == two.redis_url
    chat = scaling.chat_across(two, members=2, messages=4)
    assert sorted(chat["worker"]) == [1, 2]  # the front door put one member on each worker
    assert (chat["received"] == 8).all() and (chat["missed"] == 0).all()
    assert chat["order"].iloc[0] == chat["order"].iloc[1]  # one order on both workers
    clients = redis_clients(two.redis.port)
    local = [c for c in clients if c["addr"].startswith(str(path))]
    tcp = [c for c in clients if not c["addr"].startswith(str(path))]
    assert len(tcp) == 1 and tcp[0]["cmd"] == "client|list"  # only this test's own client
    assert len(local) >= 4  # per worker: its reader (XREAD) and its publishing connection
    assert any(c["cmd"] == "xread" for c in local) and any(c["cmd"] == "evalsha" for c in local)


def test_fanout_run_counts_every_event_on_every_subscriber_with_cpu_per_part(two):
    out = scaling.fanout_run(two, subscribers=30, events=5, rate_hz=20.0, processes=2)
    assert out["received"] == 30 * 5
    assert len(out["delays_ms"]) == 5 and all(d > 0 for d in out["delays_ms"])
    assert set(out["cpu_s"]) == {"workers", "front_door", "redis", "subscribers"}
    assert all(seconds >= 0 for seconds in out["cpu_s"].values())  # clock ticks: may be 0


def test_backplane_cost_names_the_cpu_of_every_process_on_each_path(two):
    with Cluster(1) as one:
        cost = scaling.backplane_cost(one, two, messages=8, rounds=2)
    assert len(cost) == 16 and sorted(cost["path"].value_counts().tolist()) == [8, 8]
    per_message = cost.attrs["per_message"]
    assert set(per_message["in-process (one worker)"]) == {"worker 1", "client (this process)"}
    assert set(per_message["worker 1 -> Redis -> worker 2"]) == {
        "worker 1", "worker 2", "redis-server", "client (this process)"}
    for parts in per_message.values():
        for part in parts.values():
            assert part["cpu_ms"] >= 0 and (part["core_wait_ms"] is None or part["core_wait_ms"] >= 0)
    assert "worker 2" in scaling.per_message_text(cost, "worker 1 -> Redis -> worker 2")


def test_fanout_delays_count_only_events_every_subscriber_got():
    """An event one subscriber never received has no "last arrival": it is left out and counted,
    never reported with the delay of those that did get it."""
    reports = [  # two load processes, 2 subscribers each (4 in all); SEQ 2 reached only 3 of them
        {"ts": {"1": 10.0, "2": 11.0}, "last": {"1": 10.004, "2": 11.002}, "got": {"1": 2, "2": 2}},
        {"ts": {"1": 10.0, "2": 11.0}, "last": {"1": 10.006, "2": 11.001}, "got": {"1": 2, "2": 1}},
    ]
    delays, incomplete = scaling._last_arrival_delays(reports, subscribers=4)
    assert [round(d, 3) for d in delays] == [6.0] and incomplete == 1
