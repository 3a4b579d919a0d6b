"""The feed over short poll, long poll, SSE and WebSocket: content, order, resume and error rules."""

from __future__ import annotations

import asyncio
import csv
import json
import resource
import threading
import time
from pathlib import Path

import aiohttp
import pytest
from waiting import wait_until
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import labkit
from labkit.clients import feed
from labkit.clients.rest import RestClient
from labkit.streaming.hub import HISTORY_LIMIT, HUB


def run_async(coro):
    """Run a coroutine on a loop of its own thread (a session may already run one here)."""
    from labkit import _loop

    return _loop.run(coro, timeout=120)


def publish(lab, n: int, size: int = 0) -> None:
    """Publish n events in one go on the server loop (no await between them)."""
    async def _go():
        hub = lab.app[HUB]
        for i in range(n):
            hub.publish("feed", {"i": i, "pad": "x" * size})
    lab.call(_go())


def wait_for_subscribers(lab, n: int, topic: str = "feed", limit_s: float = 30) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if len(lab.app[HUB].topic(topic).subscribers) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {n} subscribers on {topic}")


# -- short and long poll ------------------------------------------------------------------------
def test_short_poll_returns_events_after_since_and_empty_list(lab):
    publish(lab, 5)
    with RestClient(lab) as api:
        r = api.get("/api/feed?since=2")
        assert r.status == 200 and [e["seq"] for e in r.json()] == [3, 4, 5]
        assert set(r.json()[0]) == {"seq", "epoch", "ts", "data"}
        assert r.headers["Feed-Last-Seq"] == "5" and r.headers["Feed-Oldest-Seq"] == "1"
        assert int(r.headers["Feed-History-Limit"]) == HISTORY_LIMIT
        assert api.get("/api/feed?since=5").json() == []
        assert [e["seq"] for e in api.get("/api/feed").json()] == [1, 2, 3, 4, 5]


def test_long_poll_is_held_until_an_event_arrives(lab):
    publish(lab, 1)
    timer = threading.Timer(0.3, lambda: lab.app[HUB].publish("feed", {"late": True}))
    timer.start()
    epoch = lab.app[HUB].topic("feed").epoch  # a resuming long poll names the history it knows
    with RestClient(lab) as api:
        r = api.get(f"/api/feed?since=1&wait=10&epoch={epoch}")
    timer.join()
    assert r.status == 200
    assert [(e["seq"], e["data"]) for e in r.json()] == [(2, {"late": True})]


def test_long_poll_ends_empty_when_wait_passes(lab):
    publish(lab, 1)
    epoch = lab.app[HUB].topic("feed").epoch
    with RestClient(lab) as api:
        assert api.get(f"/api/feed?since=1&wait=0.2&epoch={epoch}").json() == []
        assert [e["seq"] for e in api.get("/api/feed?since=0&wait=5").json()] == [1]


@pytest.mark.parametrize("query, status, field", [
    ("since=abc", 422, "since"), ("since=-1", 422, "since"), ("since=99", 422, "since"),
    ("since=0&wait=31", 422, "wait"), ("since=0&wait=soon", 422, "wait"),
    ("since=0&wait=-1", 422, "wait"), ("since=0&wait=nan", 422, "wait"),
    # only canonical numbers, as the OpenAPI schema says: an empty value is not "absent"
    ("since=", 422, "since"), ("since=0&wait=", 422, "wait"), ("wait=", 422, "wait"),
    ("since=%2B0", 422, "since"), ("since=+0", 422, "since"), ("since=%200", 422, "since"),
    ("since=00", 422, "since"), ("since=1.0", 422, "since"), ("since=1_0", 422, "since"),
    (f"since={2**63}", 422, "since"), ("since=0&wait=%2B1", 422, "wait"),
    ("since=0&wait=inf", 422, "wait"), ("since=0&wait=1_0", 422, "wait"),
    ("since=0&wait=.5", 422, "wait"), ("since=0&wait=0x1", 422, "wait"),
])
def test_poll_refuses_bad_parameters(lab, query, status, field):
    publish(lab, 3)
    with RestClient(lab) as api:
        r = api.get(f"/api/feed?{query}")
    assert r.status == status
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == field


