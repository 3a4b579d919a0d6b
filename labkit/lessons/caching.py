"""Lesson 01's caches in between: a shared HTTP cache (RFC 9111) as a reverse proxy in front of the lab.

    with SharedCache(lab) as cdn:          # listens on 127.0.0.1, a port the OS picks
        api = lk.rest(cdn.url)              # every request goes through the cache
        api.get("/api/cacheable?max_age=60").headers["X-Cache"]   # "MISS", then "HIT"
        cdn.log_frame()                     # what the cache did with each request

The cache is hishel (https://hishel.com, RFC 9111, BSD), in its shared mode (`CacheOptions(shared=
True)`): it honours `s-maxage`, never stores a `private` answer, keys stored answers on the request
headers `Vary` names, and with `allow_stale=True` serves a stale answer without asking the lab,
unless the answer said `must-revalidate` (or `no-cache`). hishel does not implement
`stale-while-revalidate` (RFC 5861), so this cache treats it like any unknown directive.

Why hishel, and why the kit still serves the proxy: hishel is a maintained cache with a shared
mode, but a cache for HTTP *clients* (httpx, requests); nothing in it accepts connections. So the
part in between is the kit's: an aiohttp app started by `guard.serve_app` (the one serving path,
with its limits), which forwards each request with an httpx client whose transport is hishel's
`AsyncCacheTransport`, and says in an `X-Cache` header (as CDNs do) what the cache did: `HIT`
(answered from the cache, nothing sent to the lab), `REVALIDATED` (the lab answered a conditional
request with 304), `MISS` (the lab answered in full). The stored answers live in a SQLite file of
at most 16 MiB in a temporary folder, deleted with the cache. The proxy applies the lab's Host rule
itself (`hostcheck.host_allowed`, 403 otherwise: a stored answer never reaches the lab's check) and
forwards the client's own Host, so the lab checks it as well. It forwards only GET and HEAD (what a
cache serves); any other method gets 405 problem+json with `Allow: GET, HEAD`.

Credentials: the cache never adds any of its own. It forwards the client's own `Authorization`
header, and only that: the origin's URL loses its user info (a class server's handle carries the
student's token there), so a client on this machine that brings no token reaches the lab as nobody.
In front of a class server (`lk.join`) each client brings the token itself, and a shared cache must
not reuse an answer to a request with `Authorization` unless the answer allows it (`public`,
`s-maxage`, `must-revalidate`; RFC 9111 section 3.5): a plain `max-age` answer is then a MISS every
time, and the lab's counts there are the whole class's. So lesson 01 runs the tour on the student's
own lab (`lk.own_lab`).

Which requests reached the lab is read at the lab, never inferred from timings:
`lab_requests(target)` reads `GET /api/cacheable/stats` (routes/echo.py counts every request it
answers).
"""

from __future__ import annotations

import asyncio
import collections
import tempfile
import time
from pathlib import Path
from typing import Any

from labkit import _loop
from labkit.clients._target import base_url

FORWARDED_METHODS = ("GET", "HEAD")
"""What the cache forwards (what it can serve); anything else gets 405."""

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length",
                        "content-encoding"})
"""Headers that belong to one connection (RFC 9110 section 7.6.1) or that aiohttp sets itself."""
MAX_CACHE_BYTES = 16 * 1024 * 1024
LOG_LIMIT = 10_000
START_TIMEOUT_S = 10.0


