"""Feed clients: the same live feed read by short poll, long poll, SSE and WebSocket, timed.

Each client records, per event: its SEQ, the server's publish time `ts`, the time it arrived, and
the staleness (arrival minus publish, in ms). Both clocks are `time.time()` on this machine (the
lab server runs in the same kernel), so the difference is meaningful. Per run each client counts
requests made (HTTP requests, or connections opened for SSE and WebSocket), empty answers, and
bytes up and down at the application level: HTTP request/response heads and bodies, WebSocket
handshake plus frame headers and payloads. TCP/IP overhead and TLS are not counted.

A target is a lab (`lk.start()`, also with `tls=True`) or a URL string, e.g. the URL of a
`NetemProxy` in front of the lab (`net.url()`) to read the feed over an emulated network; the
WebSocket client turns http(s) into ws(s) itself, so one URL serves all four transports.

    run = lk.feed_run(lab, seconds=5, rate_hz=10)   # all four transports on the same events
    run.summary                                       # one row per transport

Size: longer than 500 lines because the four feed clients (short poll, long poll, SSE, WebSocket)
record the same per-event timings and must stay comparable, so they share one record type and one
timing path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from websockets.asyncio.client import connect

from labkit import _loop
from labkit.measure import percentile

from ._target import base_url, lab_ssl_context
from .rest import request_head_bytes, response_head_bytes

TRANSPORTS = ("short_poll", "long_poll", "sse", "ws")
LABELS = {"short_poll": "short poll", "long_poll": "long poll", "sse": "SSE", "ws": "WebSocket"}
SETTLE_S = 0.3
"""After a `server_cost` run, time given to what its clients left on the server to finish (s)."""
MAX_SETTLE_RATE_HZ = 1000.0
"""Rate of the single event that wakes those leftovers (it is published at once)."""
CONNECT_S = 0.5
"""Time `idle_costs` gives its clients to connect before it measures (seconds)."""
MIN_N_FOR_P99 = 100
"""A client's summary gives a p99 only from this many events on (fewer cannot carry it)."""
CONTROL_TIMEOUT_S = 10.0
"""Longest a control request (set the ticker, read the hub's counters) may take, in seconds."""
"""How the lessons name each transport."""


def target_url(target, scheme: str = "http") -> str:
    """Base URL of a lab or a URL string, as http(s) or (scheme="ws") ws(s)."""
    url = base_url(target, scheme)
    if scheme == "ws" and url.startswith(("http://", "https://")):
        return "ws" + url[4:]
    if scheme != "ws" and url.startswith(("ws://", "wss://")):
        return "http" + url[2:]
    return url


def http_session(url: str, **options) -> aiohttp.ClientSession:
    """An aiohttp session for `url`; for https it also trusts a TLS lab's local CA
    (`lk.start(tls=True)`), as the REST and WebSocket clients do."""
    connector = aiohttp.TCPConnector(ssl=lab_ssl_context(url) or True)
    return aiohttp.ClientSession(connector=connector, **options)


@dataclass
class Received:
    """One event as one client saw it."""

    seq: int
    published_ts: float
    received_ts: float
    price: float | None

    @property
    def staleness_ms(self) -> float:
        return (self.received_ts - self.published_ts) * 1000.0


