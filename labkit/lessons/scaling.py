"""Experiments of lesson 06 (scaling out), run against a cluster from the client side.

Every function talks to the cluster only through sockets (its front door, or one worker's own port
for a measurement that must hit one process) and returns a tidy pandas frame or a dict. The
worker that answered comes from the `Lab-Worker` header and the chat welcome's `worker` field.

Size: longer than 500 lines because lesson 06's experiments (REST and WebSocket across workers, the
backplane's cost, memory per connection, a worker killed under load, throughput with load
generators in their own processes) and the cluster figures of benchmarks/cluster.py and `labkit
bench --cluster` share one set of socket, load and timing helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence

import aiohttp

from labkit import _loop


def _frame(rows):
    import pandas as pd

    return pd.DataFrame(rows)


def _run(coro, timeout: float = 300):
    return _loop.run(coro, timeout=timeout)


# -- REST across workers --------------------------------------------------------------------------
async def _requests(url: str, calls: Sequence[tuple[str, str, dict | None]], keep_alive: bool) -> list:
    connector = aiohttp.TCPConnector(limit=1, force_close=not keep_alive)
    rows = []
    async with aiohttp.ClientSession(connector=connector) as session:
        for i, (method, path, body) in enumerate(calls):
            async with session.request(method, url + path, json=body) as r:
                data = await r.json()
                rows.append({"request": i + 1, "worker": int(r.headers["Lab-Worker"]),
                             "status": r.status, "answer": data})
    return rows


def rest_across_workers(target, requests: int = 9, keep_alive: bool = False):
    """Create one note, then read it `requests` times (each on a new connection unless
    `keep_alive`): which worker answered and whether it found the note."""
    url = target.url

    async def go():
        made = await _requests(url, [("POST", "/api/notes", {"title": "shared state"})], True)
        note_id = made[0]["answer"]["id"]
        rows = await _requests(url, [("GET", f"/api/notes/{note_id}", None)] * requests, keep_alive)
        return [{"request": r["request"], "worker": r["worker"], "status": r["status"],
                 "title": r["answer"].get("title")} for r in rows]

    return _frame(_run(go()))


def counter_run(target, store: str, requests: int = 9):
    """POST /api/cluster/counter `requests` times on new connections: the value each worker
    answered with, for a counter in one worker's memory ("memory") or in SQLite ("shared")."""
    calls = [("POST", "/api/cluster/counter", {"store": store})] * requests
    rows = _run(_requests(target.url, calls, keep_alive=False))
    return _frame([{"store": store, "request": r["request"], "worker": r["worker"],
                    "value": r["answer"]["value"]} for r in rows])


def keepalive_series(target, requests: int = 10):
    """The same GET sent `requests` times over one keep-alive connection and over new connections
    each time: which worker answered each (L4 balancing moves connections, not requests)."""
    calls = [("GET", "/healthz", None)] * requests

    async def go():
        kept = await _requests(target.url, calls, keep_alive=True)
        fresh = await _requests(target.url, calls, keep_alive=False)
        return ([{"connection": "one keep-alive", "request": r["request"], "worker": r["worker"]}
                 for r in kept] + [{"connection": "new each time", "request": r["request"],
                                    "worker": r["worker"]} for r in fresh])

    return _frame(_run(go()))


# -- chat and feed across workers -----------------------------------------------------------------
async def open_websocket(url: str, **options):
    """A WebSocket (websockets library, no compression unless asked) and the worker behind it."""
    from websockets.asyncio.client import connect

    options.setdefault("compression", None)
    ws = await connect(url, open_timeout=20, max_queue=None, **options)
    assert ws.response is not None, "connect() returns once the handshake's response came"
    return int(ws.response.headers["Lab-Worker"]), ws


async def _json_messages(ws, until, timeout: float) -> list[dict]:
    """JSON messages from `ws` until `until(messages)` holds, the socket closes or `timeout` s."""
    from websockets.exceptions import ConnectionClosed

    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while not until(got):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
        except (TimeoutError, ConnectionClosed):
            break
    return got


def chat_across(target, members: int = 3, messages: int = 5, settle_s: float = 1.0):
    """`members` chat members join over WebSocket (the front door spreads them over workers);
    each sends `messages` messages. Per member: its worker, messages sent by everyone, messages it
    received, how many it missed, and the order it saw them in (texts, to compare members)."""
    url = target.ws_url

    async def go():
        sockets = []
        for m in range(members):
            worker, ws = await open_websocket(f"{url}/ws/chat?name=member{m + 1}")
            json.loads(await ws.recv())  # the welcome
            sockets.append((m + 1, worker, ws))
        total = members * messages
        for i in range(messages):
            for m, _worker, ws in sockets:
                await ws.send(json.dumps({"type": "message", "text": f"m{m}-{i}"}))

        def done(got):
            return sum(x.get("type") == "message" for x in got) >= total

        seen = await asyncio.gather(*(_json_messages(ws, done, settle_s) for *_, ws in sockets))
        for *_, ws in sockets:
            await ws.close()
        rows = []
        for (m, worker, _ws), got in zip(sockets, seen, strict=True):
            texts = [x["data"]["text"] for x in got if x.get("type") == "message"]
            rows.append({"member": m, "worker": worker, "sent_by_all": total,
                         "received": len(texts), "missed": total - len(texts), "order": texts})
        return rows

    return _frame(_run(go()))