@pytest.mark.parametrize("query, seqs", [
    ("since=0", [1, 2, 3]), ("since=2", [3]), ("since=3", []), ("since=0&wait=0", [1, 2, 3]),
    ("since=1&wait=0.01", [2, 3]), ("since=1&wait=1e-2", [2, 3]), ("since=1&wait=30", [2, 3]),
    ("since=1&wait=-0", [2, 3]),
])
def test_poll_accepts_every_canonical_number(lab, query, seqs):
    publish(lab, 3)
    epoch = lab.app[HUB].topic("feed").epoch  # a long poll that resumes names its epoch (else 428)
    with RestClient(lab) as api:
        r = api.get(f"/api/feed?{query}&epoch={epoch}")
    assert r.status == 200 and [e["seq"] for e in r.json()] == seqs


def test_since_ahead_of_the_topic_is_422_naming_the_newest_seq(lab):
    publish(lab, 3)
    with RestClient(lab) as api:
        r = api.get("/api/feed?since=4")
    assert r.status == 422
    assert r.json()["errors"] == [{"field": "since", "message": "never published"}]
    assert r.json()["last_seq"] == 3


def test_openapi_documents_the_poll_refusals():
    from labkit.routes.feed import MAX_SEQ, OPENAPI_PATHS

    poll = OPENAPI_PATHS["/api/feed"]["get"]
    since = next(p for p in poll["parameters"] if p["name"] == "since")
    assert since["schema"] == {"type": "integer", "minimum": 0, "maximum": MAX_SEQ}
    assert "ahead" in poll["responses"]["422"]["description"]
    assert "older" in poll["responses"]["410"]["description"]


def test_too_old_since_is_410_with_the_range(lab):
    publish(lab, HISTORY_LIMIT + 10)
    with RestClient(lab) as api:
        r = api.get("/api/feed?since=3")
        ok = api.get("/api/feed?since=10")  # oldest kept is 11: nothing missing
    assert r.status == 410
    body = r.json()
    assert (body["oldest_seq"], body["last_seq"], body["missed"]) == (11, HISTORY_LIMIT + 10, 7)
    assert body["history_limit"] == HISTORY_LIMIT
    assert ok.status == 200 and ok.json()[0]["seq"] == 11


def test_poll_client_records_a_gap_instead_of_skipping(lab):
    publish(lab, HISTORY_LIMIT + 10)
    client = feed.ShortPollClient(lab, interval_s=0.05)
    client.run(5, since=3, until_seq=HISTORY_LIMIT + 10)
    assert client.gaps and client.gaps[0]["oldest_seq"] == 11
    assert [e.seq for e in client.events] == list(range(11, HISTORY_LIMIT + 11))


# -- the source -----------------------------------------------------------------------------------
def test_source_publishes_exactly_the_ticks_asked(lab):
    state = feed.set_source(lab, 200, seed=3, ticks=7)
    assert state["running"] and state["seed"] == 3
    wait_until(lambda: feed.hub_stats(lab)["topics"].get("feed", {}).get("last_seq", 0) >= 7, 10,
               what="7 ticks published")
    with RestClient(lab) as api:
        wait_until(lambda: api.get("/api/feed/source").json()["running"] is False, 10,
                   what="the source stopped after its ticks")
        events = api.get("/api/feed").json()
    assert [e["seq"] for e in events] == list(range(1, 8))
    assert all(e["data"]["symbol"] == "LAB" and e["data"]["price"] > 0 for e in events)


def test_same_seed_gives_the_same_walk(lab, make_lab):
    prices = []
    for server in (lab, make_lab()):
        feed.set_source(server, 500, seed=42, ticks=5, start_price=50)
        client = feed.LongPollClient(server, wait_s=5)
        client.run(10, since=0, until_seq=5)
        prices.append([e.price for e in client.events])
    assert len(prices[0]) == 5 and prices[0] == prices[1]