@dataclass
class FeedClient:
    """Common part of the four feed clients: the record of what arrived and what it cost."""

    target: object
    path: str = "/api/feed"
    label: str = ""
    transport: str = field(default="", init=False)
    events: list[Received] = field(default_factory=list, init=False)
    gaps: list[dict] = field(default_factory=list, init=False)
    requests: int = field(default=0, init=False)
    empty_responses: int = field(default=0, init=False)
    bytes_up: int = field(default=0, init=False)
    bytes_down: int = field(default=0, init=False)
    last_seq: int | None = field(default=None, init=False)
    epoch: str | None = field(default=None, init=False)
    """The history the SEQs count in (from the events, or Feed-Epoch); sent back when resuming."""
    resets: list[dict] = field(default_factory=list, init=False)
    """History resets met (the lab restarted): {"epoch", "last_seq"}; reading goes on after them."""
    errors: list[str] = field(default_factory=list, init=False)
    done: bool = field(default=False, init=False)
    elapsed_s: float = field(default=0.0, init=False)
    """How long the client read (s): from its start until it stopped."""

    def __post_init__(self):
        self.label = self.label or LABELS.get(self.transport, self.transport)

    @property
    def base(self) -> str:
        return target_url(self.target)

    def _record(self, event: dict, now: float) -> None:
        data = event.get("data") or {}
        price = data.get("price") if isinstance(data, dict) else None
        now += getattr(self.target, "clock_offset_s", 0.0)  # on the server's clock (lk.join)
        self.events.append(Received(event["seq"], event["ts"], now, price))
        self.last_seq = event["seq"]
        self.epoch = event.get("epoch", self.epoch)

    def _on_reset_message(self, body: dict) -> None:
        """A stream's `reset`: with "since", the server only says which history the events after
        our SEQ count in (we resumed without an epoch): take it, or, if ours was another one,
        note a reset; without it, the history was replaced."""
        if "since" in body and self.epoch in (None, body.get("epoch")):
            self.epoch = body.get("epoch")
        else:
            self._reset(body)

    def _reset(self, body: dict) -> None:
        """The lab's history was replaced: note it and go on from the new history's newest SEQ
        (these clients measure; lk.subscriber re-syncs from a snapshot instead)."""
        self.resets.append({"epoch": body.get("epoch"), "last_seq": body.get("last_seq")})
        self.epoch, self.last_seq = body.get("epoch"), body.get("last_seq")

    async def arun(self, seconds: float, since: int | None = None, until_seq: int | None = None,
                   epoch: str | None = None):
        """Read for `seconds` (or until SEQ `until_seq` has arrived); start after `since`
        (None: from now on) of the history `epoch` (sent with every resume; a resume without it
        is answered with a reset or a 428 that names the current epoch, never a silent skip)."""
        self.last_seq = since
        if epoch is not None:
            self.epoch = epoch
        started = asyncio.get_running_loop().time()
        deadline = started + seconds
        try:
            async with asyncio.timeout_at(deadline):
                await self._read(until_seq)
        except TimeoutError:
            pass
        except (aiohttp.ClientError, OSError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.elapsed_s = asyncio.get_running_loop().time() - started
            self.done = True
        return self

    def run(self, seconds: float, since: int | None = None, until_seq: int | None = None,
            epoch: str | None = None):
        """Sync version of `arun`, usable from any cell (a progress bar for runs over 2 s;
        interrupting the kernel stops the client)."""
        future = asyncio.run_coroutine_threadsafe(self.arun(seconds, since, until_seq, epoch),
                                                  _loop.client_loop())
        return wait_for(future, seconds, f"{self.label} reading", progress=seconds > 2)

    def _reached(self, until_seq: int | None) -> bool:
        return until_seq is not None and self.last_seq is not None and self.last_seq >= until_seq

    async def _read(self, until_seq: int | None) -> None:
        raise NotImplementedError

    # -- results -----------------------------------------------------------------------------
    def rows(self) -> list[dict]:
        return [{"transport": self.label, "seq": e.seq, "published_ts": e.published_ts,
                 "received_ts": e.received_ts, "staleness_ms": e.staleness_ms, "price": e.price}
                for e in self.events]

    def summary(self) -> dict:
        """Counts and staleness percentiles (labkit.measure's definition, as everywhere in the
        kit). staleness_p99_ms is NaN below MIN_N_FOR_P99 events: read p90 and the max then."""
        stale = [e.staleness_ms for e in self.events]
        n = len(self.events)

        def pct(q):
            return percentile(stale, 100 * q) if n else float("nan")

        return {
            "transport": self.label, "events": n, "requests": self.requests,
            "empty_responses": self.empty_responses, "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "requests_per_event": self.requests / n if n else float("nan"),
            "bytes_per_event": (self.bytes_up + self.bytes_down) / n if n else float("nan"),
            "staleness_p50_ms": pct(0.5), "staleness_p90_ms": pct(0.9),
            "staleness_p99_ms": pct(0.99) if n >= MIN_N_FOR_P99 else float("nan"),
            "staleness_max_ms": max(stale) if n else float("nan"),
            "gaps": len(self.gaps), "errors": len(self.errors),
        }


class _HttpMixin(FeedClient):
    """Count request and response heads the way the REST client does (for the HTTP clients)."""

    def _session(self) -> aiohttp.ClientSession:
        trace = aiohttp.TraceConfig()

        async def on_sent(session, ctx, params):
            self.bytes_up += request_head_bytes(params.method, params.url.raw_path_qs,
                                                params.headers)

        trace.on_request_headers_sent.append(on_sent)
        return http_session(self.base, trace_configs=[trace],
                            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))

    async def _get_events(self, session, params: dict) -> list[dict]:
        """One GET of the poll route; a 410 is recorded as a gap and the client goes on."""
        self.requests += 1
        if self.epoch is not None and "since" in params:
            params = {**params, "epoch": self.epoch}
        async with session.get(self.base + self.path, params=params) as resp:
            body = await resp.read()
            now = time.time()
            self.bytes_down += response_head_bytes(resp) + len(body)
            if resp.status in (409, 428):  # another history, or a resume that must name it
                self._reset(json.loads(body))
                return []
            if resp.status == 410:
                gap = json.loads(body)
                self.gaps.append(gap)
                self.last_seq = gap["oldest_seq"] - 1
                return []
            if resp.status != 200:
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status,
                                                  message=body.decode(errors="replace")[:200])
            if self.last_seq is None:  # first contact: start from now on
                self.last_seq = int(resp.headers.get("Feed-Last-Seq", "0"))
                self.epoch = resp.headers.get("Feed-Epoch", self.epoch)
                return []
        events = json.loads(body)
        if not events:
            self.empty_responses += 1
        for event in events:
            self._record(event, now)
        return events


@dataclass
class ShortPollClient(_HttpMixin, FeedClient):
    """GET ?since=SEQ every `interval_s` seconds (on a fixed schedule)."""

    interval_s: float = 0.5
    transport: str = field(default="short_poll", init=False)

    async def _read(self, until_seq):
        loop = asyncio.get_running_loop()
        async with self._session() as session:
            next_at = loop.time()
            while not self._reached(until_seq):
                params = {} if self.last_seq is None else {"since": self.last_seq}
                await self._get_events(session, params)
                next_at += self.interval_s
                await asyncio.sleep(max(0.0, next_at - loop.time()))


