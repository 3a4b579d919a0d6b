"""The latency harness: time REST (new connection, keep-alive) and WebSocket round trips, one call.

    df = lk.compare_transports(lab, profile="4g", payloads=[16, 1024], count=30)

Each round trip sends `payload_bytes` and gets the same number back (POST /api/echo for REST, a
binary message on /ws/echo for WebSocket), timed with perf_counter_ns around the real client call.
The traffic goes through a NetemProxy with the chosen network profile ("loopback" adds no delay,
the proxy only counts bytes; profile=None talks to the lab directly and counts nothing).

The result is a tidy DataFrame, one row per round trip:

- transport ("rest-new", "rest-keepalive", "websocket"), profile, payload_bytes, trial, rtt_ms;
- bytes_up / bytes_down: bytes that crossed the proxy for this round trip (headers, frames, TLS
  records: everything on the wire above TCP);
- new_connection: whether this round trip opened a TCP connection;
- HTTP phases (NaN for WebSocket), from aiohttp's tracing hooks, for a waterfall: tcp_ms (TCP
  handshake; through the emulator this is the modelled wait, which a real network spends inside
  connect()), tls_ms, send_ms (request written), wait_ms (until the response headers: the server
  and one network round trip), receive_ms (reading the body).

The first `warmup` round trips of each transport and payload are dropped (first-use costs: imports,
caches, the keep-alive connection's opening) and reported in `df.attrs["warmup_dropped"]`.
`df.attrs["setup_ms"]` keeps the set-up costs the N-messages model needs, as
{transport: {payload_bytes: [ms, ...]}}: the WebSocket opening handshakes and the keep-alive
client's first request (which opens its connection).

Size: longer than 500 lines because lesson 03's harness: each measured pattern (new connection,
keep-alive, lock-step, streamed, parallel, TLS) sits beside the TCP/IP byte model it is compared
with, so a model and its measurement change together.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import ssl
import time
from typing import TYPE_CHECKING

import aiohttp

from labkit import _loop
from labkit.clients._target import through
from labkit.net import wire
from labkit.net.netem import NetemProxy, Profile
from labkit.net.netem import profile as resolve_profile

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

TRANSPORTS = ("rest-new", "rest-keepalive", "websocket")
"""REST with a new TCP connection per request, REST reusing one connection, one WebSocket."""

COLUMNS = ("transport", "profile", "payload_bytes", "trial", "rtt_ms", "bytes_up", "bytes_down",
           "new_connection", "tcp_ms", "tls_ms", "send_ms", "wait_ms", "receive_ms", "tls")

PHASES = ("tcp_ms", "tls_ms", "send_ms", "wait_ms", "receive_ms")
"""HTTP phases, in the order they happen (a browser's network panel shows the same)."""

PROGRESS_MIN_ROUNDS = 100
"""progress=None shows a bar only for runs of at least this many round trips."""


def _ms(start_ns: int, end_ns: int) -> float:
    return (end_ns - start_ns) / 1e6


class _Traced:
    """aiohttp tracing hooks that stamp perf_counter_ns at every stage of a request."""

    def __init__(self):
        self.config = aiohttp.TraceConfig()
        for signal in ("on_request_start", "on_connection_create_start",
                       "on_connection_create_end", "on_connection_reuseconn",
                       "on_request_headers_sent", "on_request_chunk_sent", "on_request_end"):
            getattr(self.config, signal).append(self._stamp(signal.removeprefix("on_")))

    @staticmethod
    def _stamp(name):
        async def hook(session, ctx, params) -> None:
            ctx.trace_request_ctx[name] = time.perf_counter_ns()
        return hook


class _Endpoint:
    """Where the clients connect (the proxy or the lab), with TLS when the lab serves it, and, in
    front of a class server joined with `lk.join` (`lab`), the lab's path prefix and its token:
    `headers` holds `Authorization: Bearer <token>` for every request and opening handshake."""

    def __init__(self, host: str, port: int, tls: bool, lab=None):
        self.host, self.port, self.tls = host, port, tls
        self.ssl: ssl.SSLContext | None = None
        if tls:
            from labkit.net.tls import client_ssl_context

            self.ssl = client_ssl_context()
        userinfo, self.prefix = through(lab) if lab is not None else ("", "")
        self.headers = wire.credentials(userinfo)

    def url(self, scheme: str, path: str) -> str:
        return f"{scheme}{'s' if self.tls else ''}://{self.host}:{self.port}{self.prefix}{path}"



class _Rest:
    def __init__(self, endpoint: _Endpoint, keep_alive: bool, limit: int = 1):
        self.endpoint, self.keep_alive, self.limit = endpoint, keep_alive, limit
        self.url = endpoint.url("http", "/api/echo")
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> float | None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=not self.keep_alive, limit=self.limit,
                                           ssl=self.endpoint.ssl if self.endpoint.ssl is not None
                                           else True),
            trace_configs=[_Traced().config],
            timeout=aiohttp.ClientTimeout(total=60),
            headers=self.endpoint.headers,
        )
        return None

    async def round(self, body: bytes) -> dict:
        if self.session is None:
            raise RuntimeError("open() the client first")
        ctx: dict = {}
        started = time.perf_counter_ns()
        async with self.session.post(self.url, data=body, trace_request_ctx=ctx,
                                     headers={"Content-Type": "application/octet-stream"}) as resp:
            answer = await resp.read()
        done = time.perf_counter_ns()
        if resp.status != 200 or len(answer) != len(body):
            raise RuntimeError(f"echo failed: HTTP {resp.status}, {len(answer)} of {len(body)} bytes")
        new = "connection_create_end" in ctx
        ready = ctx.get("connection_create_end", ctx.get("request_start", started))
        sent = max(ctx.get("request_headers_sent", ready), ctx.get("request_chunk_sent", ready))
        headers = ctx.get("request_end", done)
        return {
            "rtt_ms": _ms(started, done),
            "new_connection": new,
            "connect_ms": _ms(ctx["connection_create_start"], ready) if new else 0.0,
            "send_ms": _ms(ready, sent),
            "wait_ms": _ms(sent, headers),
            "receive_ms": _ms(headers, done),
        }

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class _WebSocket:
    def __init__(self, endpoint: _Endpoint):
        self.endpoint = endpoint
        self.conn: ClientConnection | None = None

    async def open(self) -> float:
        from websockets.asyncio.client import connect

        started = time.perf_counter_ns()
        self.conn = await connect(self.endpoint.url("ws", "/ws/echo"), compression=None,
                                  ssl=self.endpoint.ssl, open_timeout=60, max_size=None,
                                  additional_headers=self.endpoint.headers)
        return _ms(started, time.perf_counter_ns())

    @property
    def connection(self) -> ClientConnection:
        if self.conn is None:
            raise RuntimeError("open() the WebSocket first")
        return self.conn

    async def round(self, body: bytes) -> dict:
        started = time.perf_counter_ns()
        await self.connection.send(body)
        answer = await self.connection.recv()
        done = time.perf_counter_ns()
        if len(answer) != len(body):
            raise RuntimeError(f"echo failed: {len(answer)} of {len(body)} bytes came back")
        return {"rtt_ms": _ms(started, done), "new_connection": False}

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