@pytest.mark.parametrize("body, status", [
    ({"rate_hz": -1}, 422), ({"rate_hz": "fast"}, 422), ({"rate_hz": 5000}, 422),
    ({"rate_hz": 1, "ticks": -2}, 422), ({"rate_hz": 1, "seed": 1.5}, 422),
    ({"rate_hz": 1, "colour": "red"}, 422), ([1, 2], 422), ({}, 422),
    ({"rate_hz": 1, "kind": "csv"}, 422), ({"rate_hz": 1, "kind": "replay", "start_row": -1}, 422),
    ({"rate_hz": 1, "kind": "replay", "start_row": 10**6}, 422),
    ({"rate_hz": 1, "kind": "replay", "start_price": 5}, 422), ({"rate_hz": 1, "start_row": 3}, 422),
])
def test_source_refuses_bad_settings(lab, body, status):
    with RestClient(lab) as api:
        r = api.post("/api/feed/source", json=body)
    assert r.status == status and r.json()["status"] == status


def _shipped_series() -> list[tuple[int, float]]:
    """The sample series read straight from the package folder (not through the server)."""
    path = Path(labkit.__file__).parent / "data" / "feed-sample.csv"
    with path.open(newline="") as fh:
        return [(int(r["step"]), float(r["price"])) for r in csv.DictReader(fh)]


def test_replay_publishes_the_shipped_series_in_order_and_wraps_round(lab):
    series = _shipped_series()
    assert 200 <= len(series) <= 1000 and [step for step, _ in series] == list(range(len(series)))
    start = len(series) - 3
    state = feed.set_source(lab, 500, kind="replay", start_row=start, ticks=6)
    assert state["kind"] == "replay" and state["rows"] == len(series)
    client = feed.LongPollClient(lab, wait_s=5)
    client.run(10, since=0, until_seq=6)
    with RestClient(lab) as api:
        data = [e["data"] for e in api.get("/api/feed?since=0").json()]
    rows = [start, start + 1, start + 2, 0, 1, 2]
    assert [d["row"] for d in data] == rows
    assert [d["price"] for d in data] == [series[r][1] for r in rows]
    assert [e.price for e in client.events] == [series[r][1] for r in rows]
    assert {d["symbol"] for d in data} == {"SAMPLE"}


