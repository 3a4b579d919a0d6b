"""RestClient: an HTTP client that logs every exchange (bytes, time, connection reuse).

With `cache=True` its GETs go through a private HTTP cache (`http_cache.HttpCache`): fresh answers
are reused without a request, stale ones are revalidated with If-None-Match / If-Modified-Since,
and the log says which (`cache` column: "hit", "revalidated", "stored", or "").
"""

from __future__ import annotations

import json as jsonlib
import time
from dataclasses import asdict, dataclass, field, fields

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from labkit import _loop

from ._target import base_url, lab_ssl_context
from .http_cache import HttpCache

SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")


@dataclass
class Exchange:
    """One request and its response, as the request log shows it."""

    method: str
    path: str
    status: int
    request_header_bytes: int
    response_header_bytes: int
    request_body_bytes: int
    response_body_bytes: int
    elapsed_ms: float
    reused_connection: bool
    cache: str = ""
    """With a cache: "hit" (nothing sent), "revalidated" (a 304 let the stored copy be reused),
    "stored" (a fresh answer was kept); "" otherwise."""


@dataclass
class Reply:
    """What came back: status, headers, body, and how long the exchange took."""

    status: int
    headers: CIMultiDict
    body: bytes
    elapsed_ms: float
    reused_connection: bool
    exchange: Exchange = field(repr=False)
    cache: str = ""

    @property
    def text(self) -> str:
        """The body as text (UTF-8; undecodable bytes become U+FFFD)."""
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        """The body decoded as JSON (None for an empty body)."""
        return jsonlib.loads(self.body) if self.body else None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400