def _client(transport: str, endpoint: _Endpoint):
    if transport == "rest-new":
        return _Rest(endpoint, keep_alive=False)
    if transport == "rest-keepalive":
        return _Rest(endpoint, keep_alive=True)
    if transport == "websocket":
        return _WebSocket(endpoint)
    raise ValueError(f"unknown transport {transport!r}; choose from {', '.join(TRANSPORTS)}")


def _progress(total: int, show: bool | None, desc: str, unit: str = "rt"):
    """A tqdm bar (a widget in notebooks, text in a terminal) or a stand-in that does nothing."""
    if show is False or (show is None and total < PROGRESS_MIN_ROUNDS):
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency; keep working without it
        return _NoBar()
    return tqdm(total=total, desc=desc, unit=unit, leave=False)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _lab_address(lab) -> tuple[str, int, bool]:
    config = getattr(lab, "config", None)  # a LabServer; a class server's handle has .tls
    return lab.host, lab.port, bool(getattr(config, "tls", getattr(lab, "tls", False)))


def _phases(row: dict, handshake_ms: float, tls: bool) -> dict:
    """Split the connect and wait phases so the TCP handshake shows where a browser shows it.

    Through the emulator, connect() returns at once (the kernel answered) and the modelled
    handshake wait happens before the first request byte is forwarded: for plain HTTP it lands in
    the wait phase, for TLS inside connect (the ClientHello waits). Move it to tcp_ms either way.
    """
    if "connect_ms" not in row:
        return dict.fromkeys(PHASES, float("nan"))
    connect, wait = row.pop("connect_ms"), row["wait_ms"]
    if not row["new_connection"]:
        return {"tcp_ms": 0.0, "tls_ms": 0.0, "send_ms": row["send_ms"], "wait_ms": wait,
                "receive_ms": row["receive_ms"]}
    if tls:
        tcp, tls_ms = handshake_ms, max(0.0, connect - handshake_ms)
    else:
        tcp, tls_ms, wait = connect + handshake_ms, 0.0, max(0.0, wait - handshake_ms)
    return {"tcp_ms": tcp, "tls_ms": tls_ms, "send_ms": row["send_ms"], "wait_ms": wait,
            "receive_ms": row["receive_ms"]}