def test_the_series_is_package_data_so_an_installed_labkit_has_it():
    import fnmatch
    import tomllib

    pyproject = tomllib.loads((Path(labkit.__file__).parent.parent / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["labkit"]
    assert any(fnmatch.fnmatch("data/feed-sample.csv", p) for p in patterns)


def _source_schema() -> dict:
    from labkit.routes.feed import OPENAPI_PATHS

    return OPENAPI_PATHS["/api/feed/source"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]


@pytest.mark.parametrize("body", [
    {"rate_hz": 0, "ticks": 200.0}, {"rate_hz": 0, "seed": 7.0}, {"rate_hz": 0.0, "ticks": 0},
    {"rate_hz": 0, "kind": "replay", "start_row": 2.0}, {"rate_hz": 0, "kind": "replay",
                                                         "start_price": None},
    {"rate_hz": 0, "kind": "walk", "start_row": 0}, {"rate_hz": 0, "ticks": 2.5},
    {"rate_hz": 0, "seed": True}, {"rate_hz": 0, "start_row": 1},
    {"rate_hz": 0, "kind": "replay", "start_price": 5}, {"rate_hz": 0, "kind": "replay",
                                                         "start_row": 10**6},
])
def test_source_accepts_exactly_what_its_schema_allows(lab, body):
    """Whole-number floats (200.0) are integers in JSON Schema; the walk/replay-only fields too."""
    import jsonschema

    valid = jsonschema.Draft202012Validator(_source_schema()).is_valid(body)
    with RestClient(lab) as api:
        r = api.post("/api/feed/source", json=body)
    assert r.status == (200 if valid else 422), r.json()
    if valid and "ticks" in body:
        assert r.json()["ticks_left"] == int(body["ticks"])
        assert type(r.json()["ticks_left"]) is int
    if valid and "seed" in body:
        assert r.json()["seed"] == 7 and type(r.json()["seed"]) is int


def test_source_refuses_non_json(lab):
    with RestClient(lab) as api:
        assert api.post("/api/feed/source", data="rate=1",
                        headers={"Content-Type": "text/plain"}).status == 415
        assert api.post("/api/feed/source", data="{nope",
                        headers={"Content-Type": "application/json"}).status == 400


# -- SSE ----------------------------------------------------------------------------------------
async def _sse_events(url: str, headers: dict, count: int) -> tuple[int, list[tuple[str, str]]]:
    """(status, [(event name, data)]) for the first `count` events of an SSE stream."""
    out: list[tuple[str, str]] = []
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        if resp.status != 200:
            return resp.status, out
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        name, data, ident = "message", [], None
        async for raw in resp.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("data:"):
                data.append(line[5:].strip())
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("id:"):
                ident = line[3:].strip()
            elif not line and data:
                out.append((name, "\n".join(data), ident))
                name, data, ident = "message", [], None
                if len(out) >= count:
                    break
    return 200, out


def test_sse_resumes_after_last_event_id(lab):
    publish(lab, 6)
    status, events = run_async(_sse_events(lab.url + "/sse/feed", {"Last-Event-ID": "3"}, 3))
    assert status == 200
    epoch = json.loads(events[0][1])["epoch"]  # ids are "<epoch>:<seq>"; a bare SEQ resumes too
    assert [(name, json.loads(data)["seq"], ident) for name, data, ident in events] == [
        ("message", 4, f"{epoch}:4"), ("message", 5, f"{epoch}:5"), ("message", 6, f"{epoch}:6")]


def test_sse_tells_of_a_gap_then_goes_on(lab):
    publish(lab, HISTORY_LIMIT + 5)
    status, events = run_async(_sse_events(lab.url + "/sse/feed", {"Last-Event-ID": "1"}, 2))
    assert status == 200
    assert events[0][0] == "gap" and json.loads(events[0][1])["oldest_seq"] == 6
    assert events[1][0] == "message" and json.loads(events[1][1])["seq"] == 6


@pytest.mark.parametrize("query, headers", [
    ("", {"Last-Event-ID": "x"}), ("", {"Last-Event-ID": ""}), ("", {"Last-Event-ID": "+1"}),
    ("?since=", {}), ("?since=%2B1", {}),
])
def test_sse_refuses_bad_last_event_id(lab, query, headers):
    status, _ = run_async(_sse_events(lab.url + "/sse/feed" + query, headers, 1))
    assert status == 422


def test_sse_client_gets_live_events(lab):
    run = feed.feed_run(lab, seconds=0.5, rate_hz=20, transports=("sse",))
    assert [e.seq for e in run.clients[0].events] == list(range(1, 11))


# -- WebSocket ------------------------------------------------------------------------------------
async def _ws_messages(url: str, count: int, send: str | bytes | None = None):
    async with connect(url, compression=None, max_queue=None) as conn:
        if send is not None:
            await conn.send(send)
        out = []
        try:
            for _ in range(count):
                out.append(json.loads(await asyncio.wait_for(conn.recv(), 10)))
        except ConnectionClosed:
            pass
        return out, conn.close_code, conn.close_reason


def test_ws_replays_since_then_pushes_live(lab):
    publish(lab, 4)
    timer = threading.Timer(0.3, lambda: lab.app[HUB].publish("feed", {"live": 1}))
    timer.start()
    epoch = lab.app[HUB].topic("feed").epoch
    messages, _, _ = run_async(_ws_messages(lab.ws_url + f"/ws/feed?since=2&epoch={epoch}", 3))
    timer.join()
    assert [m["seq"] for m in messages] == [3, 4, 5]
    assert messages[-1]["data"] == {"live": 1} and set(messages[0]) == {"seq", "epoch", "ts", "data"}


def test_ws_tells_of_a_gap(lab):
    publish(lab, HISTORY_LIMIT + 5)
    messages, _, _ = run_async(_ws_messages(lab.ws_url + "/ws/feed?since=0", 2))
    assert messages[0]["type"] == "gap" and messages[0]["oldest_seq"] == 6
    assert messages[0]["missed"] == 5 and messages[1]["seq"] == 6


@pytest.mark.parametrize("query", ["since=7", "since=", "since=%2B0"])
def test_ws_refuses_a_future_or_malformed_since_before_upgrading(lab, query):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as info:
        run_async(_ws_messages(lab.ws_url + "/ws/feed?" + query, 1))
    assert info.value.response.status_code == 422
    assert b'"since"' in info.value.response.body


def test_ws_feed_answers_text_with_an_error_and_closes_on_binary(lab):
    messages, _, _ = run_async(_ws_messages(lab.ws_url + "/ws/feed", 1, "hello"))
    assert messages[0]["type"] == "error"
    _, code, _ = run_async(_ws_messages(lab.ws_url + "/ws/feed", 1, b"\x00"))
    assert code == 1003


def test_slow_websocket_is_closed_with_1008_and_others_keep_going(lab):
    """A client that stops reading fills its queue: it gets 1008, a reading client gets all."""
    total, size = 600, 64 * 1024

    async def scenario():
        slow = await connect(lab.ws_url + "/ws/feed", compression=None, max_queue=1,
                             max_size=2**20)
        fast = await connect(lab.ws_url + "/ws/feed", compression=None, max_size=2**20)
        await asyncio.to_thread(wait_for_subscribers, lab, 2)

        async def read_fast():
            return [json.loads(await asyncio.wait_for(fast.recv(), 20))["seq"]
                    for _ in range(total)]

        reader = asyncio.ensure_future(read_fast())
        for _ in range(total // 10):  # small bursts: a reading client never falls behind
            await asyncio.to_thread(publish, lab, 10, size)
            await asyncio.sleep(0.005)
        fast_seqs = await reader
        slow_seqs = []
        try:
            while True:
                slow_seqs.append(json.loads(await asyncio.wait_for(slow.recv(), 20))["seq"])
        except ConnectionClosed:
            pass
        await fast.close()
        return fast_seqs, slow_seqs, slow.close_code, slow.close_reason

    fast_seqs, slow_seqs, code, reason = run_async(scenario())
    assert fast_seqs == list(range(1, total + 1))
    assert code == 1008
    epoch = feed.hub_stats(lab)["topics"]["feed"]["epoch"]
    assert reason == f"too slow: resume with since={slow_seqs[-1] if slow_seqs else 0}&epoch={epoch}"
    assert slow_seqs == list(range(1, len(slow_seqs) + 1)) and len(slow_seqs) < total
    counters = feed.hub_stats(lab)["topics"]["feed"]["counters"]["ws"]
    assert counters["dropped"] > 0


# -- many at once ---------------------------------------------------------------------------------
def test_1000_websockets_and_50_pollers_all_get_every_event_in_order(lab):
    n_ws, n_poll, n_events = 1000, 50, 4
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * n_ws:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8 * n_ws), hard))

    async def scenario():
        conns = []
        for start in range(0, n_ws, 100):  # batches stay under the listen backlog
            conns += await asyncio.gather(*(
                connect(lab.ws_url + "/ws/feed?since=0", compression=None, open_timeout=60)
                for _ in range(start, min(n_ws, start + 100))))
        await asyncio.to_thread(wait_for_subscribers, lab, n_ws)
        pollers = [feed.LongPollClient(lab, wait_s=5) if i % 2 else
                   feed.ShortPollClient(lab, interval_s=0.2) for i in range(n_poll)]
        polling = [asyncio.ensure_future(p.arun(60, since=0, until_seq=n_events))
                   for p in pollers]

        async def read(conn):
            return [json.loads(await asyncio.wait_for(conn.recv(), 60))["seq"]
                    for _ in range(n_events)]

        reading = asyncio.gather(*(read(c) for c in conns))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(feed.set_source, lab, 20, ticks=n_events)
        seen = await reading
        await asyncio.gather(*polling)
        await asyncio.gather(*(c.close() for c in conns))
        return seen, pollers

    seen, pollers = run_async(scenario())
    expected = list(range(1, n_events + 1))
    assert len(seen) == n_ws and all(s == expected for s in seen)
    assert all([e.seq for e in p.events] == expected for p in pollers)
    assert not any(p.errors or p.gaps for p in pollers)
    counters = feed.hub_stats(lab)["topics"]["feed"]["counters"]
    assert counters["ws"]["delivered"] == n_ws * n_events and counters["ws"]["dropped"] == 0