@dataclass
class LongPollClient(_HttpMixin, FeedClient):
    """GET ?since=SEQ&wait=S again as soon as each answer arrives."""

    wait_s: float = 10.0
    transport: str = field(default="long_poll", init=False)

    async def _read(self, until_seq):
        async with self._session() as session:
            while not self._reached(until_seq):
                if self.last_seq is None:
                    await self._get_events(session, {})
                else:
                    await self._get_events(session, {"since": self.last_seq, "wait": self.wait_s})


async def sse_blocks(content, count_bytes: Callable[[int], None] | None = None):
    """Read a text/event-stream body (`resp.content`) block by block, as the WHATWG rules say: a
    blank line ends a block, `event:` names it (default "message"), `data:` lines are joined with
    newlines, comment lines (`: ping`) and `id:`/`retry:` fields carry no data. Yields
    (event type, data parsed as JSON) per block, or (type, None) for a block without data, so a
    reader can check its own state at every block. `count_bytes(n)` sees every raw line."""
    kind, data = "message", []
    async for raw in content:
        if count_bytes is not None:
            count_bytes(len(raw))
        line = raw.decode().rstrip("\r\n")
        if line:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "event":
                kind = value
            continue
        yield kind, (json.loads("\n".join(data)) if data else None)
        kind, data = "message", []


@dataclass
class SseClient(_HttpMixin, FeedClient):
    """One Server-Sent Events stream; reconnects with Last-Event-ID if the server ends it."""

    path: str = "/sse/feed"
    transport: str = field(default="sse", init=False)

    async def _read(self, until_seq):
        async with self._session() as session:
            while not self._reached(until_seq):
                headers = {"Accept": "text/event-stream"}
                if self.last_seq is not None:  # "<epoch>:<seq>" once the epoch is known
                    headers["Last-Event-ID"] = (str(self.last_seq) if self.epoch is None
                                                else f"{self.epoch}:{self.last_seq}")
                self.requests += 1
                async with session.get(self.base + self.path, headers=headers) as resp:
                    self.bytes_down += response_head_bytes(resp)
                    if resp.status != 200:
                        body = await resp.read()
                        raise aiohttp.ClientResponseError(
                            resp.request_info, (), status=resp.status,
                            message=body.decode(errors="replace")[:200])
                    await self._stream(resp, until_seq)

    async def _stream(self, resp, until_seq) -> None:
        def count(n: int) -> None:
            self.bytes_down += n

        async for kind, payload in sse_blocks(resp.content, count):
            if payload is not None:
                if kind == "message":
                    self._record(payload, time.time())
                elif kind == "gap":
                    self.gaps.append(payload)
                elif kind == "reset":
                    self._on_reset_message(payload)
                elif kind == "overflow":
                    self.errors.append("overflow: " + payload.get("detail", ""))
            if self._reached(until_seq):
                return


@dataclass
class WsFeedClient(FeedClient):
    """One WebSocket; every event is pushed as it is published."""

    path: str = "/ws/feed"
    transport: str = field(default="ws", init=False)

    async def _read(self, until_seq):
        url = target_url(self.target, "ws") + self.path
        if self.last_seq is not None:
            url += f"?since={self.last_seq}"
            if self.epoch is not None:
                url += f"&epoch={self.epoch}"
        self.requests += 1
        async with connect(url, compression=None, max_size=2**20,
                           ssl=lab_ssl_context(url)) as conn:
            req, resp = conn.request, conn.response
            self.bytes_up += request_head_bytes("GET", req.path, req.headers)
            self.bytes_down += len(f"HTTP/1.1 {resp.status_code} {resp.reason_phrase}\r\n") + sum(
                len(k) + len(v) + 4 for k, v in resp.headers.raw_items()) + 2
            async for message in conn:
                now = time.time()
                size = len(message.encode() if isinstance(message, str) else message)
                self.bytes_down += size + frame_header_bytes(size, masked=False)
                payload = json.loads(message)
                if "seq" in payload:
                    self._record(payload, now)
                elif payload.get("type") == "gap":
                    self.gaps.append(payload)
                elif payload.get("type") == "reset":
                    self._on_reset_message(payload)
                if self._reached(until_seq):
                    break
            self.bytes_up += 2 + 4 + 2  # our Close frame: header, mask, close code
        if conn.close_code not in (None, 1000, 1001):
            self.errors.append(f"closed {conn.close_code}: {conn.close_reason}")


def frame_header_bytes(payload: int, masked: bool) -> int:
    """Bytes of a WebSocket frame header (RFC 6455 5.2) for a payload of `payload` bytes."""
    size = 2 if payload < 126 else 4 if payload < 65536 else 10
    return size + (4 if masked else 0)


CLIENTS = {"short_poll": ShortPollClient, "long_poll": LongPollClient, "sse": SseClient,
           "ws": WsFeedClient}