def compare_transports(lab, *, transports=TRANSPORTS, payloads=(64,), count: int = 20,
                       warmup: int = 3, profile: str | Profile | None = "loopback",
                       seed: int = 0, progress: bool | None = None, slow_start: bool = True):
    """Time `count` round trips per transport and payload size through `profile`; a tidy frame.

    lab: a running LabServer (https/wss when it was started with tls=True).
    transports: any of TRANSPORTS. payloads: sizes in bytes (each way).
    warmup: round trips done first and dropped, per transport and payload.
    profile: a netem profile name ("loopback", "lan", "wifi", "4g", "intercontinental"), a
    netem.Profile, or None to skip the proxy (then bytes_* are not counted).
    seed: seeds the emulator's jitter. progress: None shows a bar for long runs only.
    slow_start=False switches the emulator's slow-start model off (to see what it costs).
    attrs["slow_start_restarts"]: how often a kept connection restarted slow start after idle.
    """
    from labkit.measure import tidy

    if count < 1 or warmup < 0:
        raise ValueError("count must be >= 1 and warmup >= 0")
    transports, payloads = list(transports), [int(p) for p in payloads]
    for t in transports:
        _client(t, _Endpoint("127.0.0.1", 0, False))  # unknown names fail before anything runs
    host, port, tls = _lab_address(lab)
    net = None
    if profile is not None:
        net = NetemProxy(host, port, profile, seed=seed, slow_start=slow_start).start()
        endpoint, profile_name = _Endpoint(net.host, net.port, tls, lab), net.profile.name
    else:
        endpoint, profile_name = _Endpoint(host, port, tls, lab), "direct"
    rows: list[dict] = []
    setup_ms: dict[str, dict[int, list]] = {"rest-keepalive": {}, "websocket": {}}
    dropped: dict[str, int] = {}
    total = len(transports) * len(payloads) * (count + warmup)
    bar = _progress(total, progress, f"round trips ({profile_name})")
    per_round_limit = 30 + (2 * resolve_profile(profile).rtt_ms / 1000 if profile else 0)
    try:
        for transport in transports:
            for size in payloads:
                body = bytes(size)
                client = _client(transport, endpoint)
                handshake = _loop.run(client.open(), timeout=per_round_limit)
                if handshake is not None:
                    setup_ms[transport].setdefault(size, []).append(handshake)
                try:
                    for i in range(warmup + count):
                        seen = len(net.connections) if net else 0
                        up, down = (net.bytes_up, net.bytes_down) if net else (0, 0)
                        row = _loop.run(client.round(body), timeout=per_round_limit)
                        bar.update()
                        if transport == "rest-keepalive" and i == 0:
                            setup_ms[transport].setdefault(size, []).append(row["rtt_ms"])
                        if i < warmup:
                            continue
                        wait = 0.0
                        if net:
                            wait = sum(net.handshake_ms.get(c.id, 0.0)
                                       for c in net.connections[seen:])
                        phases = _phases(row, wait, tls)
                        rows.append({
                            "transport": transport, "profile": profile_name,
                            "payload_bytes": size, "trial": i - warmup,
                            "rtt_ms": row["rtt_ms"],
                            "bytes_up": net.bytes_up - up if net else None,
                            "bytes_down": net.bytes_down - down if net else None,
                            "new_connection": row["new_connection"],
                            **phases, "tls": tls,
                        })
                    dropped[f"{transport} {size} B"] = warmup
                finally:
                    _loop.run(client.close(), timeout=per_round_limit)
        restarts = net.slow_start_restarts if net is not None else 0
    finally:
        bar.close()
        if net is not None:
            net.stop()
    frame = tidy(rows, COLUMNS)
    frame.attrs.update({
        "slow_start": slow_start, "slow_start_restarts": restarts,
        "warmup_dropped": dropped,
        "setup_ms": setup_ms,
        "profile": net.profile.describe() if net else "direct (no proxy)",
        "rtt_configured_ms": net.profile.rtt_ms if net else 0.0,
    })
    return frame


def exchange_totals(frame, messages=(1, 10, 100, 1_000, 10_000)):
    """Model the time to exchange N messages one after another, per transport, from a run.

    total(N) = set-up + N x (median round trip), with set-up = 0 for rest-new (every request pays
    its own connection, which its round trip already contains), the first request for
    rest-keepalive (which opens the connection) minus one ordinary round trip, and the opening
    handshake for websocket. Uses the smallest payload in `frame`. Returns a tidy frame
    (transport, messages, total_ms, per_message_ms, setup_ms, source="model").
    """
    from labkit.measure import median, tidy

    size = int(frame["payload_bytes"].min())
    smallest = frame[frame["payload_bytes"] == size]
    setup = frame.attrs.get("setup_ms", {})
    rows = []
    for transport, group in smallest.groupby("transport", sort=False):
        per = median(group["rtt_ms"])
        first = median(setup.get(transport, {}).get(size, []))
        if math.isnan(first) or transport == "rest-new":
            extra = 0.0  # nothing recorded, or every request pays its own connection
        elif transport == "rest-keepalive":
            extra = max(0.0, first - per)
        else:
            extra = first
        for n in messages:
            rows.append({"transport": transport, "messages": int(n),
                         "total_ms": extra + n * per, "per_message_ms": per, "setup_ms": extra,
                         "source": "model"})
    return tidy(rows)