class SharedCache:
    """A shared cache between clients and `target` (a lab or a URL). `url` is where clients go;
    `log` holds one record per request (method, path, status, x_cache, user); `close()` stops it."""

    def __init__(self, target, *, allow_stale: bool = False):
        self.origin = without_credentials(base_url(target))
        self.allow_stale = allow_stale
        self.log: collections.deque[dict] = collections.deque(maxlen=LOG_LIMIT)
        self._folder: tempfile.TemporaryDirectory | None = None
        self._client: Any = None   # an httpx.AsyncClient through hishel, once started
        self._served: Any = None   # guard.Served, once started
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self) -> SharedCache:
        if self._served is None:
            asyncio.run_coroutine_threadsafe(self._start(), _loop.client_loop()).result(
                START_TIMEOUT_S)
        return self

    async def _start(self) -> None:
        import httpx
        from aiohttp import web
        from hishel import AsyncSqliteStorage, CacheOptions
        from hishel.httpx import AsyncCacheTransport

        from labkit.server.guard import serve_app

        self._folder = tempfile.TemporaryDirectory(prefix="labkit-cache-")
        storage = AsyncSqliteStorage(database_path=Path(self._folder.name) / "cache.db",
                                     max_size=MAX_CACHE_BYTES)
        transport = AsyncCacheTransport(
            httpx.AsyncHTTPTransport(), storage=storage,
            rfc=CacheOptions(shared=True, allow_stale=self.allow_stale))
        self._client = httpx.AsyncClient(transport=transport, base_url=self.origin, timeout=10.0)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._served = await serve_app(app, "127.0.0.1", 0)
        self.port = self._served.port

    async def _forward(self, request):
        from aiohttp import web

        from labkit.server.hostcheck import host_allowed
        from labkit.server.problem import problem

        if not host_allowed(request.headers.get("Host", "")):
            # the lab's own rule (DNS rebinding), checked here too: a stored answer is served
            # without asking the lab, so the lab's check alone would come too late
            return problem(403, "This cache answers only requests addressed to a "
                                "loopback name (the Host header).")
        if request.method not in FORWARDED_METHODS:
            return problem(405, f"This cache forwards only {' and '.join(FORWARDED_METHODS)}; "
                                f"send {request.method[:20]} to the lab itself.",
                           headers={"Allow": ", ".join(FORWARDED_METHODS)})
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        # the client's own Host goes on to the lab, whose Host check (DNS rebinding) still decides:
        # a page that made its name resolve to this port is refused there, as it would be directly
        headers["Host"] = request.headers.get("Host", "")
        body = await request.read()
        assert self._client is not None
        answer = await self._client.request(request.method, request.path_qs, headers=headers,
                                            content=body or None)
        content = await answer.aread()
        status = answer.extensions.get("caching") or {}
        # from the cache: as stored (HIT), or after the lab said 304 (REVALIDATED); else the
        # lab's own full answer (MISS), even when the cache had asked conditionally
        x_cache = ("MISS" if not status.get("from_cache") else
                   "REVALIDATED" if status.get("revalidated") else "HIT")
        out = [(k, v) for k, v in answer.headers.multi_items() if k.lower() not in HOP_BY_HOP]
        self.log.append({"method": request.method, "path": request.path_qs,
                         "status": answer.status_code, "x_cache": x_cache,
                         "user": request.cookies.get("user"), "t": time.time()})
        response = web.Response(status=answer.status_code, body=content)
        for name, value in out:
            response.headers.add(name, value)
        response.headers["X-Cache"] = x_cache
        return response

    def close(self) -> None:
        if self._served is None:
            return

        async def stop() -> None:
            assert self._served is not None and self._client is not None
            await self._served.close()
            await self._client.aclose()

        try:
            asyncio.run_coroutine_threadsafe(stop(), _loop.client_loop()).result(START_TIMEOUT_S)
        finally:
            self._served = None
            if self._folder is not None:
                self._folder.cleanup()

    def __enter__(self) -> SharedCache:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def log_frame(self):
        import pandas as pd

        return pd.DataFrame(list(self.log), columns=["method", "path", "status", "x_cache",
                                                      "user", "t"])

    def __repr__(self) -> str:
        state = f"on {self.url}" if self._served else "stopped"
        return f"SharedCache({state} -> {self.origin}, allow_stale={self.allow_stale})"