def make_client(transport: str, target, **options) -> FeedClient:
    """A client for `transport` ("short_poll", "long_poll", "sse" or "ws")."""
    try:
        cls = CLIENTS[transport]
    except KeyError:
        raise ValueError(f"transport must be one of {', '.join(CLIENTS)}, not {transport!r}") \
            from None
    return cls(target, **options)


# -- the feed source and whole runs -----------------------------------------------------------
async def _http_json(target, method: str, path: str, body=None) -> dict:
    """One JSON control request to the lab (at most CONTROL_TIMEOUT_S); ValueError on 4xx/5xx."""
    base = target_url(target)
    timeout = aiohttp.ClientTimeout(total=CONTROL_TIMEOUT_S)
    async with http_session(base, timeout=timeout) as session, session.request(
            method, base + path, json=body) as resp:
        data = await resp.json(content_type=None)
        if resp.status >= 400:
            raise ValueError(data.get("detail", f"HTTP {resp.status}"))
        return data


def set_source(target, rate_hz: float, *, seed: int | None = None, ticks: int | None = None,
               start_price: float | None = None, kind: str = "walk", start_row: int = 0) -> dict:
    """Set the lab's feed ticker over HTTP (rate 0 stops it); returns its state.

    kind="walk": a seeded random walk from `start_price`; kind="replay": the sample series shipped
    with labkit, row after row from `start_row` (see data/README.md)."""
    body = {"rate_hz": rate_hz, "kind": kind, "seed": seed, "ticks": ticks}
    body.update({"start_row": start_row} if kind == "replay" else {"start_price": start_price})
    return _loop.run(_http_json(target, "POST", "/api/feed/source", body))


def hub_stats(target) -> dict:
    """GET /api/hub: per-topic counters and the server thread's CPU time."""
    return _loop.run(_http_json(target, "GET", "/api/hub"))


@dataclass
class FeedRun:
    """Clients that read the same events; `events` and `summary` are tidy frames."""

    clients: list[FeedClient]
    first_seq: int
    last_seq: int

    @property
    def done(self) -> bool:
        return all(c.done for c in self.clients)

    @property
    def events(self):
        import pandas as pd

        return pd.DataFrame([row for c in self.clients for row in c.rows()],
                            columns=["transport", "seq", "published_ts", "received_ts",
                                     "staleness_ms", "price"])

    @property
    def summary(self):
        import pandas as pd

        return pd.DataFrame([c.summary() for c in self.clients])


def _grace(clients, seconds: float) -> float:
    """Extra reading time: Poisson arrivals make the ticker's run last longer than `seconds` now
    and then (and a busy machine slows it); clients stop as soon as they have the last SEQ."""
    return 3.0 + 0.25 * seconds + max([getattr(c, "interval_s", 0.0) for c in clients] + [0.0])


async def arun_clients(target, clients: list[FeedClient], *, seconds: float, rate_hz: float,
                       seed: int | None = 1, kind: str = "walk") -> FeedRun:
    """Start the ticker for `seconds` at `rate_hz`, read with every client at once, return the run.

    The ticker publishes exactly round(seconds * rate_hz) events of `kind` ("walk" or "replay");
    every client starts after the same SEQ and stops once it has the last one (or `seconds` plus a
    grace period has passed).
    """
    ticks = max(1, round(seconds * rate_hz))
    state = await _http_json(target, "GET", "/api/feed/source")
    since = state["last_seq"]
    limit = seconds + _grace(clients, seconds)
    readers = [asyncio.ensure_future(c.arun(limit, since, since + ticks, state.get("epoch")))
               for c in clients]
    try:
        await asyncio.sleep(0.3)  # let every client connect before the first event
        await _http_json(target, "POST", "/api/feed/source",
                         {"rate_hz": rate_hz, "seed": seed, "ticks": ticks, "kind": kind})
        await asyncio.gather(*readers)
    finally:  # cancelled (a kernel interrupt, dash.stop()): stop and close every client too
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    if not clients:  # nobody reads: wait for the ticker to finish by itself (bounded)
        await asyncio.sleep(seconds)
        for _ in range(round(10 * (seconds + 5))):
            if not (await _http_json(target, "GET", "/api/feed/source"))["running"]:
                break
            await asyncio.sleep(0.1)
    return FeedRun(clients, since + 1, since + ticks)


def start_run(target, *, seconds: float = 5.0, rate_hz: float = 10.0,
              transports=TRANSPORTS, poll_interval_s: float = 0.5, wait_s: float = 10.0,
              seed: int | None = 1, kind: str = "walk"):
    """Start a run of every transport in the background, on labkit's client loop.

    Returns (the clients, a concurrent future of the FeedRun): the clients fill in as events
    arrive (a live view reads them), the future is done when every client has stopped."""
    clients = []
    for transport in transports:
        options = {"short_poll": {"interval_s": poll_interval_s},
                   "long_poll": {"wait_s": wait_s}}.get(transport, {})
        clients.append(make_client(transport, target, **options))
    future = asyncio.run_coroutine_threadsafe(
        arun_clients(target, clients, seconds=seconds, rate_hz=rate_hz, seed=seed, kind=kind),
        _loop.client_loop())
    return clients, future