def measure_exchange(lab, *, messages=(1, 10), transports=TRANSPORTS,
                     profile: str | Profile | None = "loopback", payload_bytes: int = 64,
                     seed: int = 0, progress=print, every_s: float = 2.0):
    """Really exchange N messages per transport (set-up included), timed end to end.

    A check on `exchange_totals`: same tidy columns, source="measured". Keep N small on slow
    profiles (N messages on 4G take N x ~50 ms, twice that for rest-new). `progress` (a function,
    or None) gets a line when each exchange starts and at least every `every_s` seconds of it.
    """
    from labkit.measure import tidy

    host, port, tls = _lab_address(lab)
    net = NetemProxy(host, port, profile, seed=seed).start() if profile is not None else None
    endpoint = _Endpoint(net.host if net else host, net.port if net else port, tls, lab)
    body = bytes(payload_bytes)
    say = progress or (lambda *_: None)

    rows = []
    started_all = time.monotonic()
    try:
        for transport in transports:
            for n in (int(m) for m in messages):
                say(f"{transport}: {n} message{'s' * (n != 1)} with set-up… "
                    f"({time.monotonic() - started_all:.0f} s so far)")
                client = _client(transport, endpoint)
                started = time.perf_counter_ns()
                try:
                    _loop.run(client.open(), timeout=60)
                    done = 0
                    while done < n:  # in slices, so a line can be printed between them
                        done += _loop.run(_rounds(client, body, n - done,
                                                  time.monotonic() + every_s), timeout=120)
                        if done < n:
                            say(f"  {done} of {n}…")
                    total = _ms(started, time.perf_counter_ns())
                finally:
                    _loop.run(client.close(), timeout=60)
                rows.append({"transport": transport, "messages": n, "total_ms": total,
                             "per_message_ms": total / n, "setup_ms": float("nan"),
                             "source": "measured"})
    finally:
        if net is not None:
            net.stop()
    return tidy(rows)


PATTERNS = ("websocket lock-step", "websocket streamed", "rest keep-alive", "rest pipelined",
            "rest parallel")
"""How N messages can be sent: one WebSocket waiting for each answer before the next message
(lock-step), one WebSocket sending all N then reading all N (streamed), one keep-alive HTTP/1.1
connection waiting for each answer before the next request (what HTTP clients and browsers do),
the same connection with all N requests written at once and the N answers read after
(*pipelining*, RFC 9112 9.3.2: allowed, answers come back in request order), and `parallel`
keep-alive connections at once (what a browser does: 6 per host over HTTP/1.1)."""


class _Pipeline:
    """HTTP/1.1 pipelining on a plain socket: write N requests, then read N responses in order.

    No HTTP client library pipelines (aiohttp, requests, browsers all wait for each answer), so
    this one writes the requests itself and parses the answers with h11. Each request's body
    starts with its number, so the order the answers come back in is checked, not assumed."""

    def __init__(self, endpoint: _Endpoint):
        self.endpoint = endpoint
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> float:
        """Connect and do one ordinary request (the connection's set-up); its time in ms."""
        started = time.perf_counter_ns()
        self.reader, self.writer = await asyncio.open_connection(
            self.endpoint.host, self.endpoint.port, ssl=self.endpoint.ssl)
        await self.exchange([b"open"])
        return _ms(started, time.perf_counter_ns())

    def _request(self, body: bytes) -> bytes:
        extra = "".join(f"{name}: {value}\r\n" for name, value in self.endpoint.headers.items())
        return (f"POST {self.endpoint.prefix}/api/echo HTTP/1.1\r\n"
                f"Host: {self.endpoint.host}:{self.endpoint.port}\r\n{extra}"
                f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
                "\r\n").encode() + body

    async def exchange(self, bodies: list[bytes]) -> int:
        """Send every body as a POST /api/echo in one write, read the answers; returns how many
        answers came back in the order their requests were sent (all of them, over HTTP/1.1)."""
        import h11

        if self.reader is None or self.writer is None:
            raise RuntimeError("open() the pipeline first")
        self.writer.write(b"".join(self._request(body) for body in bodies))
        await self.writer.drain()
        parser, in_order = h11.Connection(h11.CLIENT), 0
        for body in bodies:
            parser.send(h11.Request(method="POST", target="/api/echo",
                                    headers=[("Host", "lab"), ("Content-Length", str(len(body)))]))
            parser.send(h11.Data(data=body))
            parser.send(h11.EndOfMessage())
            status, answer = 0, b""
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    data = await self.reader.read(65536)
                    if not data:
                        raise ConnectionError("the lab closed the pipelined connection")
                    parser.receive_data(data)
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    answer += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
            if status != 200:
                raise RuntimeError(f"pipelined echo failed: HTTP {status}")
            in_order += answer == body
            parser.start_next_cycle()
        return in_order

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()


def _numbered(body: bytes, messages: int) -> list[bytes]:
    """`messages` bodies of len(body) bytes (at least 8), each starting with its number."""
    size = max(8, len(body))
    return [f"{i:08d}".encode() + body[8:size] + b"\0" * max(0, size - 8 - len(body[8:]))
            for i in range(messages)]