def feed_across(target, subscribers: int = 6, events: int = 20, rate_hz: float = 200.0,
                settle_s: float = 1.0):
    """`subscribers` feed WebSockets through the front door; one worker's ticker publishes
    `events` events. Per subscriber: its worker and how many of the events it received."""
    url, ws_url = target.url, target.ws_url

    async def go():
        subs = [await open_websocket(f"{ws_url}/ws/feed") for _ in range(subscribers)]
        async with (aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s,
                    s.post(f"{url}/api/feed/source",
                           json={"rate_hz": rate_hz, "ticks": events, "seed": 6}) as r):
            publisher = int(r.headers["Lab-Worker"])
        got = await asyncio.gather(*(_json_messages(
            ws, lambda g: sum("seq" in x for x in g) >= events, settle_s + events / rate_hz)
            for _w, ws in subs))
        for _w, ws in subs:
            await ws.close()
        return [{"subscriber": i + 1, "worker": w, "publisher_worker": publisher,
                 "published": events, "received": sum("seq" in x for x in g),
                 "missed": events - sum("seq" in x for x in g)}
                for i, ((w, _ws), g) in enumerate(zip(subs, got, strict=True))]

    return _frame(_run(go()))


# -- what the backplane costs ---------------------------------------------------------------------
def delivery_delays(post_url: str, listen_ws_url: str, messages: int = 200) -> list[float]:
    """Post `messages` chat messages one at a time to `post_url` and time (ms) until each arrives
    on a chat WebSocket at `listen_ws_url` (another worker, or the same one): POST sent ->
    message received, measured in this process with perf_counter."""

    async def go():
        _worker, ws = await open_websocket(f"{listen_ws_url}/ws/chat?name=listener")
        json.loads(await ws.recv())
        delays = []
        async with aiohttp.ClientSession() as session:
            for i in range(messages):
                text = f"t{i}-{random.random()}"
                t0 = time.perf_counter()
                async with session.post(f"{post_url}/api/chat/messages",  # one name per message:
                                        json={"name": f"poster{i}", "text": text}) as r:
                    await r.read()  # the room limits each member's rate
                if r.status != 201:
                    raise RuntimeError(f"posting failed: HTTP {r.status}")
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if msg.get("type") == "message" and msg["data"]["text"] == text:
                        break
                delays.append((time.perf_counter() - t0) * 1000)
        await ws.close()
        return delays

    return _run(go())