# -- the WebSocket fast path ----------------------------------------------------------------------
def test_ws_bursts_keep_order_across_direct_and_queued_writes(lab):
    """Bursts larger than the socket's high-water mark: the first frames go straight to the
    socket, the rest wait in the queue; a prompt and a briefly stalled reader both get every
    event once, in order, and nothing is dropped."""
    bursts, per_burst, size = 6, 150, 1024  # 150 KiB a burst: above the 64 KiB mark, < 256 items
    total = bursts * per_burst

    async def scenario():
        prompt = await connect(lab.ws_url + "/ws/feed", compression=None, max_size=2**20)
        stalled = await connect(lab.ws_url + "/ws/feed", compression=None, max_size=2**20,
                                max_queue=4)
        await asyncio.to_thread(wait_for_subscribers, lab, 2)

        async def read(conn, pause_s=0.0):
            seqs = []
            for _ in range(total):
                seqs.append(json.loads(await asyncio.wait_for(conn.recv(), 20))["seq"])
                if pause_s and len(seqs) == 10:
                    await asyncio.sleep(pause_s)  # its socket backs up meanwhile
            return seqs

        readers = asyncio.gather(read(prompt), read(stalled, 0.3))
        for _ in range(bursts):
            await asyncio.to_thread(publish, lab, per_burst, size)
            await asyncio.sleep(0.05)
        seen = await readers
        await prompt.close()
        await stalled.close()
        return seen

    prompt_seqs, stalled_seqs = run_async(scenario())
    assert prompt_seqs == list(range(1, total + 1))
    assert stalled_seqs == prompt_seqs
    counters = feed.hub_stats(lab)["topics"]["feed"]["counters"]["ws"]
    assert counters["delivered"] == 2 * total and counters["dropped"] == 0