async def _pattern_total(pattern: str, endpoint: _Endpoint, body: bytes, messages: int,
                         parallel: int) -> tuple[float, float, int | None, int]:
    """(set-up ms, ms for `messages` echoes over the already open connection(s), answers in
    request order (pipelining only, else None), perf_counter_ns when the timed part began) for
    `pattern`, one that does not wait for each answer (LOCK_STEP patterns: `_lock_step_total`)."""
    if pattern == "rest pipelined":
        pipe = _Pipeline(endpoint)
        try:
            setup = await pipe.open()
            bodies = _numbered(body, messages)
            started = time.perf_counter_ns()
            in_order = await pipe.exchange(bodies)
            return setup, _ms(started, time.perf_counter_ns()), in_order, started
        finally:
            await pipe.close()
    if pattern == "websocket streamed":
        ws = _WebSocket(endpoint)
        setup = await ws.open()
        try:
            started = time.perf_counter_ns()

            async def read_all() -> None:
                for _ in range(messages):
                    if len(await ws.connection.recv()) != len(body):
                        raise RuntimeError("echo failed: a message came back cut")

            reader = asyncio.ensure_future(read_all())
            try:
                for _ in range(messages):
                    await ws.connection.send(body)
                await reader
            finally:
                reader.cancel()
            return setup, _ms(started, time.perf_counter_ns()), None, started
        finally:
            await ws.close()
    if pattern != "rest parallel":
        raise ValueError(f"{pattern!r} waits for each answer: time it with _lock_step_total")
    lanes = parallel
    rest = _Rest(endpoint, keep_alive=True, limit=lanes)
    await rest.open()
    try:
        started = time.perf_counter_ns()  # set-up: open every connection (one request each)
        await asyncio.gather(*(rest.round(body) for _ in range(lanes)))
        setup = _ms(started, time.perf_counter_ns())
        started = time.perf_counter_ns()
        await asyncio.gather(*(rest.round(body) for _ in range(messages)))
        return setup, _ms(started, time.perf_counter_ns()), None, started
    finally:
        await rest.close()


LOCK_STEP = ("websocket lock-step", "rest keep-alive")
"""The patterns that wait for each answer: N round trips, timed in slices of SLICE_S."""
SLICE_S = 1.0


async def _rounds(client, body: bytes, n: int, deadline: float) -> int:
    """Up to `n` lock-step round trips on an open client, stopping early once `deadline`
    (time.monotonic()) has passed; how many were done."""
    done = 0
    while done < n:
        await client.round(body)
        done += 1
        if time.monotonic() >= deadline:
            break
    return done


def _lock_step_total(pattern: str, endpoint: _Endpoint, body: bytes, messages: int,
                     update) -> tuple[float, float, None, int]:
    """`_pattern_total` for a lock-step pattern, run from this thread in slices of SLICE_S, so
    `update(n)` can report progress (and an interrupt lands between round trips)."""
    client = _WebSocket(endpoint) if pattern.startswith("websocket") else _Rest(endpoint, True)
    try:
        started = time.perf_counter_ns()
        setup = _loop.run(client.open(), timeout=60)
        if setup is None:  # REST: the set-up is the request that opens the connection
            _loop.run(client.round(body), timeout=60)
            setup = _ms(started, time.perf_counter_ns())
        started, done = time.perf_counter_ns(), 0
        while done < messages:
            step = _loop.run(_rounds(client, body, messages - done, time.monotonic() + SLICE_S),
                             timeout=60 + SLICE_S)
            done += step
            update(step)
        return setup, _ms(started, time.perf_counter_ns()), None, started
    finally:
        _loop.run(client.close(), timeout=60)


def compare_patterns(lab, *, messages: int = 100, payload_bytes: int = 64, parallel: int = 6,
                     profile: str | Profile | None = "4g", trials: int = 1, seed: int = 0,
                     patterns=PATTERNS, progress: bool | None = True, loss: float = 0.0,
                     rto_ms: float = 200.0):
    """Time N echoes of `payload_bytes` each way with every pattern of PATTERNS, through `profile`.

    Connections are opened first (their cost is `setup_ms`); `total_ms` times the N messages on
    the open connection(s), end to end, so it shows how the messages are sent, not how the
    connection was made. bytes_up / bytes_down: HTTP or WebSocket bytes that crossed the emulated
    link during the N messages (TCP/IP headers not included; see `tcp_ip_bytes`). One row per
    pattern and trial; `round_trips` is total_ms over the configured round trip;
    `answers_in_order` (pipelining only) counts the answers that came back in request order.
    loss > 0 switches the emulator's modelled loss on (the "loss" toxic, seeded with `seed`):
    each segment is lost with that probability and arrives `rto_ms` late, with everything behind
    it on its connection and direction (head-of-line blocking); `losses` counts those that hit
    the N messages (not the set-up) per row.
    """
    from labkit.measure import tidy

    unknown = [p for p in patterns if p not in PATTERNS]
    if unknown or messages < 1 or parallel < 1 or trials < 1:
        raise ValueError(f"patterns are {', '.join(PATTERNS)}; messages, parallel and trials >= 1")
    if not 0 <= loss < 1 or (loss and profile is None):
        raise ValueError("loss is a probability in [0, 1) and needs an emulated profile")
    host, port, tls = _lab_address(lab)
    net = NetemProxy(host, port, profile, seed=seed).start() if profile is not None else None
    if net is not None and loss:
        net.toxic("loss", probability=loss, rto_ms=rto_ms, seed=seed)
    endpoint = _Endpoint(net.host if net else host, net.port if net else port, tls, lab)
    rtt = net.profile.rtt_ms if net else 0.0
    body, rows = bytes(payload_bytes), []
    limit = 60 + messages * (2 * rtt / 1000 + 0.1)
    bar = _progress(len(patterns) * trials * messages, progress,
                    f"{messages} messages x {len(patterns)} patterns", unit="msg")
    try:
        for trial in range(trials):
            for pattern in patterns:
                up, down = (net.bytes_up, net.bytes_down) if net else (0, 0)
                lost = len(net.losses) if net and loss else 0
                if pattern in LOCK_STEP:  # in slices, so the bar moves during the longest runs
                    setup, total, in_order, timed_from = _lock_step_total(
                        pattern, endpoint, body, messages, bar.update)
                else:
                    setup, total, in_order, timed_from = _loop.run(
                        _pattern_total(pattern, endpoint, body, messages, parallel), timeout=limit)
                    bar.update(messages)
                rows.append({
                    "pattern": pattern, "connections": parallel if pattern == "rest parallel" else 1,
                    "messages": messages, "payload_bytes": payload_bytes, "trial": trial,
                    "total_ms": total, "setup_ms": setup, "per_message_ms": total / messages,
                    "round_trips": total / rtt if rtt else math.nan,
                    "bytes_up": net.bytes_up - up if net else None,
                    "bytes_down": net.bytes_down - down if net else None,
                    "answers_in_order": in_order, "loss": loss,
                    "losses": sum(hit["t_ns"] >= timed_from for hit in net.losses[lost:])
                    if net and loss else 0,
                    "profile": net.profile.name if net else "direct"})
    finally:
        bar.close()
        if net is not None:
            net.stop()
    frame = tidy(rows)
    frame.attrs["rtt_configured_ms"] = rtt
    return frame