def backplane_cost(in_process, through_redis, messages: int = 200, rounds: int = 4,
                   progress=None):
    """Delivery delay side by side: poster and listener on worker 1 of `in_process` (no
    backplane) vs poster on worker 1 and listener on worker 2 of `through_redis`, measured in
    alternating rounds so that both paths see the same machine load. Rows: path, message,
    delay_ms. `frame.attrs["per_message"]`: per path and process (workers, redis-server, this
    process as the client), the CPU ms and the ms it waited for a core (runnable, no core free;
    Linux only, else None) per message: where the difference between the paths goes."""
    one = in_process.workers[0].url
    first, second = through_redis.workers[0].url, through_redis.workers[1].url
    paths = (("in-process (one worker)", one, one), ("worker 1 -> Redis -> worker 2", first, second))
    pids = {paths[0][0]: {"worker 1": in_process.workers[0].pid},
            paths[1][0]: {"worker 1": through_redis.workers[0].pid,
                          "worker 2": through_redis.workers[1].pid, **_redis_pid(through_redis)}}
    per_round = max(1, messages // rounds)
    rows: list[dict] = []
    spent: dict[str, dict[str, list]] = {name: {} for name, *_ in paths}
    for round_ in range(rounds):
        for name, post, listen in paths:
            start = sum(r["path"] == name for r in rows)
            watched = {**pids[name], "client (this process)": os.getpid()}
            before = {part: _process_times(pid) for part, pid in watched.items()}
            delays = delivery_delays(post, listen.replace("http", "ws"), per_round)
            for part, pid in watched.items():
                total = spent[name].setdefault(part, [0.0, 0.0])
                for i, (b, a) in enumerate(zip(before[part], _process_times(pid), strict=True)):
                    total[i] = None if a is None or b is None or total[i] is None else (
                        total[i] + a - b)
            rows += [{"path": name, "message": start + i, "delay_ms": d}
                     for i, d in enumerate(delays)]
            if progress is not None:
                progress(f"round {round_ + 1} of {rounds}, {name}: {len(delays)} messages, median "
                         f"{statistics.median(delays):.2f} ms")
    frame = _frame(rows)
    count = {name: max(1, sum(r["path"] == name for r in rows)) for name, *_ in paths}
    frame.attrs["per_message"] = {
        name: {part: {"cpu_ms": cpu * 1000 / count[name],
                      "core_wait_ms": None if wait is None else wait * 1000 / count[name]}
               for part, (cpu, wait) in parts.items()} for name, parts in spent.items()}
    return frame


def _redis_pid(cluster) -> dict[str, int]:
    """{"redis-server": pid} of the redis-server a cluster started ({} if it uses another)."""
    import psutil

    server = getattr(cluster, "redis", None)
    if server is None or server.pid is None:
        return {}
    children = psutil.Process(server.pid).children()  # the guard's one child
    return {"redis-server": children[0].pid} if children else {}


def _process_times(pid: int) -> tuple[float, float | None]:
    """(CPU seconds, seconds runnable but waiting for a core) of process `pid`, all its threads;
    the wait comes from Linux's /proc/PID/task/*/schedstat (None elsewhere)."""
    from pathlib import Path

    waited = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                waited += int((task / "schedstat").read_text().split()[1])
    except OSError:
        return _cpu_s(pid), None
    return _cpu_s(pid), waited / 1e9


def per_message_text(cost, path: str) -> str:
    """A `backplane_cost` frame's CPU and wait for a core per message of `path`, as text."""
    parts = cost.attrs.get("per_message", {}).get(path, {})
    return ", ".join(
        f"{part} {v['cpu_ms']:.2f}" + ("" if v["core_wait_ms"] is None
                                      else f" (+{v['core_wait_ms']:.2f} waiting for a core)")
        for part, v in parts.items())


# -- memory per idle connection -------------------------------------------------------------------
def rss_kib(pid: int) -> float:
    """Resident memory of process `pid` in KiB."""
    import psutil

    return psutil.Process(pid).memory_info().rss / 1024


def idle_memory(worker, counts=(0, 1000, 2000, 5000), compression: bool = False,
                said_hello: bool = False, path: str = "/ws/echo", progress=None):
    """RSS of one worker (`worker`: a cluster Worker, with .url and .pid) holding 0, 1,000, ...
    idle WebSockets opened straight to it. With `said_hello` each socket first exchanges one
    echo message (a server allocates its compressor on the first message it compresses, so a
    socket that never spoke hides that cost). Rows: connections, rss_kib, kernel_tcp_kib,
    compression, said_hello. The sockets of this process (the client side) are not in rss_kib.

    RSS is the worker's own (user-space) memory; the kernel's memory for its sockets is not in it.
    `kernel_tcp_kib` is the kernel's TCP buffer memory of the whole machine (`/proc/net/sockstat`)
    and `kernel_slab_kib` its slab memory (`/proc/meminfo`: socket structures, inodes, files, ...),
    so both count both ends of each connection, and every other program on the machine too."""
    from labkit.server.listen import raise_open_file_limit

    raise_open_file_limit()
    url = worker.url.replace("http", "ws") + path
    options = {"compression": "deflate" if compression else None}

    async def go():
        sockets, rows = [], []
        gate = asyncio.Semaphore(100)

        async def one():
            async with gate:
                ws = (await open_websocket(url, **options))[1]
                if said_hello:
                    await ws.send("hello")
                    await ws.recv()
                return ws

        try:
            for n in sorted(counts):
                sockets += await asyncio.gather(*(one() for _ in range(n - len(sockets))))
                await asyncio.sleep(0.3)
                rows.append({"connections": n, "rss_kib": rss_kib(worker.pid),
                             "kernel_tcp_kib": kernel_tcp_kib(),
                             "kernel_slab_kib": kernel_slab_kib(),
                             "compression": "on" if compression else "off",
                             "said_hello": said_hello})
                if progress is not None:
                    progress(n)
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        return rows

    return _frame(_run(go(), timeout=600))


def kernel_tcp_kib() -> float | None:
    """The kernel's memory for TCP socket buffers on this machine, in KiB: the `mem` pages of the
    TCP line of /proc/net/sockstat (Linux; None elsewhere). Not part of any process's RSS."""
    try:
        with open("/proc/net/sockstat", encoding="ascii") as f:
            for line in f:
                if line.startswith("TCP:"):
                    fields = line.split()
                    pages = int(fields[fields.index("mem") + 1])
                    return pages * os.sysconf("SC_PAGE_SIZE") / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def kernel_slab_kib() -> float | None:
    """The kernel's slab memory on this machine in KiB (`Slab` of /proc/meminfo: where socket
    structures, their inodes and files live); None elsewhere. Not part of any process's RSS."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("Slab:"):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def kernel_kib_per_connection(frame, column: str = "kernel_tcp_kib") -> float | None:
    """Slope of a kernel memory column (`kernel_tcp_kib`: TCP buffers; `kernel_slab_kib`: slab)
    over connections: KiB per connection, both ends, least squares; None where it is missing."""
    if column not in frame or frame[column].isna().any():
        return None
    slope = statistics.linear_regression(frame["connections"], frame[column]).slope
    return round(slope, 2)


def kib_per_connection(frame) -> float:
    """Slope of RSS over connections (KiB per idle WebSocket), least squares."""
    slope = statistics.linear_regression(frame["connections"], frame["rss_kib"]).slope
    return round(slope, 1)


def memory_story(memory_off, memory_on) -> str:
    """What lesson 06's idle-memory run measured, in words computed from it: the worker's RSS per
    idle WebSocket with compression (the figure without it is the exercise's), the kernel's memory
    per connection that no RSS contains (Linux), and the open-file limit."""
    lines = [f"compression on: {kib_per_connection(memory_on)} KiB of worker RSS per idle "
             "WebSocket (exercise 2 asks for the figure without compression)"]
    buffers = kernel_kib_per_connection(memory_off, "kernel_tcp_kib")
    slab = kernel_kib_per_connection(memory_off, "kernel_slab_kib")
    if buffers is not None and slab is not None:
        lines.append("kernel memory per connection, in no process's RSS (both ends, whole machine):"
                     f" TCP buffers {buffers:+.2f} KiB, slab (socket structures, files) "
                     f"{slab:+.2f} KiB")
    limit = fd_limit()
    lines.append(f"open-file limit (ulimit -n) here: {limit['soft']} (hard {limit['hard']}): "
                 "one per socket, so the other wall")
    return "\n".join(lines)


def fd_limit() -> dict:
    """This process's limit of open files (soft, hard): every socket is one file descriptor."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"soft": soft, "hard": hard}


async def _feed_last_seq(session, url: str) -> int:
    async with session.get(f"{url}/api/feed/source") as r:
        return (await r.json())["last_seq"]


PROGRESS_EVERY_S = 2.0
"""Seconds between progress lines of a long experiment (no cell stays silent for long)."""


async def _report_every(seconds: float, progress, line) -> None:
    while True:
        await asyncio.sleep(seconds)
        progress(line())


# -- a worker dies under load ---------------------------------------------------------------------
class _Subscriber:
    """A feed subscriber that reconnects through the front door and resumes from its last SEQ."""

    def __init__(self, url: str, since: int):
        self.url, self.last = url, since
        self.seqs: list[int] = []
        self.workers: list[int] = []
        self.reconnects = 0
        self.gaps = 0

    async def run(self, until_seq: int, deadline: float) -> None:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        while self.last < until_seq and time.monotonic() < deadline:
            try:
                worker, ws = await open_websocket(f"{self.url}/ws/feed?since={self.last}")
            except (OSError, InvalidHandshake, TimeoutError):
                await asyncio.sleep(random.uniform(0.05, 0.2))
                continue
            self.workers.append(worker)
            try:
                while self.last < until_seq:
                    left = deadline - time.monotonic()
                    msg = json.loads(await asyncio.wait_for(ws.recv(), max(left, 0.01)))
                    if "seq" in msg:
                        self.seqs.append(msg["seq"])
                        self.last = max(self.last, msg["seq"])
                    elif msg.get("type") == "gap":
                        self.gaps += 1
            except (ConnectionClosed, OSError):
                self.reconnects += 1
                await asyncio.sleep(random.uniform(0.02, 0.2))  # jitter: not all at once
            except TimeoutError:
                break
            finally:
                await ws.close()


async def _publish(session, url: str, rate_hz: float, ticks: int, seed: int | None) -> None:
    """Run the feed source of `url` for `ticks` events at `rate_hz` (a seed restarts the walk,
    None goes on from where it stopped); return once it stopped."""
    body = {"rate_hz": rate_hz, "ticks": ticks} | ({} if seed is None else {"seed": seed})
    async with session.post(f"{url}/api/feed/source", json=body) as r:
        await r.read()
    while True:
        async with session.get(f"{url}/api/feed/source") as r:
            if not (await r.json())["running"]:
                return
        await asyncio.sleep(0.02)


def kill_under_load(cluster, subscribers: int = 300, events: int = 400, rate_hz: float = 100.0,
                    kill_worker: int = 2, kill_after: int = 100, progress=None):
    """`subscribers` feed WebSockets through the front door; worker 1 publishes `events` events;
    after `kill_after` of them worker `kill_worker` gets SIGKILL. Its subscribers reconnect (to
    the others) and resume with since=. Per subscriber: first worker, reconnects, received, lost
    (SEQs never received) and duplicated (SEQs received twice).

    The kill falls between two runs of the source (the first `kill_after` events, then the
    rest), while every subscriber is still connected: the killed worker's subscribers cannot
    have every event before it dies, however late this process reads its sockets (one burst
    with a timed kill let a loaded machine deliver all events first)."""
    publisher = cluster.worker(1).url
    first = max(1, min(kill_after, events - 1))

    async def go():
        async with aiohttp.ClientSession() as session:
            base = await _feed_last_seq(session, publisher)
            subs = [_Subscriber(cluster.ws_url, base) for _ in range(subscribers)]
            deadline = time.monotonic() + events / rate_hz + 60
            tasks = [asyncio.create_task(s.run(base + events, deadline)) for s in subs]
            while sum(bool(s.workers) for s in subs) < subscribers and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            ticker = asyncio.create_task(_report_every(PROGRESS_EVERY_S, progress, lambda: (
                f"{sum(len(s.seqs) for s in subs):,} of {subscribers * events:,} deliveries so "
                f"far; {sum(s.reconnects for s in subs)} reconnects"))) if progress else None
            try:
                if progress is not None:
                    progress(f"{subscribers} subscribers connected; publishing {events} events "
                             f"at {rate_hz:g}/s")
                await _publish(session, publisher, rate_hz, first, seed=7)
                await asyncio.to_thread(cluster.kill, kill_worker)
                if progress is not None:
                    progress(f"worker {kill_worker} killed (SIGKILL) after event {first}")
                await _publish(session, publisher, rate_hz, events - first, seed=None)
                await asyncio.gather(*tasks)
            finally:
                if ticker is not None:
                    ticker.cancel()
                for task in tasks:
                    task.cancel()
        expected = set(range(base + 1, base + events + 1))
        return [{"subscriber": i + 1, "first_worker": s.workers[0] if s.workers else None,
                 "reconnects": s.reconnects, "received": len(s.seqs),
                 "lost": len(expected - set(s.seqs)), "duplicated": len(s.seqs) - len(set(s.seqs)),
                 "in_order": s.seqs == sorted(s.seqs), "gap_notices": s.gaps}
                for i, s in enumerate(subs)]

    return _frame(_run(go(), timeout=events / rate_hz + 180))


# -- throughput -----------------------------------------------------------------------------------
LOAD_PROCESSES = 2
"""Load generator processes of `rest_rate` (each its own interpreter, never this kernel)."""


async def _hammer(urls: list[str], seconds: float, concurrency: int, path: str) -> int:
    """Keep-alive GETs of `path`, `concurrency` connections back to back for `seconds`: count."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    done = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        stop_at = time.perf_counter() + seconds

        async def loop(url):
            nonlocal done
            while time.perf_counter() < stop_at:
                async with session.get(url + path) as r:
                    await r.read()
                done += 1

        await asyncio.gather(*(loop(urls[i % len(urls)]) for i in range(concurrency)))
    return done


def _load_main(argv: list[str]) -> None:
    """One load generator process: wait for a line on stdin, hammer, print what it did (JSON)."""
    urls, seconds, concurrency, path = argv[0].split(","), float(argv[1]), int(argv[2]), argv[3]
    print("ready", flush=True)
    sys.stdin.readline()
    cpu, start = time.process_time(), time.perf_counter()
    done = asyncio.run(_hammer(urls, seconds, concurrency, path))
    print(json.dumps({"done": done, "elapsed_s": time.perf_counter() - start,
                      "cpu_s": time.process_time() - cpu}), flush=True)


def _cpu_s(pid: int) -> float:
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def _wait_ready(gens: list, what: str) -> None:
    """Wait for each load process (subprocess.Popen) to print "ready" (its connections are open)."""
    for gen in gens:
        assert gen.stdout is not None
        if gen.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{what} did not start")


def _end_load(gens: list, timeout: float = 30.0) -> None:
    """Wait for the load processes (subprocess.Popen) to end (each has reported, or failed before
    "ready"); one that does not end within `timeout` s is killed, so a run never leaves one
    behind."""
    import subprocess

    for gen in gens:
        try:
            gen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            gen.kill()
            gen.communicate()


def _thread_cpu_s(native_id: int | None) -> float:
    """CPU seconds of one thread of this process (the front door's), 0 if unknown."""
    import psutil

    if native_id is None:
        return 0.0
    for thread in psutil.Process().threads():
        if thread.id == native_id:
            return thread.user_time + thread.system_time
    return 0.0


def rest_rate(target, seconds: float = 3.0, concurrency: int = 24, path: str = "/api/notes",
              direct: bool = False, processes: int = LOAD_PROCESSES) -> dict:
    """REST requests per second: `concurrency` keep-alive connections (split over `processes`
    load generator processes, none of them this kernel) each sending GET `path` back to back,
    through the front door (spread when they open), or with `direct=True` (a cluster only)
    straight to the workers' own ports, shared out evenly (no front door).

    Returns requests_per_s and the CPU each part spent per request, in ms: the workers (all
    together), the front door (its thread in this kernel; 0 when direct), the load generators
    (all together); and busy_cores, the CPU seconds of all of them per wall-clock second."""
    import subprocess

    urls = [w.url for w in target.workers] if direct else [target.url]
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    gens = [subprocess.Popen(
        [sys.executable, "-c", "import sys; from labkit.lessons.scaling import _load_main; "
         "_load_main(sys.argv[1:])", ",".join(urls), str(seconds), str(share), path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for share in shares if share]
    try:
        _wait_ready(gens, "a load generator")
        front = getattr(target, "front", None)
        front_thread = getattr(front, "thread_id", None)
        pids = [w.pid for w in target.workers]
        workers_before = sum(_cpu_s(pid) for pid in pids)
        front_before = 0.0 if direct else _thread_cpu_s(front_thread)
        start = time.perf_counter()
        for gen in gens:
            assert gen.stdin is not None
            gen.stdin.write("go\n")
            gen.stdin.flush()
        reports = []
        for gen in gens:
            assert gen.stdout is not None
            reports.append(json.loads(gen.stdout.readline()))
        wall = time.perf_counter() - start
        workers_cpu = sum(_cpu_s(pid) for pid in pids) - workers_before
        front_cpu = 0.0 if direct else _thread_cpu_s(front_thread) - front_before
    finally:
        _end_load(gens)
    done = sum(r["done"] for r in reports)
    load_cpu = sum(r["cpu_s"] for r in reports)
    elapsed = max(r["elapsed_s"] for r in reports)
    per = 1000 / max(done, 1)
    return {"requests_per_s": done / elapsed,
            "cpu_ms_workers": workers_cpu * per, "cpu_ms_front_door": front_cpu * per,
            "cpu_ms_load": load_cpu * per,
            "busy_cores": (workers_cpu + front_cpu + load_cpu) / wall}


def throughput(sizes=(1, 2, 3), seconds: float = 3.0, concurrency: int = 24, direct: bool = False,
               progress=None):
    """REST requests/s with 1, 2, 3 workers (a fresh cluster each, no backplane), through the
    front door (or `direct` to the workers), load generated by LOAD_PROCESSES processes of their
    own. Rows: workers, requests_per_s, the CPU ms per request of the workers, the front door and
    the load generators, busy_cores (CPU seconds of all of them per second), cores (this
    machine's), load_1min (the machine's load average after the run: other programs count), via."""
    from labkit.cluster import Cluster

    rows = []
    for n in sizes:
        if progress is not None:
            progress(f"starting {n} worker(s), then measuring for {seconds:g} s ...")
        with Cluster(n) as cluster:
            rest_rate(cluster, 0.3, concurrency, direct=direct)  # warm-up, not counted
            if progress is not None:
                progress(f"{n} worker(s) up and warmed; measuring ...")
            rate = rest_rate(cluster, seconds, concurrency, direct=direct)
        rows.append({"workers": n, "requests_per_s": round(rate["requests_per_s"]),
                     "cpu_ms_workers": round(rate["cpu_ms_workers"], 3),
                     "cpu_ms_front_door": round(rate["cpu_ms_front_door"], 3),
                     "cpu_ms_load": round(rate["cpu_ms_load"], 3),
                     "busy_cores": round(rate["busy_cores"], 2), "cores": os.cpu_count(),
                     "load_1min": round(os.getloadavg()[0], 2),
                     "via": "direct" if direct else "front door"})
        if progress is not None:
            progress(f"{n} worker(s): {rate['requests_per_s']:.0f} requests/s, "
                     f"{rate['busy_cores']:.1f} cores busy")
    return _frame(rows)


def throughput_story(rates) -> str:
    """What a `throughput` frame says, in words computed from it: the speed-up, the CPU a request
    costs each part, and whether the cores were the limit."""
    first, last = rates.iloc[0], rates.iloc[-1]
    cores = int(first["cores"])
    gain = last["requests_per_s"] / first["requests_per_s"]
    cost = {part: float(last[f"cpu_ms_{key}"]) for part, key in
            (("the workers", "workers"), ("the front door", "front_door"),
             ("the load generators", "load"))}
    total = sum(cost.values())
    parts = ", ".join(f"{part} {ms:.2f} ms" for part, ms in cost.items())
    ceiling = cores * 1000 / total if total > 0 else float("nan")
    text = (f"{int(first['workers'])} → {int(last['workers'])} workers: "
            f"{first['requests_per_s']:,} → {last['requests_per_s']:,} requests/s "
            f"({gain:.2f}×). With {int(last['workers'])} workers one request cost {parts} of CPU "
            f"({total:.2f} ms in all), so {cores} cores can carry at most about {ceiling:,.0f} "
            f"requests/s; the run kept {last['busy_cores']:.1f} of {cores} cores busy. ")
    if last["busy_cores"] >= 0.85 * cores:
        text += ("The cores were the limit: more worker processes share the same cores, and the "
                 "load generators and the front door take their share of them too.")
    else:
        text += (f"Not every core was busy with this experiment (load average {last['load_1min']:g}: "
                 "other programs on the machine count too), so part of the limit was elsewhere: "
                 "connections waiting on each other, or the front door's single thread.")
    return text


def redis_ready() -> bool:
    """Whether the Redis parts can run here; if not, print once what to install (never raise)."""
    from labkit.cluster import INSTALL_HELP, available

    if available():
        return True
    print(INSTALL_HELP)
    return False


def one_order(frame) -> bool:
    """Whether every member of a `chat_across` frame saw the same messages in the same order."""
    return len({tuple(order) for order in frame["order"]}) == 1


def websocket_workers(target, sockets: int = 6, messages: int = 3):
    """Open `sockets` chat WebSockets through the front door and send `messages` messages on
    each: the worker named by the upgrade's Lab-Worker header and by the welcome, per socket.
    One socket is one TCP connection, so everything on it stays with that worker."""

    async def go():
        rows = []
        for s in range(sockets):
            header_worker, ws = await open_websocket(f"{target.ws_url}/ws/chat?name=socket{s + 1}")
            welcome = json.loads(await ws.recv())
            for i in range(messages):
                await ws.send(json.dumps({"type": "message", "text": f"s{s}-{i}"}))
            rows.append({"socket": s + 1, "upgrade_answered_by": header_worker,
                         "welcome_worker": welcome["worker"], "messages_sent": messages})
            await ws.close()
        return rows

    return _frame(_run(go()))


def delay_summary(frame) -> dict:
    """Per path: n, median and the p99 of delay_ms (p90, named so, when n < 100)."""
    out = {}
    for path, delays in frame.groupby("path")["delay_ms"]:
        tail = "p99" if len(delays) >= 100 else "p90"
        out[path] = {"n": len(delays), "median_ms": round(float(delays.median()), 2),
                     f"{tail}_ms": round(float(delays.quantile(0.99 if tail == "p99" else 0.9)), 2)}
    return out


# -- the cluster figures of benchmarks/cluster.py and `labkit bench --cluster` ----------------------
class _FeedSubscriber(asyncio.Protocol):
    """One feed WebSocket of a fan-out load process: websockets' sans-I/O client parses frames in
    `data_received` (no task per socket); each text frame is kept with its arrival time.time()
    and decoded only after the run, so the subscriber side costs little per message."""

    def __init__(self, url: str, opened: asyncio.Future, arrived):
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        self.ws = ClientProtocol(parse_uri(url))  # no extensions offered: no compression
        self.opened, self.arrived = opened, arrived
        self.frames: list[tuple[float, bytes]] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Response

        now = time.time()
        self.ws.receive_data(data)
        for item in self.ws.events_received():
            if isinstance(item, Frame) and item.opcode is Opcode.TEXT:
                self.frames.append((now, bytes(item.data)))
                self.arrived()
            elif isinstance(item, Response) and not self.opened.done():
                self.opened.set_result(item.status_code)
        self._flush()

    def connection_lost(self, exc) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed before the handshake"))

    def _flush(self) -> None:
        for data in self.ws.data_to_send():
            if data and self.transport is not None:
                self.transport.write(data)


async def _fanout_subscribe(url: str, count: int, events: int, timeout: float) -> dict:
    """`count` feed subscribers on `url` (ws://host:port/ws/feed); "ready" once all are open;
    then wait for `events` events on each. Per SEQ: its ts and the last arrival (time.time())."""
    from websockets.uri import parse_uri

    loop = asyncio.get_running_loop()
    target = parse_uri(url)
    done = loop.create_future()
    left = [count * events]

    def arrived() -> None:
        left[0] -= 1
        if left[0] <= 0 and not done.done():
            done.set_result(None)

    subs: list[_FeedSubscriber] = []
    for first in range(0, count, 100):  # batches stay under the listen backlog
        batch = []
        for _ in range(first, min(count, first + 100)):
            opened: asyncio.Future = loop.create_future()

            def make(o: asyncio.Future = opened) -> _FeedSubscriber:
                return _FeedSubscriber(url, o, arrived)

            _t, sub = await loop.create_connection(make, target.host, target.port)
            batch.append(sub)
        if set(await asyncio.gather(*(s.opened for s in batch))) != {101}:
            raise RuntimeError("a feed WebSocket was refused")
        subs += batch
    print("ready", flush=True)
    cpu = time.process_time()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(done), timeout)
    cpu = time.process_time() - cpu
    ts: dict[int, float] = {}
    last: dict[int, float] = {}
    got: dict[int, int] = {}
    received = 0
    for sub in subs:
        for now, payload in sub.frames:
            event = json.loads(payload)
            if "seq" in event:
                received += 1
                ts[event["seq"]] = event["ts"]
                last[event["seq"]] = max(last.get(event["seq"], 0.0), now)
                got[event["seq"]] = got.get(event["seq"], 0) + 1
        if sub.transport is not None:
            sub.transport.close()
    return {"ts": ts, "last": last, "got": got, "received": received, "cpu_s": cpu}


def _last_arrival_delays(reports: list[dict], subscribers: int) -> tuple[list[float], int]:
    """From the load processes' reports: per event that all `subscribers` received, ms from its
    publish time until the last of them had it; and how many events some subscriber never got
    (left out: their "last arrival" is not known)."""
    ts = {int(q): t for r in reports for q, t in r["ts"].items()}
    last: dict[int, float] = {}
    got: dict[int, int] = {}
    for r in reports:
        for q, at in r["last"].items():
            last[int(q)] = max(last.get(int(q), 0.0), float(at))
        for q, n in r["got"].items():
            got[int(q)] = got.get(int(q), 0) + n
    complete = [q for q in sorted(ts) if got.get(q, 0) >= subscribers]
    return [(last[q] - ts[q]) * 1000 for q in complete], len(ts) - len(complete)


def _fanout_main(argv: list[str]) -> None:
    """One fan-out load process: subscribe (see `_fanout_subscribe`), print the result as JSON."""
    url, count, events, timeout = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    print(json.dumps(asyncio.run(_fanout_subscribe(url, count, events, timeout))), flush=True)


def fanout_run(cluster, subscribers: int, events: int, rate_hz: float = 10.0,
               processes: int = LOAD_PROCESSES) -> dict:
    """`subscribers` feed WebSockets through the front door, opened by `processes` load processes
    of their own (never this kernel, which runs the front door); worker 1 publishes `events`
    events at `rate_hz`. Returns delays_ms (per event that every subscriber received: from its
    publish time `ts` until the LAST subscriber had it), incomplete (events some subscriber never
    got, left out of delays_ms), received (events x subscribers that arrived), the CPU seconds each
    part spent during the events: workers, front door (its thread here), redis-server,
    subscribers (the load processes), and wall_s."""
    import subprocess

    import psutil

    timeout = events / rate_hz + 60
    shares = [subscribers // processes + (i < subscribers % processes) for i in range(processes)]
    gens = [subprocess.Popen(
        [sys.executable, "-c", "import sys; from labkit.lessons.scaling import _fanout_main; "
         "_fanout_main(sys.argv[1:])", f"{cluster.ws_url}/ws/feed", str(share), str(events),
         str(timeout)], stdout=subprocess.PIPE, text=True) for share in shares if share]
    reports = []
    try:
        _wait_ready(gens, "a fan-out load process")
        redis = getattr(cluster, "redis", None)
        redis_pids = [c.pid for c in psutil.Process(redis.pid).children()] if redis else []
        front_id = getattr(getattr(cluster, "front", None), "thread_id", None)
        pids = [w.pid for w in cluster.workers]
        before = (sum(_cpu_s(p) for p in pids), _thread_cpu_s(front_id),
                  sum(_cpu_s(p) for p in redis_pids))
        start = time.perf_counter()

        async def source() -> None:
            async with (aiohttp.ClientSession() as session,
                        session.post(f"{cluster.workers[0].url}/api/feed/source",
                                     json={"rate_hz": rate_hz, "ticks": events, "seed": 3}) as r):
                await r.read()

        _run(source())
        for gen in gens:
            assert gen.stdout is not None
            reports.append(json.loads(gen.stdout.readline()))
        wall = time.perf_counter() - start
        after = (sum(_cpu_s(p) for p in pids), _thread_cpu_s(front_id),
                 sum(_cpu_s(p) for p in redis_pids))
    finally:
        _end_load(gens)
    delays, incomplete = _last_arrival_delays(reports, subscribers)
    cpu = {part: b - a for part, a, b in zip(("workers", "front_door", "redis"), before, after,
                                             strict=True)}
    return {"delays_ms": delays, "incomplete": incomplete,
            "received": sum(r["received"] for r in reports), "wall_s": wall,
            "cpu_s": {**cpu, "subscribers": sum(r["cpu_s"] for r in reports)}}


def fanout_cpu_text(run: dict, events: int) -> str:
    """The CPU of a `fanout_run` per event, by part, as text ("workers 8.1, front door ...")."""
    return ", ".join(f"{part.replace('_', ' ')} {seconds * 1000 / max(events, 1):.1f}"
                     for part, seconds in run["cpu_s"].items())


def fanout_delays(cluster, subscribers: int, events: int, rate_hz: float = 10.0) -> list[float]:
    """Per event, ms from its publish time until the last of `subscribers` had it (`fanout_run`)."""
    return fanout_run(cluster, subscribers, events, rate_hz)["delays_ms"]


def front_door_rounds(seconds: float, rounds: int) -> dict[str, list[dict]]:
    """1 worker: `rest_rate` through the front door and straight to the worker, alternating
    `rounds` times (same cluster, same load generators): per path, one `rest_rate` per round."""
    from labkit.cluster import Cluster

    runs: dict[str, list[dict]] = {"front door": [], "direct": []}
    with Cluster(1) as one:
        rest_rate(one, 0.3)  # warm-up
        for _ in range(rounds):
            for name, direct in (("front door", False), ("direct", True)):
                runs[name].append(rest_rate(one, seconds, direct=direct))
    return runs


def _pct(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _spread(values) -> dict:
    """n, median and (n >= 100 only) the nearest-rank p99 of `values`."""
    return {"n": len(values), "median": statistics.median(values),
            "p99": _pct(values, 0.99) if len(values) >= 100 else None}


def cluster_figures(quick: bool = False, progress=None) -> list[dict]:
    """The figures of performance round 3 that need a cluster, each measured side by side in one
    run: front door / direct (req/s, 1 worker), Redis delivery minus in-process (ms), fan-out
    2 workers via Redis / 1 worker, KiB per idle WebSocket (compression off, and on after one
    message). Rows: figure, value, unit, goal, n, and the two sides (median, p99 or None); the
    fan-out row's `note` gives the CPU ms per event of each part (workers, front door, Redis,
    subscriber processes)."""
    from labkit.cluster import Cluster

    say = progress or (lambda _line: None)
    rows: list[dict] = []
    say("front door / direct ...")
    runs = front_door_rounds(1.0 if quick else 3.0, 2 if quick else 5)
    front = [r["requests_per_s"] for r in runs["front door"]]
    direct = [r["requests_per_s"] for r in runs["direct"]]
    rows.append({"figure": "REST through the front door / straight to the worker, 1 worker",
                 "value": statistics.median(front) / statistics.median(direct), "unit": "×",
                 "goal": "≥ 0.9", "a": _spread(front), "b": _spread(direct), "of": "req/s"})
    with Cluster(1) as one, Cluster(2, backplane="redis") as two:
        say("delivery through Redis ...")
        cost = backplane_cost(one, two, 100 if quick else 400)
        local = list(cost[cost["path"] == "in-process (one worker)"]["delay_ms"])
        redis = list(cost[cost["path"] == "worker 1 -> Redis -> worker 2"]["delay_ms"])
        rows.append({"figure": "chat delivery through Redis minus in-process, median",
                     "value": statistics.median(redis) - statistics.median(local), "unit": "ms",
                     "goal": "≤ +0.5 ms", "a": _spread(redis), "b": _spread(local), "of": "ms",
                     "note": "CPU ms per message: through Redis: " + per_message_text(
                         cost, "worker 1 -> Redis -> worker 2") + "; in-process: " +
                     per_message_text(cost, "in-process (one worker)")})
        subscribers, events = (200, 20) if quick else (1000, 100)
        say(f"fan-out to {subscribers} subscribers ...")
        fans = {"one": fanout_run(one, subscribers, events),
                "two": fanout_run(two, subscribers, events)}
        single, spread = fans["one"]["delays_ms"], fans["two"]["delays_ms"]
        both = min(len(single), len(spread)) >= 100
        rows.append({"figure": f"fan-out to {subscribers} subscribers, 2 workers via Redis / 1 "
                               f"worker, {'p99' if both else 'median (n < 100)'}",
                     "value": (_pct(spread, 0.99) / _pct(single, 0.99) if both
                               else statistics.median(spread) / statistics.median(single)),
                     "unit": "×", "goal": "≤ 1.1 (p99)", "a": _spread(spread), "b": _spread(single),
                     "of": "ms", "note": "CPU ms per event: " + "; ".join(
                         f"{name} {fanout_cpu_text(run, events)}" + (
                             f" ({run['incomplete']} events missed by some subscriber, left out)"
                             if run["incomplete"] else "")
                         for name, run in (("2 workers", fans["two"]), ("1 worker", fans["one"])))})
    counts = (0, 500, 1000) if quick else (0, 1000, 2000, 5000)
    for compression, goal in ((False, "≤ 12"), (True, "≤ 48")):
        say(f"idle memory, compression {'on' if compression else 'off'} ...")
        with Cluster(1) as fresh:
            frame = idle_memory(fresh.workers[0], counts, compression=compression, said_hello=True)
        rows.append({"figure": f"KiB per idle WebSocket (worker RSS), compression "
                               f"{'on' if compression else 'off'}, after one message",
                     "value": kib_per_connection(frame), "unit": "KiB", "goal": goal,
                     "kernel_tcp_kib": kernel_kib_per_connection(frame),
                     "kernel_slab_kib": kernel_kib_per_connection(frame, "kernel_slab_kib"),
                     "a": {"n": len(frame), "median": None, "p99": None}, "b": None, "of": ""})
    return rows


# -- figures (the kit's template: labkit.plots.base.finish) ---------------------------------------
def delay_figure(cost):
    """Box plot of the delivery delay per path (a `backplane_cost` frame)."""
    import plotly.express as px

    from labkit.plots.base import OKABE_ITO, finish

    fig = px.box(cost, x="path", y="delay_ms", color="path", points=False,
                 color_discrete_sequence=[OKABE_ITO["blue"], OKABE_ITO["orange"]])
    return finish(fig, "Delivery delay: in-process vs through Redis", "path",
                  "POST sent → WebSocket received (ms)", legend="path")


def memory_figure(memory):
    """Worker RSS against idle WebSockets, one line per compression setting (`idle_memory` rows)."""
    import plotly.express as px

    from labkit.plots.base import OKABE_ITO, finish

    fig = px.line(memory, x="connections", y="rss_kib", color="compression", markers=True,
                  color_discrete_map={"off": OKABE_ITO["blue"], "on": OKABE_ITO["vermillion"]})
    return finish(fig, "Worker memory vs idle WebSockets", "idle WebSockets (count)",
                  "worker RSS (KiB)", legend="compression")


def throughput_figure(rates):
    """Requests/s per worker count, and beside it the CPU one request cost each part (a
    `throughput` frame); whole worker counts on the axes."""
    from plotly.subplots import make_subplots

    from labkit.plots.base import OKABE_ITO, finish

    fig = make_subplots(rows=1, cols=2, subplot_titles=("requests per second",
                                                        "CPU per request (ms), by process"))
    workers = [int(w) for w in rates["workers"]]
    fig.add_bar(x=workers, y=rates["requests_per_s"], name="requests/s",
                marker_color=OKABE_ITO["blue"], row=1, col=1)
    for key, name, colour in (("workers", "workers", OKABE_ITO["bluish green"]),
                              ("front_door", "front door", OKABE_ITO["orange"]),
                              ("load", "load generators", OKABE_ITO["reddish purple"])):
        fig.add_bar(x=workers, y=rates[f"cpu_ms_{key}"], name=f"CPU: {name}",
                    marker_color=colour, row=1, col=2)
    fig.update_layout(barmode="stack")
    fig.update_xaxes(tickmode="array", tickvals=workers, ticktext=[str(w) for w in workers])
    fig.update_yaxes(title_text="CPU per request (ms)", row=1, col=2)
    fig.update_xaxes(title_text="worker processes (count)", row=1, col=2)
    return finish(fig, f"REST throughput vs workers ({int(rates['cores'].iloc[0])} cores)",
                  "worker processes (count)", "requests per second (1/s)", legend="measure")