def test_ws_feed_never_compresses_even_if_the_client_offers_it(lab):
    """The fast path writes plain frames, so the feed must decline permessage-deflate."""
    async def scenario():
        async with connect(lab.ws_url + "/ws/feed?since=0") as conn:  # offers deflate
            extensions = list(conn.protocol.extensions)
            messages = [json.loads(await asyncio.wait_for(conn.recv(), 10)) for _ in range(3)]
        return extensions, messages

    publish(lab, 3, 2000)
    extensions, messages = run_async(scenario())
    assert extensions == []
    assert [m["seq"] for m in messages] == [1, 2, 3] and len(messages[0]["data"]["pad"]) == 2000


# -- where the clients connect: a URL (a proxy in front of the lab), a TLS lab ------------------
def test_target_url_gives_the_scheme_each_transport_needs(lab):
    assert feed.target_url("http://127.0.0.1:9/") == "http://127.0.0.1:9"
    assert feed.target_url("http://127.0.0.1:9", "ws") == "ws://127.0.0.1:9"
    assert feed.target_url("https://h:9", "ws") == "wss://h:9"
    assert feed.target_url("wss://h:9") == "https://h:9"
    assert feed.target_url(lab, "ws") == lab.ws_url.rstrip("/")


def test_all_four_transports_read_the_feed_through_a_proxy_url(lab):
    from labkit.net.netem import NetemProxy

    with NetemProxy.for_lab(lab, "loopback") as net:
        run = feed.feed_run(net.url(), seconds=0.5, rate_hz=20, poll_interval_s=0.1, kind="replay")
        proxied = net.bytes_down
    expected = list(range(run.first_seq, run.last_seq + 1))
    assert len(expected) == 10
    for client in run.clients:
        assert [e.seq for e in client.events] == expected, client.label
        assert not client.errors
    ws_client = next(c for c in run.clients if c.transport == "ws")
    assert proxied > ws_client.bytes_down  # the clients' bytes really went through the proxy