def wait_for(future, seconds: float, desc: str, *, progress: bool = True, on_stop=None):
    """The result of a background run's `future`, expected to take about `seconds`, with a
    progress bar meanwhile (seconds elapsed). Interrupting the kernel (KeyboardInterrupt) cancels
    the run, which stops and closes every client in it, calls `on_stop` and re-raises."""
    bar = _time_bar(seconds, desc) if progress else None
    started = time.monotonic()
    try:
        while True:
            try:
                return future.result(0.2)
            except concurrent.futures.TimeoutError:
                if time.monotonic() - started > 1.5 * seconds + 30:
                    future.cancel()
                    raise TimeoutError(f"{desc}: no result within {1.5 * seconds + 30:.0f} s") \
                        from None
                if bar is not None:
                    bar.n = min(round(time.monotonic() - started, 1), bar.total)
                    bar.refresh()
    except KeyboardInterrupt:
        future.cancel()
        if on_stop is not None:
            on_stop()
        raise
    finally:
        if bar is not None:
            bar.close()


def _time_bar(seconds: float, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=round(seconds, 1), desc=desc, unit="s", leave=False,
                bar_format="{desc}: {bar} {n:.0f}/{total:.0f} s")


def feed_run(target, *, seconds: float = 5.0, rate_hz: float = 10.0, transports=TRANSPORTS,
             poll_interval_s: float = 0.5, wait_s: float = 10.0, seed: int | None = 1,
             kind: str = "walk") -> FeedRun:
    """Every transport in `transports` reads the same `seconds` of the feed at once.

    `target`: a lab or a URL (e.g. a NetemProxy's `net.url()`); `kind`: "walk" or "replay"."""
    _, future = start_run(target, seconds=seconds, rate_hz=rate_hz, transports=transports,
                          poll_interval_s=poll_interval_s, wait_s=wait_s, seed=seed, kind=kind)
    return wait_for(future, seconds + 0.5, f"{len(transports)} clients reading the feed")


def poll_tradeoff(target, intervals_s=(0.1, 0.25, 0.5, 1.0), *, seconds: float = 5.0,
                  rate_hz: float = 10.0, seed: int | None = 1):
    """Short pollers at each interval (plus a WebSocket for reference) on the same events.

    Returns one row per client: interval_s (0 for the WebSocket), requests_per_s (over the time
    the client really read), staleness percentiles, empty share.
    """
    import pandas as pd

    clients: list[FeedClient] = [ShortPollClient(target, interval_s=i, label=f"poll {i:g} s")
                                 for i in intervals_s]
    clients.append(WsFeedClient(target))
    future = asyncio.run_coroutine_threadsafe(
        arun_clients(target, clients, seconds=seconds, rate_hz=rate_hz, seed=seed),
        _loop.client_loop())
    wait_for(future, seconds + max(intervals_s) + 0.5, f"{len(clients)} pollers side by side")
    rows = []
    for client in clients:
        row = client.summary()
        row["interval_s"] = getattr(client, "interval_s", 0.0)
        row["requests_per_s"] = client.requests / client.elapsed_s if client.elapsed_s else 0.0
        row["empty_share"] = client.empty_responses / client.requests if client.requests else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


def server_cost(target, transport: str, *, clients: int = 20, seconds: float = 3.0,
                rate_hz: float = 20.0, poll_interval_s: float = 0.5, seed: int | None = 1,
                progress: bool = True) -> dict:
    """Run `clients` readers of one transport and report what the server spent on them.

    server_cpu_ms is the CPU time of the server's thread (time.thread_time, read through
    GET /api/hub before and after), so it excludes the clients, which run on another thread of
    this process. Requests and bytes come from the hub's counters for the feed topic.
    With clients=0 it measures the idle cost: the ticker and this function's own control requests.
    """
    before = hub_stats(target)
    options = {"short_poll": {"interval_s": poll_interval_s}}.get(transport, {})
    readers = [make_client(transport, target, **options) for _ in range(clients)]
    future = asyncio.run_coroutine_threadsafe(
        arun_clients(target, readers, seconds=seconds, rate_hz=rate_hz, seed=seed),
        _loop.client_loop())
    label = LABELS[transport] if clients else "no clients"
    run = wait_for(future, seconds + 0.5, f"server CPU: {clients} × {label}", progress=progress)
    # One more event wakes what the clients left behind on the server (a held long poll, an SSE
    # stream whose client has gone, both noticed at their next write), so that this run, not the
    # next one, pays for it. The run with no clients does the same and is subtracted.
    set_source(target, MAX_SETTLE_RATE_HZ, ticks=1)
    time.sleep(SETTLE_S)
    after = hub_stats(target)

    def counter(stats, key):
        return stats["topics"].get("feed", {}).get("counters", {}).get(transport, {}).get(key, 0)

    events = sum(len(c.events) for c in readers)
    cpu_ms = (after["server_thread_cpu_s"] - before["server_thread_cpu_s"]) * 1000.0
    return {
        "transport": label, "clients": clients, "seconds": seconds, "rate_hz": rate_hz,
        "published": run.last_seq - run.first_seq + 1, "events_received": events,
        "server_requests": counter(after, "requests") - counter(before, "requests"),
        "server_bytes_sent": counter(after, "bytes_sent") - counter(before, "bytes_sent"),
        "server_cpu_ms": cpu_ms,
        "cpu_us_per_event": cpu_ms * 1000.0 / events if events else float("nan"),
    }


