"""`labkit bench`: the standard latency suite, written as a CSV, a JSON of the machine and an offline
HTML report.

Size: longer than 500 lines because the report and the overhead figures share one code path with
benchmarks/echo_floor.py (the floors, the interleaved rounds, the p99 rule), so that the command
and the benchmark can never print different numbers for the same figure.

    labkit bench                    # loopback and 4G, full counts (a few minutes)
    labkit bench --profile wifi --quick --out results/

It starts its own lab server on 127.0.0.1, measures REST (new connection, keep-alive) and WebSocket
round trips on loopback and on the chosen emulated network for a few payload sizes, and writes:

- `latency-<profile>.csv`: the tidy frame of `labkit.lessons.latency.compare_transports`, one row per round
  trip (both profiles);
- `latency-<profile>.json`: machine, versions, date, settings and the summary (n, median, p90, p99,
  IQR) per profile, transport and payload;
- `latency-<profile>.html`: the figures and the summary table in one file with plotly inlined, so
  it opens offline.

Every run also measures the server's own cost side by side with its floors (`overhead_figures`): the
lab's REST keep-alive GET against a bare aiohttp app, the lab's WebSocket echo against a raw asyncio
WebSocket echo (and a bare aiohttp one), each server on its own thread, interleaved rounds; and
`lk.start()` to the first answer in fresh interpreters. `benchmarks/echo_floor.py` prints the same
figures from the same code. The report shows medians and ratios, and p99 only where n >= 100.
With `--cluster` it adds the scaling-out figures (`labkit.lessons.scaling.cluster_figures`, the same
code as `benchmarks/cluster.py`): front door / direct, the Redis hop, fan-out, idle memory.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import hashlib
import html
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import TypedDict


class Suite(TypedDict):
    payloads: tuple[int, ...]
    count: int
    warmup: int
    messages: tuple[int, ...]
    overhead_n: int
    overhead_rounds: int
    startup_runs: int


SUITES: dict[bool, Suite] = {
    # quick: a smoke run (CI, a first look); full: enough round trips for stable tails
    True: {"payloads": (64, 4096), "count": 8, "warmup": 2, "messages": (1, 5),
           "overhead_n": 50, "overhead_rounds": 1, "startup_runs": 1},
    False: {"payloads": (16, 1024, 16384, 65536), "count": 100, "warmup": 5, "messages": (1, 10, 50),
            "overhead_n": 1000, "overhead_rounds": 3, "startup_runs": 5},
}

PACKAGES = ("labkit-lessons", "aiohttp", "websockets", "pandas", "plotly", "trustme")
"""Distributions whose versions a report records (labkit's distribution is labkit-lessons)."""


PAYLOAD = b"x" * 16


class ThreadedLoop:
    """An event loop on a daemon thread, to host a server the way the lab is hosted."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro):
        """Run `coro` on this loop and return its result (at most 30 s)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self):
        """Stop the loop and end its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class _Floor(asyncio.Protocol):
    """A floor server's protocol: it tells `listen()` itself when its connection ends, so the
    floors are served through the kit's one serving path with nothing added to their data path
    (the same accept loop as the lab's; no wrapper around `data_received`)."""

    _on_lost = None

    def set_on_lost(self, callback) -> None:
        self._on_lost = callback

    def connection_lost(self, exc) -> None:
        if self._on_lost is not None:
            self._on_lost(self)


class RawEcho(_Floor):
    """The floor of any echo: asyncio's protocol callbacks writing back what they read."""

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class RawWebSocketEcho(_Floor):
    """The floor of a WebSocket echo: asyncio's protocol callbacks, the RFC 6455 handshake and
    frame format done by hand, nothing else (no limits, no heartbeat, no fragmentation; a small
    unfragmented masked client frame in, the same payload unmasked out)."""

    GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def connection_made(self, transport) -> None:
        self.transport, self.buffer, self.open = transport, b"", False

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.open:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key:"))
            accept = base64.b64encode(hashlib.sha1(key + self.GUID).digest())
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                                 + b"\r\n\r\n")
            self.open, self.buffer = True, rest
        while len(self.buffer) >= 6:
            first, second = self.buffer[0], self.buffer[1] & 0x7F
            start = 2 + (2 if second == 126 else 8 if second == 127 else 0)
            if second == 126:
                second = struct.unpack_from("!H", self.buffer, 2)[0]
            elif second == 127:
                second = struct.unpack_from("!Q", self.buffer, 2)[0]
            end = start + 4 + second
            if len(self.buffer) < end:
                return
            mask = self.buffer[start:start + 4]
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.buffer[start + 4:end]))
            self.buffer = self.buffer[end:]
            if first & 0x0F == 8:  # close: answer it and stop
                self.transport.write(bytes([0x88, len(payload)]) + payload)
                self.transport.close()
                return
            size = (bytes([len(payload)]) if len(payload) < 126
                    else bytes([126]) + struct.pack("!H", len(payload)))
            self.transport.write(bytes([first]) + size + payload)