def test_feed_clients_trust_a_tls_lab(make_lab):
    tls_lab = make_lab(tls=True)
    assert tls_lab.url.startswith("https://")
    run = feed.feed_run(tls_lab, seconds=0.5, rate_hz=20, poll_interval_s=0.1,
                        transports=("short_poll", "ws"))
    for client in run.clients:
        assert not client.errors, client.errors
        assert [e.seq for e in client.events] == list(range(1, 11)), client.label


# -- lesson 04 helpers: one percentile definition, stopping, the cost model ---------------------
def test_client_summary_uses_the_kits_percentile_and_no_p99_below_100_events():
    from labkit.measure import percentile

    client = feed.WsFeedClient("http://127.0.0.1:1")
    client.events = [feed.Received(i, 100.0, 100.0 + i / 1000, 1.0) for i in range(1, 11)]
    row = client.summary()
    stale = [e.staleness_ms for e in client.events]
    assert row["staleness_p50_ms"] == percentile(stale, 50)
    assert row["staleness_p90_ms"] == percentile(stale, 90)
    assert row["staleness_max_ms"] == max(stale)
    assert row["staleness_p99_ms"] != row["staleness_p99_ms"]     # NaN: 10 events carry no p99
    client.events = [feed.Received(i, 100.0, 100.0 + i / 1000, 1.0) for i in range(1, 201)]
    assert client.summary()["staleness_p99_ms"] == percentile(
        [e.staleness_ms for e in client.events], 99)


def test_a_stopped_dashboard_closes_every_client_and_says_so(lab):
    from labkit.widgets.dashboard import FeedDashboard

    dash = FeedDashboard(lab, seconds=30, rate_hz=5)
    wait_for_subscribers(lab, 2)                  # SSE and WebSocket are connected
    dash.stop()
    deadline = time.monotonic() + 10
    while not all(c.done for c in dash.clients) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(c.done for c in dash.clients)
    publish(lab, 1)   # an SSE server learns that its client left at its next write
    while lab.app[HUB].topic("feed").subscribers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not lab.app[HUB].topic("feed").subscribers
    assert dash.future.cancelled()
    with pytest.raises(RuntimeError, match="stopped"):
        dash.result()
    dash._refresher.result(5)
    assert "stopped" in dash.status.value
    RestClient(lab).post("/api/feed/source", json={"rate_hz": 0})


def test_cost_model_scales_polls_with_clients_and_push_with_events():
    import pandas as pd

    costs = pd.DataFrame([
        {"transport": "no clients", "clients": 0, "cpu_us_per_event": float("nan"),
         "cpu_us_per_request": float("nan")},
        {"transport": "short poll", "clients": 5, "cpu_us_per_event": 300.0,
         "cpu_us_per_request": 100.0},
        {"transport": "long poll", "clients": 5, "cpu_us_per_event": 120.0,
         "cpu_us_per_request": 100.0},
        {"transport": "WebSocket", "clients": 5, "cpu_us_per_event": 10.0,
         "cpu_us_per_request": float("nan")},
    ])
    model = feed.cost_model(costs, clients=1000, event_rates_hz=(0.1, 10.0), poll_interval_s=0.5,
                            wait_s=10).set_index(["transport", "event_rate_hz"])["cpu_ms_per_s"]
    assert model["short poll", 0.1] == model["short poll", 10.0] == 1000 * 2 * 100 / 1000
    assert model["long poll", 0.1] == pytest.approx(1000 * 0.2 * 100 / 1000)
    assert model["WebSocket", 10.0] == 1000 * 10 * 10 / 1000
    assert model["WebSocket", 0.1] == pytest.approx(1000 * 0.1 * 10 / 1000)
    assert "no clients" not in model.index.get_level_values(0)