def extrapolate(frame, slower: str, faster: str, messages: int = 10_000, *, resamples: int = 2000,
                confidence: float = 0.95, seed: int = 0) -> dict:
    """How much longer N messages take with `slower` than with `faster` (lock-step), with a
    bootstrap interval: N x (median round trip of `slower` - median of `faster`), the medians
    recomputed on `resamples` resamples (with replacement) of each transport's round trips.

    Returns {"messages", "difference_ms" (the point estimate), "low_ms", "high_ms", "confidence",
    "n_slower", "n_faster"}. A small per-message difference times a large N makes a large number:
    the interval says how much of it the data really support.
    """
    import random

    from labkit.measure import median, percentile

    size = frame["payload_bytes"].min()
    rows = frame[frame["payload_bytes"] == size]
    a = rows.loc[rows["transport"] == slower, "rtt_ms"].dropna().tolist()
    b = rows.loc[rows["transport"] == faster, "rtt_ms"].dropna().tolist()
    if not a or not b:
        raise ValueError(f"the frame needs round trips of both {slower!r} and {faster!r}")
    rng = random.Random(seed)
    diffs = [median(rng.choices(a, k=len(a))) - median(rng.choices(b, k=len(b)))
             for _ in range(resamples)]
    tail = (1 - confidence) / 2 * 100
    return {"messages": messages, "difference_ms": messages * (median(a) - median(b)),
            "low_ms": messages * percentile(diffs, tail),
            "high_ms": messages * percentile(diffs, 100 - tail),
            "confidence": confidence, "n_slower": len(a), "n_faster": len(b)}


TCP_IP_HEADER_BYTES = wire.TCP_IP_HEADER
"""Per packet: IPv4 header (20 B) + TCP header (20 B) + the timestamps option Linux sends (12 B)."""
MSS_BYTES = wire.MSS
"""Payload per TCP segment on a 1500-byte Ethernet MTU with those headers (1500 - 52)."""
CONNECTION_PACKETS = wire.CONNECTION_PACKETS
"""A new connection's packets that carry no data: SYN, SYN-ACK, ACK, then FIN, ACK, FIN, ACK."""


def tcp_ip_bytes(frame):
    """The kit's TCP/IP model (`labkit.net.wire.packet_model`, the one lesson 02 uses too) under
    each row's HTTP/WebSocket bytes, as a copy with columns.

    Adds packets (data segments up + down, the pure ACK of the answer, delayed ACKs of long
    messages, plus CONNECTION_PACKETS on a new connection), tcp_ip_bytes (packets x
    TCP_IP_HEADER_BYTES) and wire_bytes (bytes_up + bytes_down + tcp_ip_bytes). A model, not a
    capture (`wire.count_packets` measures a small echo's packets: 3, as the model says): it
    assumes the request's ACK rides on the answer, full-size segments of MSS_BYTES, IPv4, and no
    retransmissions; Ethernet framing (38 B per packet with preamble and gap) is not counted.
    """
    out = frame.copy()
    new = (out["new_connection"].astype(bool) if "new_connection" in out
           else [False] * len(out))
    packets = [wire.packet_model([int(up)], [int(down)], new_connection=bool(fresh))["packets"]
               for up, down, fresh in zip(out["bytes_up"], out["bytes_down"], new, strict=True)]
    out["packets"] = packets
    out["tcp_ip_bytes"] = out["packets"] * TCP_IP_HEADER_BYTES
    out["wire_bytes"] = out["bytes_up"] + out["bytes_down"] + out["tcp_ip_bytes"]
    return out


MIN_N_FOR_P99 = 100
"""Fewer observations than this cannot carry a 99th percentile (it would be one of the slowest
one or two values): `summary` leaves p99 out and the max is named instead."""


def summary(frame, value: str = "rtt_ms", by=("transport",)):
    """`labkit.measure.summary` with p99 only when every group has at least MIN_N_FOR_P99
    observations (otherwise the column is dropped: read p90 and max)."""
    from labkit.measure import summary as full

    table = full(frame, value, by=list(by))
    if table["n"].min() < MIN_N_FOR_P99:
        table = table.drop(columns="p99")
    return table


_tls_lab = None