def _serve_floor(host: ThreadedLoop, factory) -> int:
    from labkit.server.listen import listen

    async def _start():
        return (await listen(factory, "127.0.0.1", 0)).port

    return host.run(_start())


def start_raw_ws_server(host: ThreadedLoop) -> int:
    """A raw asyncio WebSocket echo (`RawWebSocketEcho`) on `host`'s loop; its port."""
    return _serve_floor(host, RawWebSocketEcho)


def start_raw_server(host: ThreadedLoop) -> int:
    """A raw asyncio TCP echo (`RawEcho`) on `host`'s loop; its port."""
    return _serve_floor(host, RawEcho)


def start_bare_aiohttp(host: ThreadedLoop) -> int:
    """A bare aiohttp app (GET /echo?size=N: N bytes, N <= 16, read from the query as the lab's
    /api/echo does but unchecked; /ws: a text echo), no middleware, aiohttp's own
    connection handler (plus the end-of-connection hook `listen()` counts with); its port."""
    import aiohttp
    from aiohttp import web
    from aiohttp.web_protocol import RequestHandler

    class Handler(RequestHandler):
        def set_on_lost(self, callback) -> None:
            self.on_lost = callback

        def connection_lost(self, exc) -> None:
            self.on_lost(self)
            super().connection_lost(exc)

    async def get(request):  # the lab route's own work, minus its checks: ?size=N bytes
        size = int(request.query.get("size", "0"))
        return web.Response(body=PAYLOAD[:size], content_type="application/octet-stream")

    async def ws(request):
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type is aiohttp.WSMsgType.TEXT:
                await sock.send_str(msg.data)
        return sock

    app = web.Application()
    app.router.add_get("/echo", get)
    app.router.add_get("/ws", ws)

    async def _setup():
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        return runner

    runner = host.run(_setup())
    server = runner.server
    options: dict = {"access_log": None}
    return _serve_floor(host, lambda: Handler(server, loop=host.loop, **options))