def server_costs(target, transports=TRANSPORTS, *, clients: int = 20, seconds: float = 3.0,
                 rate_hz: float = 20.0, poll_interval_s: float = 0.5, seed: int | None = 1):
    """`server_cost` for each transport plus one run with no clients, as a frame.

    The run with no clients costs the ticker, the hub's publishing and the control requests that
    every run makes; `cpu_ms_above_idle` and `cpu_us_per_event` subtract it, so what is left is
    what serving the clients cost. The run with no clients is made twice (first and last): their
    mean is subtracted, and their difference is `noise_ms`, what two equal runs differ by on this
    machine now. A row whose cost above idle is no larger than that is `within_noise`: its sign
    and size mean nothing (see `cpu_text`).
    """
    import pandas as pd

    def cost(transport: str, clients: int) -> dict:
        return server_cost(target, transport, clients=clients, seconds=seconds, rate_hz=rate_hz,
                           poll_interval_s=poll_interval_s, seed=seed)

    idle = cost(transports[0], 0)
    rows = [idle] + [cost(t, clients) for t in transports]
    again = cost(transports[0], 0)  # the idle run once more: how much two equal runs differ
    frame = pd.DataFrame(rows)
    baseline = (idle["server_cpu_ms"] + again["server_cpu_ms"]) / 2
    frame["cpu_ms_above_idle"] = frame["server_cpu_ms"] - baseline
    frame["noise_ms"] = abs(idle["server_cpu_ms"] - again["server_cpu_ms"])
    frame["within_noise"] = frame["cpu_ms_above_idle"].abs() <= frame["noise_ms"]
    frame["cpu_us_per_event"] = (frame["cpu_ms_above_idle"] * 1000.0
                                 / frame["events_received"].where(frame["events_received"] > 0))
    frame["cpu_us_per_request"] = (frame["cpu_ms_above_idle"] * 1000.0
                                   / frame["server_requests"].where(frame["server_requests"] > 0))
    return frame


def idle_costs(target, transports=TRANSPORTS, *, clients: int = 20, seconds: float = 2.0,
               poll_interval_s: float = 0.5, wait_s: float = 10.0, progress: bool = True):
    """What `clients` readers of each transport cost the server while the feed is silent.

    Each transport's clients connect with the ticker off; once they are connected (CONNECT_S
    later, so opening the connections is not counted) the server thread's CPU (as in
    `server_cost`) is read, again `seconds` later, and a run with no clients is subtracted.
    Short pollers keep asking; long pollers hold their request (and ask again every `wait_s`); SSE
    and WebSocket keep a connection open. One row per transport: server_requests,
    cpu_ms_above_idle, cpu_us_per_client_s (CPU per connected client per second of silence), and,
    as in `server_costs`, noise_ms / noise_us_per_client_s / within_noise from a second run with
    no clients.
    """
    import pandas as pd

    def silent(transport: str | None) -> dict:
        options = {"short_poll": {"interval_s": poll_interval_s},
                   "long_poll": {"wait_s": wait_s}}.get(transport, {}) if transport else {}
        readers = [make_client(transport, target, **options) for _ in range(clients)] \
            if transport else []
        async def read() -> None:
            await asyncio.gather(*(c.arun(seconds + 2 * CONNECT_S) for c in readers))

        reading = asyncio.run_coroutine_threadsafe(read(), _loop.client_loop())
        time.sleep(CONNECT_S)  # connected (and the first requests answered) before measuring
        before = hub_stats(target)
        label = LABELS[transport] if transport else "no clients"
        wait_for(asyncio.run_coroutine_threadsafe(asyncio.sleep(seconds), _loop.client_loop()),
                 seconds, f"silent feed: {len(readers)} × {label}", progress=progress)
        after = hub_stats(target)
        reading.cancel()  # stop and close every client now
        concurrent.futures.wait([reading], timeout=CONTROL_TIMEOUT_S)

        def requests(stats) -> int:
            return (stats["topics"].get("feed", {}).get("counters", {}).get(transport or "", {})
                    .get("requests", 0))

        return {"transport": label, "clients": len(readers), "seconds": seconds,
                "server_requests": requests(after) - requests(before),
                "server_cpu_ms": (after["server_thread_cpu_s"] - before["server_thread_cpu_s"])
                * 1000.0}

    rows = [silent(None)] + [silent(t) for t in transports]
    again = silent(None)  # as in server_costs: the difference of two equal runs is the noise
    frame = pd.DataFrame(rows)
    frame["cpu_ms_above_idle"] = (frame["server_cpu_ms"]
                                  - (rows[0]["server_cpu_ms"] + again["server_cpu_ms"]) / 2)
    frame["noise_ms"] = abs(rows[0]["server_cpu_ms"] - again["server_cpu_ms"])
    frame["within_noise"] = frame["cpu_ms_above_idle"].abs() <= frame["noise_ms"]
    per = (frame["clients"] * seconds).where(frame["clients"] > 0)
    frame["cpu_us_per_client_s"] = frame["cpu_ms_above_idle"] * 1000.0 / per
    frame["noise_us_per_client_s"] = frame["noise_ms"] * 1000.0 / per
    return frame


