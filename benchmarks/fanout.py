"""Fan-out benchmark: one event to 1,000 WebSocket subscribers in another process.

    .venv/bin/python benchmarks/fanout.py [--subscribers 1000] [--events 100] [--rounds 2]
                                          [--throughput 100000]

Two servers are measured in the same run, in alternating rounds (Hub, baseline, Hub, baseline...)
so that a busy moment of the machine hits both alike:
- the lab's Hub (aiohttp, `WS /ws/feed`), events published with `Hub.publish`;
- the websockets library's own `broadcast()` (baseline).
Both send the same JSON event {"seq", "ts", "data"} of the same size, without compression, and
stamp `ts = time.time()` on the server loop right before the fan-out starts.

The subscriber process is the same code for both: 1,000 plain asyncio Protocols that parse frames
with the websockets library's sans-I/O `ClientProtocol` (no task per connection, no per-message
wake-up) and record `time.time()` when the bytes arrive; `ts` is decoded only after the run. The
fan-out time of an event is "last receipt minus ts" (same clock, same machine), reported as p50 and
p99 over all events of all rounds. Also printed: the server-side time of the fan-out call (Hub:
`publish`, baseline: `broadcast`; both hand every frame to the kernel before they return) and the
subscriber process's CPU use during a round (near 100 % means the subscriber is the bottleneck).
Then push throughput to one client (messages/s, measured by that client). Numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import threading
import time

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from labkit.measure import median, percentile

SPACING_S = 0.1
"""Time between two published events (the subscriber settles between events)."""
PAD = "x" * 64
"""Padding in each event's data, the same for both servers."""


# -- the subscriber side (runs in a child process) ------------------------------------------------
class Subscriber(asyncio.Protocol):
    """One WebSocket client: handshake and frame parsing by websockets' sans-I/O ClientProtocol;
    every text frame is kept as (receipt time.time(), payload bytes)."""

    def __init__(self, url: str, opened: asyncio.Future):
        self.ws = ClientProtocol(parse_uri(url))  # no extensions offered: no compression
        self.opened = opened
        self.received: list[tuple[float, bytes]] = []
        self.on_message = None

    def connection_made(self, transport):
        self.transport = transport
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data):
        now = time.time()
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    self.received.append((now, event.data))
                    if self.on_message is not None:
                        self.on_message()
            elif isinstance(event, Response) and not self.opened.done():
                self.opened.set_result(event.status_code)
        self._flush()

    def connection_lost(self, exc):
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed before the handshake"))

    def _flush(self):
        for data in self.ws.data_to_send():
            if data:
                self.transport.write(data)

    def close(self):
        self.ws.send_close()
        self._flush()
        self.transport.close()


async def open_subscribers(url: str, n: int) -> list[Subscriber]:
    loop = asyncio.get_running_loop()
    host, port = parse_uri(url).host, parse_uri(url).port
    subs: list[Subscriber] = []
    for start in range(0, n, 100):  # batches stay under the listen backlog
        batch = []
        for _ in range(start, min(n, start + 100)):
            opened = loop.create_future()
            _, sub = await loop.create_connection(lambda o=opened: Subscriber(url, o), host, port)
            batch.append(sub)
        codes = await asyncio.gather(*(s.opened for s in batch))
        assert set(codes) == {101}, codes
        subs += batch
    return subs


async def subscribe(url: str, n: int, events: int) -> None:
    subs = await open_subscribers(url, n)
    print("ready", flush=True)
    done = asyncio.get_running_loop().create_future()
    remaining = [n * events]

    def count():
        remaining[0] -= 1
        if remaining[0] == 0 and not done.done():
            done.set_result(None)

    for sub in subs:
        sub.on_message = count
    await asyncio.wait_for(done, 60 + events * SPACING_S * 3)
    cpu = time.process_time()
    latest: dict[int, float] = {}
    first_ts: dict[int, float] = {}
    in_order = True
    for sub in subs:
        seqs = []
        for now, payload in sub.received:
            event = json.loads(payload)
            seqs.append(event["seq"])
            latest[event["seq"]] = max(latest.get(event["seq"], 0.0), now - event["ts"])
            first_ts[event["seq"]] = event["ts"]
        in_order &= seqs == sorted(seqs) and len(seqs) == events
    span = max(first_ts.values()) - min(first_ts.values()) + SPACING_S
    print(json.dumps({"delays": [latest[s] for s in sorted(latest)], "in_order": in_order,
                      "cpu_s": cpu, "span_s": span}), flush=True)
    for sub in subs:
        sub.close()


async def drink(url: str, count: int) -> None:
    [sub] = await open_subscribers(url, 1)
    done = asyncio.get_running_loop().create_future()
    sub.on_message = lambda: len(sub.received) >= count and not done.done() and done.set_result(0)
    print("ready", flush=True)
    await asyncio.wait_for(done, 600)
    first, last = sub.received[0][0], sub.received[-1][0]
    seqs = [json.loads(p)["seq"] for _, p in sub.received]
    assert seqs == list(range(seqs[0], seqs[0] + count)), "lost or reordered events"
    print(json.dumps({"rate": count / (last - first), "cpu_s": time.process_time(),
                      "chunks": len({t for t, _ in sub.received})}), flush=True)
    sub.close()