def request_head_bytes(method: str, path: str, headers) -> int:
    """Size of the request line plus headers as HTTP/1.1 puts them on the wire."""
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    return len(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


def response_head_bytes(response: aiohttp.ClientResponse) -> int:
    """Size of the status line plus headers exactly as they arrived."""
    assert response.version is not None, "a response that arrived has its HTTP version"
    version = f"HTTP/{response.version.major}.{response.version.minor}"
    status_line = f"{version} {response.status} {response.reason}"
    raw = sum(len(k) + 2 + len(v) + 2 for k, v in response.raw_headers)
    return len(status_line) + 2 + raw + 2


async def _on_reuse(session, ctx, params) -> None:
    ctx.trace_request_ctx["reused"] = True


async def _on_headers_sent(session, ctx, params) -> None:
    ctx.trace_request_ctx["head_bytes"] = request_head_bytes(
        params.method, params.url.raw_path_qs, params.headers
    )


class _Session:
    """The client's aiohttp session, held apart from the client so it can be closed when the
    client is garbage-collected or at exit (see `_loop.close_when_collected`)."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        if self.session is not None and not self.session.closed:
            await self.session.close()


class RestClient:
    """Sync HTTP client for lessons: `api = lk.rest(lab); api.get("/healthz").json()`.

    keep_alive=True reuses one TCP connection across requests (HTTP/1.1's default);
    keep_alive=False opens a new connection for every request. Every exchange is appended to `log`.
    cache=True (or an HttpCache to share) keeps GET answers and revalidates them as HTTP says.
    """

    def __init__(self, target, *, keep_alive: bool = True, timeout: float = 10.0, headers=None,
                 cache: bool | HttpCache = False):
        self.base = base_url(target)
        self.cache: HttpCache | None = HttpCache() if cache is True else (cache or None)
        self.keep_alive = keep_alive
        self.timeout = timeout
        self.default_headers = dict(headers or {})
        self.log: list[Exchange] = []
        self._held = _Session()
        _loop.close_when_collected(self, self._held.aclose)

    # -- plumbing ----------------------------------------------------------------------------
    async def _ensure_session(self) -> aiohttp.ClientSession:
        if self._held.session is None or self._held.session.closed:
            trace = aiohttp.TraceConfig()
            trace.on_connection_reuseconn.append(_on_reuse)
            trace.on_request_headers_sent.append(_on_headers_sent)
            self._held.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=not self.keep_alive, limit=1,
                                               ssl=lab_ssl_context(self.base) or True),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                trace_configs=[trace],
                auto_decompress=True,
            )
        return self._held.session

    async def _request(self, method, path, *, json=None, data=None, headers=None) -> Reply:
        session = await self._ensure_session()
        hdrs = {**self.default_headers, **(headers or {})}
        if json is not None:
            data = jsonlib.dumps(json).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if isinstance(data, str):
            data = data.encode()
        url = self.base + path
        started = time.perf_counter_ns()
        entry = self.cache.lookup(url, hdrs) if self.cache is not None and method == "GET" else None
        if entry is not None and entry.is_fresh():
            return self._from_cache(method, path, entry, started)
        conditional = entry is not None and not any(
            h.lower() in ("if-none-match", "if-modified-since") for h in hdrs
        )
        if entry is not None and conditional:
            hdrs.update(entry.validators())
        ctx: dict = {"reused": False, "head_bytes": 0}
        async with session.request(
            method, url, data=data, headers=hdrs, trace_request_ctx=ctx, allow_redirects=False,
        ) as response:
            body = await response.read()
        elapsed_ms = (time.perf_counter_ns() - started) / 1e6
        cache_state, status, headers, reply_body = "", response.status, response.headers, body
        if self.cache is not None:
            if method == "GET" and response.status == 304 and conditional:
                entry = self.cache.refresh(url, hdrs, response.headers)
                cache_state, status, headers, reply_body = (
                    "revalidated", entry.status, entry.headers, entry.body
                )
            elif method == "GET" and self.cache.store(url, hdrs, response.status,
                                                      response.headers, body):
                cache_state = "stored"
            elif method not in SAFE_METHODS and response.status < 400:
                self.cache.invalidate(url)
                for name in ("Location", "Content-Location"):
                    if name in response.headers:
                        self.cache.invalidate(str(response.url.join(URL(response.headers[name]))))
        exchange = Exchange(
            method=method,
            path=path,
            status=response.status,
            request_header_bytes=ctx["head_bytes"],
            response_header_bytes=response_head_bytes(response),
            request_body_bytes=len(data or b""),
            response_body_bytes=len(body),
            elapsed_ms=elapsed_ms,
            reused_connection=ctx["reused"],
            cache=cache_state,
        )
        self.log.append(exchange)
        return Reply(status, CIMultiDict(headers), reply_body, elapsed_ms, ctx["reused"], exchange,
                     cache_state)

    def _from_cache(self, method: str, path: str, entry, started: int) -> Reply:
        """A fresh stored answer: nothing goes on the wire, the log row says "hit"."""
        elapsed_ms = (time.perf_counter_ns() - started) / 1e6
        exchange = Exchange(method, path, entry.status, 0, 0, 0, 0, elapsed_ms, False, "hit")
        self.log.append(exchange)
        return Reply(entry.status, CIMultiDict(entry.headers), entry.body, elapsed_ms, False,
                     exchange, "hit")

    # -- public API ----------------------------------------------------------------------------
    def request(self, method: str, path: str, **kw) -> Reply:
        """Send one request: `json=` a JSON body, `data=` raw bytes or text, `headers=` extra headers."""
        return _loop.run(self._request(method.upper(), path, **kw), timeout=self.timeout + 5)

    async def arequest(self, method: str, path: str, **kw) -> Reply:
        """Awaitable form of `request`, for code already on the clients' loop (`labkit._loop`),
        such as a background poller; from a cell use `request` / `get` / `post`."""
        return await self._request(method.upper(), path, **kw)

    def get(self, path: str, **kw) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> Reply:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw) -> Reply:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw) -> Reply:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw) -> Reply:
        return self.request("DELETE", path, **kw)

    def head(self, path: str, **kw) -> Reply:
        return self.request("HEAD", path, **kw)

    def options(self, path: str, **kw) -> Reply:
        return self.request("OPTIONS", path, **kw)

    def log_frame(self, last: int | None = None):
        """The request log as a pandas DataFrame, one row per exchange (only the `last` n if given)."""
        import pandas as pd

        rows = [asdict(e) for e in self.log]
        frame = pd.DataFrame(rows, columns=[f.name for f in fields(Exchange)])
        frame.index.name = "request"
        return frame.tail(last) if last else frame

    def close(self) -> None:
        """Close the connection(s); a later request opens a new one."""
        _loop.run(self._held.aclose())

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "keep-alive" if self.keep_alive else "new connection per request"
        return f"<RestClient {self.base} ({mode}), {len(self.log)} exchanges logged>"