def cpu_text(value: float, noise: float, unit: str = "µs") -> str:
    """A measured CPU cost as words: "120 µs", or, when it is no larger than the noise two equal
    runs showed (`noise`, same unit), "within noise (under 40 µs)": never a negative cost."""
    if value != value or value <= noise:  # NaN, lost in the noise, or below 0: noise at least
        return f"within noise (under {max(noise, -value if value == value else 0):,.0f} {unit})"
    return f"{value:,.0f} {unit}"


def describe_costs(costs) -> tuple[str, str]:
    """What `server_costs` measured, in words computed from it: (a paragraph, the transports
    ranked by CPU per delivered event). Costs within the noise are said so (`cpu_text`)."""
    per = costs[costs.clients > 0].set_index("transport")
    noise_ms = float(per.noise_ms.iloc[0])
    per_event = per.noise_ms * 1000 / per.events_received  # the noise, per delivered event (µs)
    ranked = ", ".join(f"{t} {cpu_text(v, per_event[t])}"
                       for t, v in per.cpu_us_per_event.sort_values().items())
    req = per.server_requests
    per_request = {t: cpu_text(per.cpu_us_per_request[t], noise_ms * 1000 / max(1, req[t]))
                   for t in ("short poll", "long poll")}
    text = (f"The two runs with no clients differed by {noise_ms:.1f} ms of server CPU: a cost "
            f"smaller than that is this run's noise, not a measurement. Per delivered event above "
            f"idle, cheapest first: {ranked}. To serve {per.clients.iloc[0]} clients the server "
            f"answered {req['short poll']} short polls, {req['long poll']} long polls and kept "
            f"{req['SSE']} SSE and {req['WebSocket']} WebSocket connections. An HTTP request cost "
            f"the server: short poll {per_request['short poll']}, long poll "
            f"{per_request['long poll']}. In this run a short poll found "
            f"{per.events_received['short poll'] / max(1, req['short poll']):.1f} events per "
            "request: that is why its cost per event depends on the event rate, and the next "
            "section shows it.")
    return text, ranked


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.2g} ms"


def describe_model(model, *, poll_interval_s: float) -> tuple[str, str]:
    """What `cost_model(..., upper=True)` says, in words computed from it: (a paragraph, a short
    phrase for a summary). A transport whose unit cost was within the run's noise is priced "at
    most" (its bound), and no ratio is claimed that the bounds do not support."""
    cpu = model.pivot(index="event_rate_hz", columns="transport", values="cpu_ms_per_s")
    sure = model.groupby("transport")["measured"].all()
    clients = int(model["clients"].iloc[0])
    calm, busy = cpu.index.min(), cpu.index.max()
    push = cpu[["SSE", "WebSocket"]].idxmin(axis=1)  # the cheaper push at each rate

    def cost(rate, t) -> str:
        return _ms(cpu.loc[rate, t]) if sure[t] else f"at most {_ms(cpu.loc[rate, t])}"

    if not sure["short poll"]:
        text = (f"Short polling's cost per request was within this run's noise, so the model cannot "
                f"price it: with {clients:,} clients it could be anything up to "
                f"{_ms(cpu.loc[calm, 'short poll'])} per second. Run the lesson in normal mode "
                "(more clients, longer runs) for a measurement.")
        return text, "this run's noise allowed no comparison of short polling and push"
    poll, first = cpu.loc[calm, "short poll"], push[calm]
    ratio = poll / cpu.loc[calm, first]
    if sure[first]:
        verdict = f"{ratio:,.0f}×"
    elif ratio > 1:
        verdict = f"at least {ratio:,.0f}×"
    else:
        verdict = "an amount this run's noise hides"
    text = (f"With {clients:,} clients and a feed of {calm:g} events/s, short polling every "
            f"{poll_interval_s:g} s would keep the server busy {_ms(poll)} per second against "
            f"{cost(calm, first)} for the cheaper push, {first} ({verdict}). At {busy:g} events/s "
            f"push costs {cost(busy, push[busy])} per second and short polling "
            f"{_ms(cpu.loc[busy, 'short poll'])}: ")
    cross = [r for r in cpu.index if sure[push[r]] and cpu.loc[r, "short poll"] <= cpu.loc[r, push[r]]]
    unsure = [r for r in cpu.index if not sure[push[r]]
              and cpu.loc[r, "short poll"] <= cpu.loc[r, push[r]]]
    if cross:
        text += (f"from {cross[0]:g} events/s on, polling is no dearer, because each poll then "
                 "carries several events (at the price of their staleness).")
    elif unsure:
        text += (f"from {unsure[0]:g} events/s on, this run cannot tell which is cheaper (push's "
                 "cost was within the noise).")
    else:
        text += "push stays cheaper at every rate here."
    if not sure[["SSE", "WebSocket"]].all():
        text += (" (\"At most\": that transport's cost was within this run's noise, so the model "
                 "uses the noise itself, the most it can be.)")
    return text, f"short polling cost {verdict} the cheaper push"


