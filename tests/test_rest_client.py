"""RestClient's request log and its HTTP cache (Cache-Control, ETag revalidation) over real sockets."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import threading
import time

import pytest
from aiohttp import web

from labkit.clients.http_cache import HttpCache, cache_directives
from labkit.clients.rest import Exchange, RestClient

MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
def origin():
    """A tiny server with fixed caching headers that counts what reaches it."""
    hits: dict[str, int] = {}

    async def handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        hits[name] = hits.get(name, 0) + 1
        policy = {"fresh": "max-age=60", "nostore": "no-store", "stale": "max-age=0"}[name]
        etag = f'"{name}-v1"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag, "Cache-Control": policy})
        return web.Response(text=f"{name} body", headers={"ETag": etag, "Cache-Control": policy})

    async def write(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/{name}", handler)
    app.router.add_put("/{name}", write)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = web.AppRunner(app)

    async def up():
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner.addresses[0][1]

    port = asyncio.run_coroutine_threadsafe(up(), loop).result(5)
    yield f"http://127.0.0.1:{port}", hits
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_the_log_has_one_row_per_exchange_with_bytes_time_and_reuse(lab):
    with RestClient(lab) as api:
        api.post("/api/notes", json={"title": "x"})
        api.get("/api/notes/1")
        api.get("/api/notes/2")
        frame = api.log_frame()
        assert list(frame.columns) == [f for f in Exchange.__dataclass_fields__]
        assert list(frame["status"]) == [201, 200, 404]
        assert list(frame["method"]) == ["POST", "GET", "GET"]
        assert (frame["request_header_bytes"] > 0).all() and (frame["response_header_bytes"] > 0).all()
        assert frame["request_body_bytes"].iloc[0] == len(b'{"title": "x"}')
        assert list(frame["reused_connection"]) == [False, True, True]
        assert set(frame["cache"]) == {""}
        assert len(api.log_frame(last=2)) == 2


def test_no_cache_answers_are_revalidated_and_a_304_reuses_the_stored_body(lab):
    with RestClient(lab, cache=True) as api, RestClient(lab) as other:
        api.post("/api/notes", json={"title": "x", "body": "b" * 5000})
        first, second = api.get("/api/notes/1"), api.get("/api/notes/1")
        assert (first.cache, second.cache) == ("stored", "revalidated")
        assert second.status == 200 and second.body == first.body
        wire = api.log_frame(last=2)
        assert list(wire["status"]) == [200, 304]
        assert list(wire["response_body_bytes"]) == [len(first.body), 0]
        other.patch("/api/notes/1", data='{"votes": 9}', headers=MERGE)
        third = api.get("/api/notes/1")
        assert third.cache == "stored" and third.json()["votes"] == 9
        assert api.log[-1].status == 200


def test_fresh_answers_are_reused_without_a_request(origin):
    base, hits = origin
    with RestClient(base, cache=True) as api:
        replies = [api.get("/fresh") for _ in range(3)]
        assert hits["fresh"] == 1
        assert [r.cache for r in replies] == ["stored", "hit", "hit"]
        assert {r.text for r in replies} == {"fresh body"}
        hit = api.log[-1]
        assert (hit.request_header_bytes, hit.response_header_bytes, hit.response_body_bytes) == (0, 0, 0)
        forced = api.get("/fresh", headers={"Cache-Control": "no-cache"})
        assert forced.cache == "revalidated" and api.log[-1].status == 304 and hits["fresh"] == 2


def test_max_age_zero_revalidates_and_no_store_is_never_kept(origin):
    base, hits = origin
    with RestClient(base, cache=True) as api:
        assert [api.get("/stale").cache for _ in range(2)] == ["stored", "revalidated"]
        assert [api.get("/nostore").cache for _ in range(2)] == ["", ""]
        assert hits == {"stale": 2, "nostore": 2}
        assert [e.status for e in api.log] == [200, 304, 200, 200]


def test_an_unsafe_method_drops_the_stored_copy(origin):
    base, hits = origin
    with RestClient(base, cache=True) as api:
        api.get("/fresh")
        assert api.put("/fresh", data="x").status == 204
        assert api.get("/fresh").cache == "stored" and hits["fresh"] == 2


def test_the_callers_own_conditional_headers_are_left_alone(lab):
    with RestClient(lab, cache=True) as api:
        api.post("/api/notes", json={"title": "x"})
        api.get("/api/notes/1")
        mine = api.get("/api/notes/1", headers={"If-None-Match": '"not-the-etag"'})
        assert mine.status == 200 and mine.cache == "stored"


def test_cache_directives_parse_and_freshness():
    assert cache_directives('no-cache, max-age="60", Private') == {
        "no-cache": None, "max-age": "60", "private": None}
    cache = HttpCache()
    assert cache.store("u", {}, 200, {"Cache-Control": "max-age=60", "Age": "10"}, b"x")
    entry = cache.lookup("u", {})
    assert entry.max_age() == 50 and entry.is_fresh(entry.stored_at + 49)
    assert not entry.is_fresh(entry.stored_at + 51)
    assert cache.lookup("u", {"Accept": "text/csv"}) is None  # another representation
    assert not cache.store("v", {}, 404, {}, b"")
    cache.invalidate("u")
    assert len(cache) == 0


def test_a_forgotten_client_closes_its_connection_when_collected(lab):
    api = RestClient(lab)
    assert api.get("/healthz").status == 200
    held = api._held
    del api
    gc.collect()
    for _ in range(100):  # the close runs on the clients' loop; bounded wait
        if held.session.closed:
            break
        time.sleep(0.02)
    assert held.session.closed


EXIT_SCRIPT = """
import labkit as lk
lab = lk.start()
api = lk.rest(lab)
once = lk.rest(lab, keep_alive=False)
ws = lk.websocket(lab, "/ws/echo")
assert api.get("/healthz").status == once.get("/healthz").status == 200
assert ws.echo("hi")[0] == "hi"
print("done")
"""


def test_clients_never_closed_leave_no_unclosed_warnings_at_exit():
    """A notebook rarely closes its clients: the interpreter's exit must close them quietly."""
    run = subprocess.run([sys.executable, "-X", "dev", "-c", EXIT_SCRIPT], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "done", run.stderr
    assert "unclosed" not in run.stderr.lower(), run.stderr