def tls_lab():
    """A second lab server serving https/wss, beside the kernel's lab (which stays as it was, so
    a cell run again after a TLS section still measures plain HTTP). Started once, reused."""
    global _tls_lab
    if _tls_lab is None or not _tls_lab.running:
        from labkit.server.config import LabConfig
        from labkit.server.runner import LabServer

        _tls_lab = LabServer(LabConfig(tls=True)).start()
    return _tls_lab


def slow_start_extra_round_trips(size: int, profile: str | Profile = "4g") -> int:
    """Round trips a new connection's slow start adds to sending `size` bytes upstream over
    `profile`, by the emulator's model (`netem.slow_start_rounds` minus the one round any
    connection needs)."""
    from labkit.net.netem import KB, slow_start_rounds

    link = resolve_profile(profile)
    rate = link.upstream.rate
    bdp = rate * KB * link.rtt_ms / 1000 if rate else math.inf
    return slow_start_rounds(size, bdp=bdp) - 1


def payload_findings(sweep, profile: str | Profile = "4g") -> dict:
    """What a payload sweep (`compare_transports` with several payloads) shows, with the lesson's
    sentence about it: how much each transport's median grew from the smallest to the largest
    payload, what the link alone needs for the extra bytes, how much more a new connection grew
    than the WebSocket, and what the slow-start model expects for that."""
    from labkit.measure import median
    from labkit.net.netem import INITIAL_WINDOW, KB, MSS

    link = resolve_profile(profile)
    sizes = sorted(int(p) for p in sweep["payload_bytes"].unique())
    small, big = sizes[0], sizes[-1]
    growth = {t: median(g.loc[g["payload_bytes"] == big, "rtt_ms"])
              - median(g.loc[g["payload_bytes"] == small, "rtt_ms"])
              for t, g in sweep.groupby("transport", sort=False)}
    link_ms = sum((big - small) / (toxics.rate * KB) * 1000
                  for toxics in (link.upstream, link.downstream) if toxics.rate)
    extra_new = growth["rest-new"] - growth["websocket"]
    trips, rtt = slow_start_extra_round_trips(big, link), link.rtt_ms
    grew = ", ".join(f"{t} **{v:.0f} ms**" for t, v in growth.items())
    text = (f"From {small:,} B to {big:,} B each way the median round trip grew by {grew}; squeezing "
            f"the extra {big - small:,} B through the link up and down takes {link_ms:.0f} ms. A new "
            f"connection grew **{extra_new:+.0f} ms** more than the WebSocket ({extra_new / rtt:+.1f} "
            f"round trips). The slow-start model expects {trips} extra round trip"
            f"{'s' * (trips != 1)} ({trips * rtt:g} ms) for {big:,} B on a new connection, whose "
            f"first window holds {INITIAL_WINDOW * MSS:,} B; the kept connections had opened their "
            f"windows during the warm-up (restarts after idle in this run: "
            f"{sweep.attrs.get('slow_start_restarts', 0)}). "
            f"({sweep.groupby(['transport', 'payload_bytes']).size().min()} round trips per point.)")
    return {"small": small, "big": big, "growth": growth, "link_ms": link_ms,
            "extra_new_ms": extra_new, "expected_round_trips": trips, "rtt_ms": rtt, "text": text}


def slow_start_off_findings(no_slow_start, found: dict) -> dict:
    """The same new-connection growth measured with the slow-start model off
    (`compare_transports(..., transports=["rest-new"], slow_start=False)`), beside `found`
    (`payload_findings` of the run with it on), with the lesson's sentence."""
    from labkit.measure import median

    small, big = found["small"], found["big"]

    def at(size):
        return median(no_slow_start.loc[no_slow_start["payload_bytes"] == size, "rtt_ms"])

    grew = at(big) - at(small)
    extra_off = grew - found["growth"]["websocket"]
    slow_start = found["extra_new_ms"] - extra_off > found["rtt_ms"] / 2
    text = (f"Without slow start the new connection grew by **{grew:.0f} ms**, {extra_off:+.0f} ms "
            f"against the WebSocket (with slow start: {found['extra_new_ms']:+.0f} ms). "
            + ("So the extra time was slow start: a new connection pays it on a large first message."
               if slow_start else "In this run the two differ by less than half a round trip: the "
               "jitter hides slow start."))
    return {"grew_ms": grew, "extra_off_ms": extra_off, "slow_start_shows": slow_start,
            "text": text}