def child(*args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def wait_until(condition, proc: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    """Poll `condition()` every 50 ms until it holds; raise if the subscriber process `proc` ends
    first or `timeout` seconds pass (a benchmark never hangs)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise RuntimeError(f"the subscriber process exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"no {what} within {timeout:g} s")
        time.sleep(0.05)


# -- the publishing side ------------------------------------------------------------------------
def run_round(url: str, n: int, events: int, subscribed, fan_out) -> dict:
    """Start a subscriber process on `url`, wait for n subscribers, call `fan_out(i)` (on the
    server loop; returns its own duration in s) for each event, collect the subscriber's report."""
    proc = child("--subscribe", url, str(n), str(events))
    wait_until(lambda: subscribed() >= n, proc, f"{n} subscribers")
    time.sleep(0.2)
    calls = []
    for i in range(events):
        calls.append(fan_out(i))
        time.sleep(SPACING_S)
    out = json.loads(proc.stdout.readline())
    proc.wait(30)
    out["call_s"] = calls
    return out


def hub_round(n: int, events: int) -> dict:
    from labkit.server.runner import LabServer
    from labkit.streaming.hub import HUB

    with LabServer() as lab:
        hub = lab.app[HUB]

        async def publish(i):
            t0 = time.perf_counter()
            hub.publish("feed", {"i": i, "pad": PAD})
            return time.perf_counter() - t0

        return run_round(lab.ws_url + "/ws/feed", n, events,
                         lambda: len(hub.topic("feed").subscribers),
                         lambda i: lab.call(publish(i), timeout=30))


def baseline_round(n: int, events: int) -> dict:
    from websockets.asyncio.server import broadcast, serve

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    clients: set = set()

    async def handler(conn):
        clients.add(conn)
        try:
            await conn.wait_closed()
        finally:
            clients.discard(conn)

    async def start():
        return await serve(handler, "127.0.0.1", 0, compression=None)

    async def send(i):
        t0 = time.perf_counter()
        broadcast(clients, json.dumps({"seq": i + 1, "ts": time.time(),
                                       "data": {"i": i, "pad": PAD}}, separators=(",", ":")))
        return time.perf_counter() - t0

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    port = server.sockets[0].getsockname()[1]
    try:
        return run_round(f"ws://127.0.0.1:{port}/", n, events, lambda: len(clients),
                         lambda i: asyncio.run_coroutine_threadsafe(send(i), loop).result(30))
    finally:
        server.close()
        asyncio.run_coroutine_threadsafe(server.wait_closed(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def hub_throughput(count: int) -> dict:
    from labkit.server.runner import LabServer
    from labkit.streaming.hub import HUB

    with LabServer() as lab:
        proc = child("--drink", lab.ws_url + "/ws/feed", str(count))
        topic = lab.app[HUB].topic("feed")
        wait_until(lambda: len(topic.subscribers) >= 1, proc, "a subscriber")

        async def pump():
            hub = lab.app[HUB]
            for i in range(count):
                hub.publish("feed", {"i": i})
                if i % 100 == 99:  # keep under the slow-consumer bound, as a real source would
                    while any(len(s) > 100 for s in topic.subscribers):
                        await asyncio.sleep(0)
        lab.call(pump(), timeout=300)
        out = json.loads(proc.stdout.readline())
        proc.wait(30)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100, help="events per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per server")
    parser.add_argument("--throughput", type=int, default=100_000)
    parser.add_argument("--subscribe", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--drink", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.subscribers)), hard))
    if args.subscribe:
        return asyncio.run(subscribe(args.subscribe[0], int(args.subscribe[1]),
                                     int(args.subscribe[2])))
    if args.drink:
        return asyncio.run(drink(args.drink[0], int(args.drink[1])))
    servers = {"labkit Hub (aiohttp)": hub_round, "websockets broadcast()": baseline_round}
    results: dict[str, list[dict]] = {name: [] for name in servers}
    for _ in range(args.rounds):
        for name, run in servers.items():
            results[name].append(run(args.subscribers, args.events))
    print(f"fan-out of one event to {args.subscribers} WebSocket subscribers in another process, "
          f"{args.rounds} x {args.events} events each (time until the last subscriber has it)")
    rows = {}
    for name, rounds in results.items():
        delays = [d * 1000 for r in rounds for d in r["delays"]]
        calls = [c * 1000 for r in rounds for c in r["call_s"]]
        cpu = sum(r["cpu_s"] for r in rounds) / sum(r["span_s"] for r in rounds)
        ok = all(r["in_order"] for r in rounds)
        rows[name] = (percentile(delays, 50), percentile(delays, 99))
        print(f"  {name:<24} p50 {rows[name][0]:7.2f} ms   p99 {rows[name][1]:7.2f} ms   "
              f"server call p50 {median(calls):6.2f} ms   "
              f"subscriber CPU {cpu:4.0%}   all in order: {ok}")
    (h50, h99), (b50, b99) = rows.values()
    print(f"  ratio Hub / baseline      p50 {h50 / b50:5.2f} x    p99 {h99 / b99:5.2f} x")
    out = hub_throughput(args.throughput)
    print(f"push throughput to one client: {out['rate']:,.0f} messages/s ({args.throughput} "
          f"messages; they arrived in {out['chunks']} reads)")


if __name__ == "__main__":
    main()