def without_credentials(url: str) -> str:
    """`url` without user info (`student:TOKEN@`): the cache forwards clients' own credentials
    and never adds its own."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def lab_requests(target) -> int:
    """How many requests for /api/cacheable the lab itself has answered (200 and 304)."""
    from labkit.clients.rest import RestClient

    with RestClient(target) as api:
        return int(api.get("/api/cacheable/stats").json()["requests"])


def cache_tour(target, *, repeats: int = 5, stale_wait_s: float = 1.2):
    """Every case of lesson 01's "caches in between", through a real shared cache, counted at the
    lab. One row per case: case, cache_control (what the lab answered), requests (sent by the
    clients), reached_lab (counted by the lab), x_cache (what the cache said, in order), got
    (what the clients received, in words computed from the answers), leaked (a per-user answer
    given to another user). Each case has its own URL, so no case sees another's stored answers.
    """
    import contextlib

    with contextlib.ExitStack() as clients:  # every client closed, also on an interrupt
        return _tour(target, clients, repeats, stale_wait_s)


def _tour(target, clients, repeats: int, stale_wait_s: float):
    import pandas as pd

    from labkit.clients.rest import RestClient as _Rest

    def RestClient(*args, **kwargs):  # noqa: N802 - the client's name, closed with the tour
        return clients.enter_context(_Rest(*args, **kwargs))

    rows = []
    lab = RestClient(target)

    def case(name: str, cdn: SharedCache, run) -> None:
        before, logged = lab_requests(target), len(cdn.log)
        cache_control, got, leaked = run()
        rows.append({"case": name, "cache_control": cache_control,
                     "requests": len(cdn.log) - logged, "reached_lab": lab_requests(target) - before,
                     "x_cache": " ".join(r["x_cache"] for r in list(cdn.log)[logged:]),
                     "got": got, "leaked": leaked})

    with SharedCache(target) as cdn:
        via = RestClient(cdn.url)

        def fresh(query: str):
            def run():
                answers = [via.get(f"/api/cacheable?{query}") for _ in range(repeats)]
                versions = {a.json()["version"] for a in answers}
                return answers[0].headers["Cache-Control"], f"version {sorted(versions)}", False
            return run

        case("max-age=30: fresh, reused without asking", cdn, fresh("max_age=30&case=1"))
        case("max-age=0: stored, but every use asks the lab first", cdn, fresh("max_age=0&case=2"))

        def shared_only():
            own = RestClient(cdn.url, cache=True)  # a private cache in the client too
            answers = [own.get("/api/cacheable?max_age=0&s_maxage=30&case=3")
                       for _ in range(repeats)]
            return (answers[0].headers["Cache-Control"],
                    f"the client's own cache asked {repeats} times (max-age=0)", False)

        case("s-maxage=30: the shared cache keeps it, private caches ask", cdn, shared_only)

        def vary():
            kinds = ["application/json", "text/csv"] * repeats
            answers = [via.get("/api/cacheable?max_age=30&case=4", headers={"Accept": k})
                       for k in kinds]
            right = sum(a.headers["Content-Type"].startswith(k)
                        for a, k in zip(answers, kinds, strict=True))
            return (answers[0].headers["Cache-Control"] + " (Vary: " + answers[0].headers["Vary"]
                    + ")", f"{right} of {len(kinds)} in the format asked (JSON or CSV)", False)

        case("Vary: Accept: one stored copy per format", cdn, vary)

        def per_user(scope: str):
            def run():
                url = f"/api/cacheable?max_age=30&scope={scope}&case=5{scope}"
                alice = RestClient(cdn.url, headers={"Cookie": "user=alice"}).get(url)
                bob = RestClient(cdn.url, headers={"Cookie": "user=bob"}).get(url)
                who = bob.json()["user"]
                return (alice.headers["Cache-Control"],
                        f"alice got alice's, bob got {who}'s", who != "bob")
            return run

        case("a per-user answer marked public", cdn, per_user("public"))
        case("a per-user answer marked private", cdn, per_user("private"))

    with SharedCache(target, allow_stale=True) as cdn:
        via = RestClient(cdn.url)

        def stale(must: int):
            def run():
                url = f"/api/cacheable?max_age=1&must_revalidate={must}&case=6{must}"
                first = via.get(url)
                lab.post("/api/cacheable/version")          # the resource changes at the lab
                time.sleep(stale_wait_s)                   # and the stored copy goes stale
                later = via.get(url)
                now = lab.get("/api/cacheable/stats").json()["version"]
                return (first.headers["Cache-Control"],
                        f"version {later.json()['version']} while the lab has {now}", False)
            return run

        case(f"stale ({stale_wait_s:g} s after max-age=1), stale answers allowed", cdn, stale(0))
        case("the same with must-revalidate", cdn, stale(1))
    return pd.DataFrame(rows)


def _times(n: int) -> str:
    return f"{n} time" if n == 1 else f"{n} times"


def describe_tour(cases) -> str:
    """What `cache_tour` measured, as Markdown bullets computed from its rows (in its order)."""
    hit, ask, cdn_only, per_format, leak, kept_out, served_stale, strict = (
        row for _, row in cases.iterrows())
    return "\n".join([
        f"- **Fresh:** with `{hit.cache_control}`, {hit.requests} requests reached the cache and "
        f"{hit.reached_lab} the lab. With `{ask.cache_control}` the lab saw {ask.reached_lab} of "
        f"{ask.requests}: {ask.x_cache.split().count('REVALIDATED')} were conditional requests "
        "answered 304.",
        f"- **Shared, not private:** with `{cdn_only.cache_control}` the client's own cache asked "
        f"every time ({cdn_only.requests} requests reached the shared cache), and the shared cache "
        f"answered them itself: the lab saw {cdn_only.reached_lab}.",
        f"- **Vary:** {per_format.requests} requests alternating JSON and CSV reached the lab "
        f"{_times(per_format.reached_lab)}; {per_format.got}.",
        f"- **A per-user answer:** marked `public`, {leak.got}: "
        + ("the shared cache served bob the copy it stored for alice" if leak.leaked
           else "each got their own")
        + f" (the lab answered {leak.reached_lab} of the {leak.requests} requests). Marked "
        f"`private`, {kept_out.got}; the lab answered {kept_out.reached_lab} of {kept_out.requests}.",
        f"- **Stale:** after the change, the second read of a stale `{served_stale.cache_control}` "
        f"answer reached the lab {_times(served_stale.reached_lab - 1)} (`X-Cache`: "
        f"{served_stale.x_cache.split()[-1]}) and gave {served_stale.got}. With "
        f"`{strict.cache_control}` it reached the lab {_times(strict.reached_lab - 1)} and gave "
        f"{strict.got}.",
    ])