def pattern_findings(ways) -> dict:
    """Medians per pattern of a `compare_patterns` run and the lesson's sentence about them."""
    from labkit.measure import median

    t = {p: median(g["total_ms"]) for p, g in ways.groupby("pattern", sort=False)}
    n, rtt = int(ways["messages"].iloc[0]), ways.attrs.get("rtt_configured_ms", math.nan)
    lock, stream, keep = t["websocket lock-step"], t["websocket streamed"], t["rest keep-alive"]
    piped, par = t["rest pipelined"], t["rest parallel"]
    in_order = int(ways.loc[ways["pattern"] == "rest pipelined", "answers_in_order"].min())
    text = (f"Lock-step, {n} messages took **{lock / 1000:.2f} s** over a WebSocket and "
            f"**{keep / 1000:.2f} s** over keep-alive REST ({keep / lock:.2f}×): both pay about one "
            f"round trip per message ({lock / rtt:.0f} and {keep / rtt:.0f} round trips of {rtt:g} ms). "
            f"Streamed, the same WebSocket took **{stream / 1000:.3f} s**, {lock / stream:.0f}× less. "
            f"Pipelined, one HTTP/1.1 connection took **{piped / 1000:.3f} s** ({piped / rtt:.1f} round "
            f"trips), {keep / piped:.0f}× less than waiting for each answer, and {in_order} of {n} "
            "answers came back in the order of their requests. Six REST connections, each waiting for "
            f"its answers, took **{par / 1000:.2f} s**, {keep / par:.1f}× less than one "
            f"({par / rtt:.0f} round trips for {n} requests).")
    return {"messages": n, "lock": lock, "stream": stream, "keep": keep, "piped": piped,
            "par": par, "in_order": in_order, "text": text}


def loss_findings(clean, lossy) -> dict:
    """A loss-free `compare_patterns` run beside the same patterns with modelled loss (several
    trials), per pattern, with the lesson's sentences; `lost` counts the losses that hit."""
    lines = []
    n = int(lossy["messages"].iloc[0])
    for pattern, runs in lossy.groupby("pattern", sort=False):
        before = float(clean.loc[clean["pattern"] == pattern, "total_ms"].iloc[0])
        hit = runs[runs["losses"] > 0]
        line = (f"- {pattern}: **{before:.0f} ms** without loss; with {runs['loss'].iloc[0]:.0%} loss "
                + ", ".join(f"{t:.0f} ms ({k} lost)"
                            for t, k in zip(runs["total_ms"], runs["losses"], strict=True)))
        if len(hit):
            line += (f". The runs that met a loss took {hit['total_ms'].median() - before:+.0f} ms "
                     "(median) more: the stall, paid by every message queued behind the lost segment")
        lines.append(line + ".")
    lost = int(lossy["losses"].sum())
    lines.append(f"\n{lost} modelled loss{'es' * (lost != 1)} in {len(lossy)} runs of {n} messages. "
                 if lost else f"\nNo segment was lost in these {len(lossy)} runs: change `seed` and "
                 "run again. ")
    lines[-1] += "Lock-step messages would lose only the round trip that met the loss."
    return {"lost": lost, "text": "\n".join(lines)}


def across_the_network(lab, mine, *, count: int = 20, warmup: int = 3) -> dict:
    """Lesson 03 on a class server: the three transports timed to `lab` (joined with `lk.join`,
    another machine across a real network) and to `mine` (this kernel's own lab, on loopback),
    both directly (no proxy: a class server's https name and path prefix stay as joined), with the
    lesson's sentence. On the kernel's own lab (`lk.start()`) nothing is measured: there is no
    network to time. Returns {"frame": both runs (column "where") or None, "medians":
    {where: {transport: ms}}, "text"}."""
    import pandas as pd

    from labkit.course.classroom import ClassroomLab
    from labkit.measure import median

    if not isinstance(lab, ClassroomLab):
        return {"frame": None, "medians": {}, "text": (
            "`lab` runs in this kernel: between you and it there is only this machine's loopback, "
            "measured above. Joined to a class server (`lk.join`), this cell times the real network "
            "to it.")}
    runs = {where: compare_transports(target, profile=None, count=count, warmup=warmup)
            for where, target in (("class server", lab), ("own lab", mine))}
    medians = {where: {t: median(g["rtt_ms"]) for t, g in run.groupby("transport", sort=False)}
               for where, run in runs.items()}
    there, here = medians["class server"], medians["own lab"]
    shown = ", ".join(f"{t} **{there[t]:.2f} ms** (your own lab {here.get(t, math.nan):.2f} ms)"
                      for t in there)
    try:
        nearby = ipaddress.ip_address(lab.host).is_loopback
    except ValueError:
        nearby = lab.host == "localhost"
    where = ("on this same machine (its loopback: no network in between this time)" if nearby
             else "across the network, shared with the classmates using it")
    text = (f"To the class server at `{lab.host}:{lab.port}`, {where}: {shown}; {count} round "
            "trips each, medians, no proxy. A real network's delay and jitter would come on top of "
            "every emulated profile, which is why the emulated runs below use your own lab.")
    frame = pd.concat([run.assign(where=where) for where, run in runs.items()], ignore_index=True)
    return {"frame": frame, "medians": medians, "text": text}


def round_trips_per_connection(frame) -> float:
    """From a run: a new-connection request's median round trip in keep-alive round trips."""
    from labkit.measure import median, ratio

    new = median(frame.loc[frame["transport"] == "rest-new", "rtt_ms"])
    reused = median(frame.loc[frame["transport"] == "rest-keepalive", "rtt_ms"])
    return ratio(new, reused)


__all__ = ["COLUMNS", "PATTERNS", "PHASES", "TRANSPORTS", "across_the_network", "compare_patterns",
           "compare_transports",
           "exchange_totals", "extrapolate", "measure_exchange", "round_trips_per_connection",
           "loss_findings", "pattern_findings", "payload_findings", "slow_start_extra_round_trips",
           "slow_start_off_findings", "summary", "tcp_ip_bytes", "tls_lab"]