async def time_raw(port: int, n: int, warmup: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    for i in range(n + warmup):
        t = time.perf_counter_ns()
        writer.write(PAYLOAD)
        await writer.drain()
        await reader.readexactly(len(PAYLOAD))
        if i >= warmup:
            out.append((time.perf_counter_ns() - t) / 1e6)
    writer.close()
    return out


async def time_http(url: str, n: int, warmup: int) -> list[float]:
    import aiohttp

    out = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for i in range(n + warmup):
            t = time.perf_counter_ns()
            async with session.get(url) as reply:
                await reply.read()
            if i >= warmup:
                out.append((time.perf_counter_ns() - t) / 1e6)
    return out


async def time_ws(url: str, n: int, warmup: int) -> list[float]:
    from websockets.asyncio.client import connect

    out = []
    text = PAYLOAD.decode()
    async with connect(url, compression=None) as ws:
        for i in range(n + warmup):
            t = time.perf_counter_ns()
            await ws.send(text)
            await ws.recv()
            if i >= warmup:
                out.append((time.perf_counter_ns() - t) / 1e6)
    return out


def startup_times(runs_each: int = 5) -> tuple[float, float, float]:
    """(import labkit s, lk.start() to first answered request s, import aiohttp.web s): medians
    of `runs_each` fresh interpreters each. The last is the floor inside the second: the server
    library's own import, which no lab built on it can avoid (it differs a lot between
    machines)."""
    code_import = "import time; t=time.perf_counter(); import labkit; print(time.perf_counter()-t)"
    code_start = (
        "import time, urllib.request, labkit as lk; t=time.perf_counter(); lab=lk.start(); "
        "urllib.request.urlopen(lab.url + '/healthz').read(); print(time.perf_counter()-t); lab.stop()"
    )
    code_aiohttp = ("import time; t=time.perf_counter(); import aiohttp.web; "
                    "print(time.perf_counter()-t)")

    def median_of(code: str) -> float:
        runs = [float(subprocess.check_output([sys.executable, "-c", code]))
                for _ in range(runs_each)]
        return statistics.median(runs)

    return median_of(code_import), median_of(code_start), median_of(code_aiohttp)

OVERHEAD_PAIRS = (
    # (figure, setup, floor, goal for the p50 ratio or None)
    ("REST keep-alive: lab / bare aiohttp app", "lab REST GET keep-alive",
     "bare aiohttp GET keep-alive", 1.05),
    ("WebSocket echo: lab / raw asyncio WebSocket echo", "lab WS echo", "raw asyncio WS echo", 1.10),
    ("WebSocket echo: lab / bare aiohttp WebSocket echo", "lab WS echo", "bare aiohttp WS echo",
     None),
    ("WebSocket echo: bare aiohttp / raw asyncio (the library's own share)", "bare aiohttp WS echo",
     "raw asyncio WS echo", None),
)
"""The server-overhead figures: each setup over its floor, measured side by side."""


BLOCKS_PER_ROUND = 10
"""Each round of `overhead_rounds` runs every setup in this many short blocks, in turn: drift in
the machine's speed (other processes, frequency) then hits a setup and its floor alike."""


def overhead_rounds(n: int, warmup: int, rounds: int) -> dict[str, list[float]]:
    """Round trips (ms) of the lab and its floors, each server on its own thread. Every round
    runs the setups in turn in BLOCKS_PER_ROUND blocks of about n / BLOCKS_PER_ROUND round trips
    (each block on a new connection with its own warm-up, not counted), so that load on the
    machine hits all alike."""
    from labkit.server.runner import LabServer

    hosts = [ThreadedLoop() for _ in range(3)]
    raw_host, raw_ws_host, bare_host = hosts
    lab = None
    try:
        raw_port, bare_port = start_raw_server(raw_host), start_bare_aiohttp(bare_host)
        raw_ws_port = start_raw_ws_server(raw_ws_host)
        lab = LabServer().start()
        setups = {
            "raw asyncio TCP echo": lambda k, w: time_raw(raw_port, k, w),
            "bare aiohttp GET keep-alive": lambda k, w: time_http(
                f"http://127.0.0.1:{bare_port}/echo?size=16", k, w),
            "lab REST GET keep-alive": lambda k, w: time_http(f"{lab.url}/api/echo?size=16", k, w),
            "raw asyncio WS echo": lambda k, w: time_ws(f"ws://127.0.0.1:{raw_ws_port}/", k, w),
            "bare aiohttp WS echo": lambda k, w: time_ws(f"ws://127.0.0.1:{bare_port}/ws", k, w),
            "lab WS echo": lambda k, w: time_ws(f"{lab.ws_url}/ws/echo", k, w),
        }
        results: dict[str, list[float]] = {name: [] for name in setups}
        blocks = min(BLOCKS_PER_ROUND, max(1, n // 20))
        sizes = [n // blocks + (1 if i < n % blocks else 0) for i in range(blocks)]
        block_warmup = max(5, warmup // blocks)
        for _ in range(rounds):
            for size in sizes:
                for name, make in setups.items():
                    results[name] += asyncio.run(make(size, block_warmup))
        return results
    finally:
        if lab is not None:
            lab.stop()
        for host in hosts:
            host.close()


def _p99(values: list[float]) -> float | None:
    from labkit.lessons.latency import MIN_N_FOR_P99

    from .measure import percentile

    return percentile(values, 99) if len(values) >= MIN_N_FOR_P99 else None


def overhead_figures(n: int, warmup: int, rounds: int, startup_runs: int = 5) -> dict:
    """The server-overhead figures of one run: per setup n, p50, p99 (None below 100 round trips);
    per pair the p50 and p99 ratios and the goal; `lk.start()` and `import labkit` medians; the
    cores and the load average."""
    results = overhead_rounds(n, warmup, rounds)
    setups: dict[str, dict] = {
        name: {"n": len(v), "p50_ms": statistics.median(v), "p99_ms": _p99(v)}
        for name, v in results.items()}
    ratios = []
    for figure, setup, floor, goal in OVERHEAD_PAIRS:
        top, bottom = setups[setup], setups[floor]
        top_p99, bottom_p99 = top["p99_ms"], bottom["p99_ms"]
        p99 = top_p99 / bottom_p99 if top_p99 is not None and bottom_p99 is not None else None
        ratios.append({"figure": figure, "n": min(top["n"], bottom["n"]),
                       "p50_ratio": top["p50_ms"] / bottom["p50_ms"], "p99_ratio": p99,
                       "goal_p50": goal})
    t_import, t_start, t_aiohttp = startup_times(startup_runs)
    return {"setups": setups, "ratios": ratios, "import_ms": t_import * 1000,
            "start_ms": t_start * 1000, "start_goal_ms": 200, "aiohttp_import_ms": t_aiohttp * 1000,
            "cores": os.cpu_count(),
            "load_average": list(os.getloadavg())}


def _overhead_html(figures: dict) -> str:
    def num(value, digits=3):
        return "&ndash;" if value is None else f"{value:.{digits}f}"

    with_p99 = figures_have_p99(figures)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{row['n']}</td><td>{num(row['p50_ms'], 4)}</td>"
        + (f"<td>{num(row['p99_ms'], 4)}</td>" if with_p99 else "") + "</tr>"
        for name, row in figures["setups"].items())
    ratio_rows = "".join(
        f"<tr><td>{html.escape(r['figure'])}</td><td>{r['n']}</td><td>{r['p50_ratio']:.2f}&times;</td>"
        + (f"<td>{num(r['p99_ratio'], 2)}&times;</td>" if with_p99 else "")
        + f"<td>{'&le; ' + format(r['goal_p50'], '.2f') if r['goal_p50'] else ''}</td></tr>"
        for r in figures["ratios"])
    p99_head = "<th>p99 ms</th>" if with_p99 else ""
    p99_ratio_head = "<th>p99 ratio</th>" if with_p99 else ""
    return (
        "<h2>The server's own cost, side by side with its floors</h2>"
        f"<p>Each server on its own thread and event loop, the same client for a setup and its "
        f"floor, setups interleaved. {figures['cores']} cores, load average "
        f"{' / '.join(f'{v:.2f}' for v in figures['load_average'])} (1/5/15 min). "
        "p99 only where every group has at least 100 round trips.</p>"
        f"<table><tr><th>setup</th><th>n</th><th>p50 ms</th>{p99_head}</tr>{rows}</table>"
        f"<table><tr><th>ratio</th><th>n</th><th>p50 ratio</th>{p99_ratio_head}<th>goal (p50)</th>"
        f"</tr>{ratio_rows}</table>"
        f"<p><code>lk.start()</code> to the first answered request: {figures['start_ms']:.0f} ms "
        f"(median of fresh interpreters; goal &le; {figures['start_goal_ms']} ms), of which "
        f"<code>import aiohttp.web</code> alone takes {figures['aiohttp_import_ms']:.0f} ms on "
        f"this machine; <code>import labkit</code>: {figures['import_ms']:.1f} ms.</p>"
    )


def _cluster_html(rows: list[dict]) -> str:
    """The cluster figures (`scaling.cluster_figures`) as a table: the ratio or difference, its
    goal, and each side's n, median and p99 (p99 only where that side has n >= 100)."""
    def side(part: dict | None, unit: str) -> str:
        if part is None or part.get("median") is None:
            return "&ndash;"
        tail = f", p99 {part['p99']:.2f}" if part.get("p99") is not None else ""
        return f"n={part['n']}, median {part['median']:.2f}{tail} {html.escape(unit)}"

    body = "".join(
        f"<tr><td>{html.escape(r['figure'])}</td><td>{r['value']:.2f} {html.escape(r['unit'])}</td>"
        f"<td>{html.escape(r['goal'])}</td><td>{side(r['a'], r['of'])}</td>"
        f"<td>{side(r['b'], r['of'])}</td><td>{html.escape(r.get('note') or '')}</td></tr>"
        for r in rows)
    return ("<h2>Scaling out: the cluster figures</h2><p>Each measured side by side in one run "
            "(labkit.lessons.scaling.cluster_figures; load from processes of their own). Where "
            "the CPU was measured, the last column gives it per process (CPU ms per message or "
            "event), so a ratio can be read against the machine's cores.</p>"
            "<table><tr><th>figure</th><th>value</th><th>goal</th><th>measured</th>"
            f"<th>against</th><th>CPU per part</th></tr>{body}</table>")


def figures_have_p99(figures: dict) -> bool:
    """Whether every setup of an overhead run has enough round trips for a p99."""
    return all(row["p99_ms"] is not None for row in figures["setups"].values())



def machine_info() -> dict:
    """Where and with what a run was made: date, OS, CPU, Python and package versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "os": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "versions": versions,
    }


def _summary_records(frame) -> list[dict]:
    """Per group: n, median, p90, p99 (null below 100 round trips: too few to carry one), IQR."""
    from labkit.lessons.latency import MIN_N_FOR_P99

    from .measure import summary

    table = summary(frame, "rtt_ms", ["profile", "transport", "payload_bytes"])
    table.loc[table["n"] < MIN_N_FOR_P99, "p99"] = float("nan")
    return json.loads(table.to_json(orient="records"))


def _report_html(frame, totals, info: dict, settings: dict, overhead: dict | None = None,
                 cluster: list[dict] | None = None) -> str:
    from labkit.lessons.latency import summary

    from .plots import latency as charts

    figures = [
        charts.ecdf(frame, log_x=True),
        charts.by_profile(frame),
        charts.rtt_vs_payload(frame[frame["profile"] == settings["profile"]],
                              title=f"Round trip against message size on {settings['profile']}"),
        charts.waterfall(frame[(frame["profile"] == settings["profile"])
                               & (frame["payload_bytes"] == frame["payload_bytes"].min())],
                         title=f"Where a request's time goes on {settings['profile']}"),
        charts.bytes_per_message(frame[frame["profile"] == settings["profile"]]),
        charts.exchange_curve(totals, title=f"Time to exchange N messages on "
                                            f"{settings['profile']} (lines: model)"),
    ]
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0), default_width="100%")
             for i, fig in enumerate(figures)]
    table = summary(frame, "rtt_ms", ("profile", "transport", "payload_bytes")).round(3)
    meta = html.escape(json.dumps({**info, "settings": settings}, indent=2))
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>labkit bench: {html.escape(settings['profile'])}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
        "</style></head><body>"
        f"<h1>labkit bench: loopback and {html.escape(settings['profile'])}</h1>"
        "<p>Round trips of REST with a new connection per request, REST with keep-alive and "
        "WebSocket, through labkit's network emulator. Times in ms; n, median, p90 and the "
        "interquartile range (IQR) per group, and p99 where every group has at least 100 round "
        "trips (fewer cannot carry a 99th percentile: read p90 and the max).</p>"
        + table.to_html(index=False, border=0)
        + (_overhead_html(overhead) if overhead is not None else "")
        + (_cluster_html(cluster) if cluster else "")
        + "".join(f"<div>{p}</div>" for p in parts)
        + f"<h2>Machine and settings</h2><pre>{meta}</pre></body></html>"
    )


def run_bench(profile: str = "4g", quick: bool = False, out: str | Path = ".",
              *, progress: bool | None = None, cluster: bool = False) -> dict[str, Path]:
    """Run the suite (loopback + `profile`), write CSV, JSON and HTML into `out`; return paths.
    With `cluster`, also the cluster figures (worker processes, Redis; a few minutes more)."""
    import pandas as pd

    from labkit.lessons.latency import compare_transports, exchange_totals, measure_exchange
    from labkit.net.netem import profile as resolve_profile
    from labkit.server.config import LabConfig
    from labkit.server.runner import LabServer

    chosen = resolve_profile(profile)
    suite = SUITES[bool(quick)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    profiles = list(dict.fromkeys(["loopback", chosen.name]))
    settings = {"profile": chosen.name, "profile_details": chosen.describe(),
                "profile_source": chosen.source, "profiles": profiles, "quick": bool(quick),
                **{k: list(v) if isinstance(v, tuple) else v for k, v in suite.items()}}
    with LabServer(LabConfig()) as lab:
        frames = [
            compare_transports(lab, profile=name, payloads=suite["payloads"],
                               count=suite["count"], warmup=suite["warmup"], progress=progress)
            for name in profiles
        ]
        frame = pd.concat(frames, ignore_index=True)
        frame.attrs = {}
        chosen_frame = frames[-1]
        totals = pd.concat([
            exchange_totals(chosen_frame),
            measure_exchange(lab, messages=suite["messages"], profile=chosen.name),
        ], ignore_index=True)
    overhead = overhead_figures(suite["overhead_n"], max(10, suite["overhead_n"] // 10),
                                suite["overhead_rounds"], suite["startup_runs"])
    cluster_rows = None
    if cluster:
        from labkit.lessons.scaling import cluster_figures

        cluster_rows = cluster_figures(quick, progress=print if progress is not False else None)
    info = machine_info()
    stem = f"latency-{chosen.name}"
    paths = {"csv": out / f"{stem}.csv", "json": out / f"{stem}.json", "html": out / f"{stem}.html"}
    frame.to_csv(paths["csv"], index=False)
    record = {**info, "settings": settings,
              "warmup_dropped_per_group": suite["warmup"],
              "setup_ms": chosen_frame.attrs.get("setup_ms", {}),
              "summary_rtt_ms": _summary_records(frame),
              "exchange_totals": json.loads(totals.to_json(orient="records")),
              "server_overhead": overhead, "cluster_figures": cluster_rows}
    paths["json"].write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    paths["html"].write_text(_report_html(frame, totals, info, settings, overhead, cluster_rows),
                             encoding="utf-8")
    return paths


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `bench` sub-command to an argparse sub-parsers object."""
    from labkit.net.netem import PROFILES

    parser = subparsers.add_parser(
        "bench", help="measure REST vs WebSocket round trips; write CSV, JSON and an HTML report",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--profile", default="4g", choices=[p for p in PROFILES if p != "loopback"]
                        + ["loopback"], help="emulated network besides loopback (default 4g)")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--out", default=".", help="folder for the files (default: here)")
    parser.add_argument("--cluster", action="store_true",
                        help="also the cluster figures: front door, Redis hop, fan-out, idle "
                             "memory (starts worker processes and redis-server)")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run `labkit bench` from parsed arguments; prints the files written; exit code."""
    paths = run_bench(args.profile, args.quick, args.out, cluster=getattr(args, "cluster", False))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m labkit.bench [--profile P] [--quick] [--out DIR]` (same as `labkit bench`)."""
    parser = argparse.ArgumentParser(prog="labkit")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return run_from_args(args)


if __name__ == "__main__":
    sys.exit(main())
