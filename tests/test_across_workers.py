"""Nothing silent across workers or restarts: two real worker processes, a real redis-server that
the tests stall (SIGSTOP) and restart on the same port, real sockets. Each test does the attack
and checks the fixed behaviour by counts, order and content (never by a duration)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import uuid

import aiohttp
import pytest
from test_cluster import need_redis

from labkit.cluster import Cluster
from labkit.cluster.redis_server import free_port
from labkit.routes.chat import TYPING_BURST


class Redis:
    """A redis-server on a fixed loopback port that can be stalled and restarted (data lost)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = tempfile.mkdtemp(prefix="labkit-test-redis-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        import redis

        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind",
             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.folder],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=0.5)
        for _ in range(500):
            try:
                if client.ping():
                    return self
            except redis.ConnectionError:
                asyncio.run(asyncio.sleep(0.02))
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def stall(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


@pytest.fixture
def redis_and_cluster():
    need_redis()
    server = Redis().start()
    cluster = Cluster(2, backplane=server.url).start()
    try:
        yield server, cluster
    finally:
        cluster.stop()
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def ws(url: str) -> str:
    return url.replace("http://", "ws://")


async def post(session, url: str, text: str, key: str | None = None, name: str = "ann"):
    headers = {} if key is None else {"Idempotency-Key": key}
    async with session.post(url + "/api/chat/messages", json={"name": name, "text": text},
                            headers=headers) as r:
        return r.status, dict(r.headers), await r.json(content_type=None)


async def messages(session, url: str) -> list[dict]:
    async with session.get(url + "/api/chat/messages") as r:
        return await r.json()


async def until(predicate, what: str, tries: int = 2000):
    for _ in range(tries):
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


# -- 2. a resent WebSocket id on another worker ------------------------------------------------
def test_a_websocket_resend_on_another_worker_is_published_once(redis_and_cluster):
    _, cluster = redis_and_cluster
    one, two = cluster.worker(1).url, cluster.worker(2).url

    async def scenario():
        async with aiohttp.ClientSession() as session:
            acks = []
            for url in (one, two):  # the sender lost its connection and landed on worker 2
                async with session.ws_connect(ws(url) + "/ws/chat?name=ann") as conn:
                    await conn.receive_json()  # welcome
                    await conn.send_json({"type": "message", "text": "only once", "id": "m-1"})
                    while (msg := await conn.receive_json())["type"] != "ack":
                        pass
                    acks.append(msg)
            return acks, await messages(session, one), await messages(session, two)

    acks, seen_one, seen_two = run(scenario())
    assert [a["duplicate"] for a in acks] == [False, True]
    assert acks[0]["seq"] == acks[1]["seq"]
    for seen in (seen_one, seen_two):
        assert [m["data"]["text"] for m in seen].count("only once") == 1


# -- 1. Idempotency-Key across workers; a stalled Redis answers 503 and publishes nothing -------
def test_an_idempotency_key_retried_on_another_worker_is_published_once(redis_and_cluster):
    _, cluster = redis_and_cluster
    one, two = cluster.worker(1).url, cluster.worker(2).url

    async def scenario():
        async with aiohttp.ClientSession() as session:
            first = await post(session, one, "pay me", key="k-1")
            again = await post(session, two, "pay me", key="k-1")
            other = await post(session, two, "another text", key="k-1")
            return first, again, other, await messages(session, one)

    first, again, other, seen = run(scenario())
    assert first[0] == 201 and again[0] == 201 and again[2]["seq"] == first[2]["seq"]
    assert again[1].get("Idempotent-Replayed") == "true"
    assert other[0] == 422
    assert [m["data"]["text"] for m in seen] == ["pay me"]


def test_a_stalled_redis_gets_503_with_retry_after_and_nothing_published_later(redis_and_cluster):
    server, cluster = redis_and_cluster
    one, two = cluster.worker(1).url, cluster.worker(2).url

    async def scenario():
        async with aiohttp.ClientSession() as session:
            assert (await post(session, one, "before", key="b-0"))[0] == 201
            server.stall()
            try:
                stalled = await asyncio.gather(*(
                    post(session, (one, two)[i % 2], f"during {i}", key=f"d-{i}")
                    for i in range(4)))
            finally:
                server.resume()
            # Redis now runs what was queued while it was stopped: the script refuses each
            after = await until(lambda: post(session, one, "after", key="a-0"),
                                "a publish after the stall")
            seen_before_retry = await messages(session, two)
            retried = [await post(session, two, f"during {i}", key=f"d-{i}") for i in range(4)]
            retried_again = [await post(session, one, f"during {i}", key=f"d-{i}")
                             for i in range(4)]
            return stalled, after, seen_before_retry, retried, retried_again, \
                await messages(session, one)

    stalled, after, seen_before_retry, retried, retried_again, seen = run(scenario())
    for status, headers, body in stalled:
        assert status == 503 and headers["Content-Type"].startswith("application/problem+json")
        assert int(headers["Retry-After"]) >= 1 and "not published" in body["detail"]
    assert after[0] == 201
    # what was refused was not published, not even once Redis woke up and ran the queued calls
    assert [m["data"]["text"] for m in seen_before_retry] == ["before", "after"]
    assert [r[0] for r in retried] == [201] * 4
    assert [r[2]["seq"] for r in retried_again] == [r[2]["seq"] for r in retried]
    texts = [m["data"]["text"] for m in seen]
    assert texts == ["before", "after"] + [f"during {i}" for i in range(4)]


# -- 3 and 4. Redis restarts: a reset on every live transport; no blind resume is skipped -------
async def sse_blocks(resp, n: int) -> list[dict]:
    blocks, block = [], {}
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith(":"):
            continue
        if line:
            name, _, value = line.partition(":")
            block[name] = value.lstrip(" ")
        elif block:
            blocks.append(block)
            block = {}
            if len(blocks) == n:
                break
    return blocks


def test_a_redis_restart_reaches_live_subscribers_as_a_reset_and_blind_resumes_are_told(
        redis_and_cluster):
    server, cluster = redis_and_cluster
    one, two = cluster.worker(1).url, cluster.worker(2).url

    async def scenario():
        async with aiohttp.ClientSession() as session:
            for i in range(3):
                assert (await post(session, one, f"old {i}"))[0] == 201
            old = (await messages(session, two))[-1]
            chat = await session.ws_connect(ws(two) + "/ws/chat?name=bob")
            welcome = await chat.receive_json()
            feed_ws = await session.ws_connect(ws(two) + "/ws/feed")
            sse = await session.get(two + "/sse/feed", headers={"Accept": "text/event-stream"})
            first_sse = await sse_blocks(sse, 1)  # the id-only block of a fresh stream
            server.stop()
            server.start()  # a new, empty Redis on the same port: the topics' history is gone
            for i in range(5):
                await until(lambda i=i: _created(session, one, f"new {i}"), "a publish")
            async with session.post(one + "/api/feed/source",
                                    json={"rate_hz": 200, "ticks": 1, "seed": 1}) as r:
                assert r.status == 200
            chat_seen = [await chat.receive_json() for _ in range(6)]
            feed_seen = [await feed_ws.receive_json() for _ in range(2)]
            sse_seen = await sse_blocks(sse, 2)
            for closing in (chat, feed_ws):
                await closing.close()
            sse.close()
            # a long poll that names the old epoch: 409; one that names none: 428, never a skip
            async with session.get(two + f"/api/chat/messages?since=3&epoch={old['epoch']}"
                                   "&wait=1") as r:
                conflict = r.status, await r.json()
            async with session.get(two + "/api/chat/messages?since=3&wait=1") as r:
                blind_poll = r.status, await r.json()
            # a WebSocket that resumes blind after SEQ 3: the events after it, then a reset
            blind = await session.ws_connect(ws(one) + "/ws/chat?name=cy&since=3")
            blind_seen = [await blind.receive_json() for _ in range(4)]
            await blind.close()
            return welcome, first_sse, chat_seen, feed_seen, sse_seen, conflict, blind_poll, \
                blind_seen

    (welcome, first_sse, chat_seen, feed_seen, sse_seen, conflict, blind_poll,
     blind_seen) = run(scenario())
    reset = chat_seen[0]
    assert reset["type"] == "reset" and reset["epoch"] != welcome["epoch"]  # before: nothing
    assert reset["last_seq"] == 0
    assert [(m["seq"], m["data"]["text"]) for m in chat_seen[1:]] == [
        (i + 1, f"new {i}") for i in range(5)]
    assert {m["epoch"] for m in chat_seen[1:]} == {reset["epoch"]}
    assert feed_seen[0]["type"] == "reset" and feed_seen[1]["seq"] == 1
    assert feed_seen[1]["epoch"] == feed_seen[0]["epoch"]
    assert first_sse[0]["id"].endswith(":0")
    assert sse_seen[0]["event"] == "reset" and json.loads(sse_seen[0]["data"])["type"] == "reset"
    assert sse_seen[1]["id"] == f"{feed_seen[0]['epoch']}:1"
    assert conflict[0] == 409 and conflict[1]["epoch"] == reset["epoch"]
    assert blind_poll[0] == 428 and blind_poll[1]["epoch"] == reset["epoch"]
    assert blind_poll[1]["last_seq"] == 5
    assert blind_seen[0]["type"] == "welcome"
    assert [m["seq"] for m in blind_seen[1:3]] == [4, 5]
    assert blind_seen[3]["type"] == "reset" and blind_seen[3]["epoch"] == reset["epoch"]
    assert blind_seen[3]["since"] == 3


async def _created(session, url: str, text: str) -> bool:
    status, _, _ = await post(session, url, text, key=uuid.uuid4().hex)
    return status == 201


# -- 5. typing notices have a budget of their own -----------------------------------------------
def test_a_typing_flood_is_limited_per_member_and_the_sender_is_told(lab):
    flood = 500

    async def scenario():
        async with aiohttp.ClientSession() as session:
            ann = await session.ws_connect(lab.ws_url + "/ws/chat?name=ann")
            bob = await session.ws_connect(lab.ws_url + "/ws/chat?name=bob")
            await ann.receive_json()
            await bob.receive_json()
            for _ in range(flood):
                await ann.send_json({"type": "typing"})
            await ann.send_json({"type": "message", "text": "done", "id": "end"})
            typing_at_bob = 0
            while (msg := await bob.receive_json())["type"] != "message":
                typing_at_bob += msg["type"] == "typing"
            errors = 0
            while (msg := await ann.receive_json())["type"] != "ack":
                errors += msg["type"] == "error" and "typing" in msg["detail"]
            await ann.close()
            await bob.close()
            return typing_at_bob, errors

    typing_at_bob, errors = run(scenario())
    assert typing_at_bob >= TYPING_BURST  # a burst goes through
    assert typing_at_bob + errors == flood  # every notice is either relayed or refused, said so
    assert errors > flood // 2  # before: all 500 relayed, none refused