def test_sse_fast_path_bursts_arrive_once_in_order_as_a_valid_chunked_stream(lab):
    """SSE shares the WebSocket's fast path: bursts go to the socket as chunks of the response;
    a raw reader that parses the chunked body itself gets every event once, in order, with
    ids of the form <epoch>:<seq>, and the hub counts each delivery once."""
    bursts, per_burst, size = 4, 150, 1024
    total = bursts * per_burst

    async def scenario():
        reader, writer = await asyncio.open_connection(lab.host, lab.port)
        writer.write(f"GET /sse/feed HTTP/1.1\r\nHost: {lab.host}:{lab.port}\r\n"
                     "Accept: text/event-stream\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert b"chunked" in head.lower()
        await asyncio.to_thread(wait_for_subscribers, lab, 1)
        for _ in range(bursts):
            await asyncio.to_thread(publish, lab, per_burst, size)
        body, events = b"", []
        while len(events) < total:
            line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 20)
            chunk = await reader.readexactly(int(line, 16) + 2)
            assert chunk.endswith(b"\r\n")                     # every chunk is well framed
            body += chunk[:-2]
            *done, body = body.split(b"\n\n")
            events += [block for block in done if b"data: " in block]
        writer.close()
        return events

    blocks = run_async(scenario())
    ids = [b.split(b"id: ")[1].split(b"\n")[0].decode() for b in blocks]
    assert [int(i.rsplit(":", 1)[1]) for i in ids] == list(range(1, total + 1))
    assert [json.loads(b.split(b"data: ")[1])["seq"] for b in blocks] == list(range(1, total + 1))
    counters = feed.hub_stats(lab)["topics"]["feed"]["counters"]["sse"]
    assert counters["delivered"] == total and counters["dropped"] == 0


def test_idle_costs_count_polls_during_silence_and_none_for_held_connections(lab):
    silent = feed.idle_costs(lab, clients=3, seconds=0.6, poll_interval_s=0.1, progress=False)
    rows = silent.set_index("transport")
    assert list(rows.index) == ["no clients", "short poll", "long poll", "SSE", "WebSocket"]
    assert rows.loc["short poll", "server_requests"] >= 3 * 3     # every 0.1 s, 3 clients
    for held in ("long poll", "SSE", "WebSocket"):                # connected before measuring
        assert rows.loc[held, "server_requests"] == 0
    assert rows.loc["no clients", "clients"] == 0 and (rows["seconds"] == 0.6).all()


def test_cost_model_adds_what_idle_connections_cost():
    import pandas as pd

    costs = pd.DataFrame([{"transport": "SSE", "clients": 5, "cpu_us_per_event": 10.0,
                           "cpu_us_per_request": float("nan")}])
    idle = pd.DataFrame([{"transport": "SSE", "cpu_us_per_client_s": 2.0}])
    noisy = pd.DataFrame([{"transport": "SSE", "cpu_us_per_client_s": -3.0}])
    with_idle = feed.cost_model(costs, clients=100, event_rates_hz=(1.0,), idle=idle)
    assert with_idle["cpu_ms_per_s"].iloc[0] == 100 * (10 + 2) / 1000
    assert feed.cost_model(costs, clients=100, event_rates_hz=(1.0,),
                           idle=noisy)["cpu_ms_per_s"].iloc[0] == 100 * 10 / 1000