def cost_model(costs, *, clients: int = 1000, event_rates_hz=(0.01, 0.1, 1.0, 10.0),
               poll_interval_s: float = 0.5, wait_s: float = 10.0, idle=None,
               upper: bool = False):
    """Server CPU (ms per second of wall time) that `clients` readers would cost, per transport
    and event rate, from the unit costs `server_costs` measured. A model of what scales with what:

    - short poll: every client asks every poll_interval_s, news or not:
      clients / poll_interval_s requests per second x CPU per request;
    - long poll: one request per answer: an answer per event, or an empty one every wait_s when
      the feed is quiet: clients x (event rate + 1 / wait_s) x CPU per request (events that
      land in the same round trip share an answer, so this is an upper bound);
    - SSE, WebSocket: CPU per delivered event x event rate x clients, plus, when `idle` (the
      frame of `idle_costs`) is given, each connected client's CPU per second of silence
      (negative noise counts as 0; memory per connection is not modelled).
    A unit cost below 0 (noise: `server_costs`' within_noise) counts as 0, so the model never
    shows a negative cost; `measured` is False on the rows built from such a unit cost. With
    `upper=True` such a unit cost becomes the noise per event or request instead (`noise_ms`
    over the run's count): the most a cost lost in the noise can be, so those rows are upper
    bounds.
    Returns a tidy frame: transport, event_rate_hz, clients, cpu_ms_per_s, cpu_share (of one core),
    measured.
    """
    import pandas as pd

    unit = costs[costs["clients"] > 0].set_index("transport")
    silent = {} if idle is None else idle.set_index("transport")["cpu_us_per_client_s"].to_dict()
    rows = []
    for transport, row in unit.iterrows():
        measured = not bool(row.get("within_noise", False))
        per_request = max(0.0, float(row["cpu_us_per_request"])) \
            if row["cpu_us_per_request"] == row["cpu_us_per_request"] else float("nan")
        per_event = max(0.0, float(row["cpu_us_per_event"]))
        if upper and not measured:
            noise_us = float(row["noise_ms"]) * 1000.0
            per_event = max(per_event, noise_us / max(1, int(row["events_received"])))
            if per_request == per_request:
                per_request = max(per_request, noise_us / max(1, int(row["server_requests"])))
        for rate in event_rates_hz:
            if transport == "short poll":
                cpu_us = clients / poll_interval_s * per_request
            elif transport == "long poll":
                cpu_us = clients * (rate + 1 / wait_s) * per_request
            else:
                held = max(0.0, float(silent.get(transport, 0.0)))
                cpu_us = clients * (rate * per_event + held)
            rows.append({"transport": transport, "event_rate_hz": rate, "clients": clients,
                         "cpu_ms_per_s": cpu_us / 1000.0, "cpu_share": cpu_us / 1e6,
                         "measured": measured})
    return pd.DataFrame(rows)


def staleness_vs_link(run: FeedRun, link, reference: FeedRun | None = None,
                      tolerance_ms: float | None = None):
    """Per transport, how stale the events of `run` were next to what the link alone explains.

    `link` is one direction of a network profile (e.g. `net.profile.downstream`, with `latency`
    and `jitter` in ms). A pushed event crosses the link once, so it needs at most
    latency + jitter, plus what the measuring harness itself adds on this machine (the proxy's
    loop, scheduling, parsing): `tolerance_ms`, by default estimated as the WebSocket's median
    staleness in `run` minus the link's latency (its jitter averages out; what is left is the
    harness), else the p90 staleness of the reference run's WebSocket, else 5 ms. `above_link` is
    the share of
    events that took longer than link_max_ms = latency + jitter + tolerance, i.e. that also waited
    for the transport. `reference` (e.g. the same run on loopback) adds its median as
    `p50_reference_ms`. One row per transport, indexed by transport name; the tolerance used is in
    `frame.attrs["tolerance_ms"]`.
    """
    import pandas as pd

    events = run.events
    by = events.groupby("transport", sort=False)["staleness_ms"]
    if tolerance_ms is None:
        ws = events.loc[events["transport"] == LABELS["ws"], "staleness_ms"]
        ref = reference.events if reference is not None else events.iloc[:0]
        ref = ref.loc[ref["transport"] == LABELS["ws"], "staleness_ms"]
        tolerance_ms = (max(0.0, percentile(ws, 50) - link.latency) if len(ws)
                        else percentile(ref, 90) if len(ref) else 5.0)
    link_max = link.latency + link.jitter + tolerance_ms
    frame = pd.DataFrame({
        "events": by.size(), "min_ms": by.min(), "p50_ms": by.median(),
        "p90_ms": by.quantile(0.9), "max_ms": by.max(),
        "above_link": by.apply(lambda s: float((s > link_max).mean())),
    })
    frame["link_max_ms"] = link_max
    if reference is not None:
        frame.insert(0, "p50_reference_ms",
                     reference.events.groupby("transport")["staleness_ms"].median())
    frame.index.name = "transport"
    frame.attrs["tolerance_ms"] = tolerance_ms
    return frame
