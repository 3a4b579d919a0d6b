"""Fan-out benchmark: one event to 1,000 WebSocket subscribers in another process.

    .venv/bin/python benchmarks/fanout.py [--subscribers 1000] [--events 200] [--throughput 100000]

Prints, for the lab's Hub (aiohttp) and for the websockets library's own `broadcast()` (baseline,
same subscriber process, same run): the time from publish (`ts`, time.time()) until the LAST
subscriber has the event, p50 and p99 over the events; then push throughput to one client (msgs/s).
Numbers only; never part of pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import threading
import time

from websockets.asyncio.client import connect

SPACING_S = 0.1
"""Time between two published events (the subscriber process must keep up with 1,000 copies)."""


# -- the subscriber side (runs in a child process) ------------------------------------------------
async def subscribe(url: str, n: int, events: int) -> None:
    conns = []
    for start in range(0, n, 100):
        conns += await asyncio.gather(*(connect(url, compression=None, open_timeout=60,
                                                max_queue=None)
                                        for _ in range(start, min(n, start + 100))))
    print("ready", flush=True)
    latest: dict[int, float] = {}

    async def read(conn):
        for _ in range(events):
            msg = await conn.recv()
            now = time.time()
            event = json.loads(msg)
            delay = now - event["ts"]
            if delay > latest.get(event["seq"], 0.0):
                latest[event["seq"]] = delay

    await asyncio.gather(*(read(c) for c in conns))
    print(json.dumps(sorted(latest.values())), flush=True)
    await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


async def drink(url: str, count: int) -> None:
    async with connect(url, compression=None, max_queue=None) as conn:
        print("ready", flush=True)
        first = None
        for _ in range(count):
            await conn.recv()
            first = first or time.perf_counter()
        print(json.dumps(count / (time.perf_counter() - first)), flush=True)


def child(*args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# -- the publishing side ------------------------------------------------------------------------
def hub_fanout(n: int, events: int) -> list[float]:
    from labkit.server.hub import HUB
    from labkit.server.runner import LabServer

    with LabServer() as lab:
        proc = child("--subscribe", lab.ws_url + "/ws/feed", str(n), str(events))
        while len(lab.app[HUB].topic("feed").subscribers) < n:
            time.sleep(0.05)
        for i in range(events):
            lab.app[HUB].publish("feed", {"i": i})
            time.sleep(SPACING_S)
        out = json.loads(proc.stdout.readline())
        proc.wait(30)
    return out


def baseline_fanout(n: int, events: int) -> list[float]:
    from websockets.asyncio.server import broadcast, serve

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    clients: set = set()

    async def handler(conn):
        clients.add(conn)
        try:
            await conn.wait_closed()
        finally:
            clients.discard(conn)

    async def start():
        return await serve(handler, "127.0.0.1", 0, compression=None)

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    port = server.sockets[0].getsockname()[1]
    proc = child("--subscribe", f"ws://127.0.0.1:{port}/", str(n), str(events))
    while len(clients) < n:
        time.sleep(0.05)
    for seq in range(1, events + 1):
        def send(seq=seq):
            broadcast(clients, json.dumps({"seq": seq, "ts": time.time(), "data": {"i": seq}},
                                          separators=(",", ":")))
        loop.call_soon_threadsafe(send)
        time.sleep(SPACING_S)
    out = json.loads(proc.stdout.readline())
    proc.wait(30)
    server.close()
    asyncio.run_coroutine_threadsafe(server.wait_closed(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    return out


def hub_throughput(count: int) -> float:
    from labkit.server.hub import HUB
    from labkit.server.runner import LabServer

    with LabServer() as lab:
        proc = child("--drink", lab.ws_url + "/ws/feed", str(count))
        topic = lab.app[HUB].topic("feed")
        while len(topic.subscribers) < 1:
            time.sleep(0.05)

        async def pump():
            hub = lab.app[HUB]
            for i in range(count):
                hub.publish("feed", {"i": i})
                if i % 100 == 99:  # keep under the slow-consumer bound, as a real source would
                    while any(len(s) > 100 for s in topic.subscribers):
                        await asyncio.sleep(0)
        lab.call(pump(), timeout=300)
        rate = json.loads(proc.stdout.readline())
        proc.wait(30)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200)
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
    rows = {}
    for name, run in (("labkit Hub (aiohttp)", hub_fanout), ("websockets broadcast()",
                                                             baseline_fanout)):
        delays = [d * 1000 for d in run(args.subscribers, args.events)]
        rows[name] = (percentile(delays, 0.5), percentile(delays, 0.99), statistics.mean(delays))
    print(f"fan-out of one event to {args.subscribers} WebSocket subscribers in another process, "
          f"{args.events} events (time until the last subscriber has it)")
    for name, (p50, p99, _) in rows.items():
        print(f"  {name:<24} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
    (h50, h99, _), (b50, b99, _) = rows.values()
    print(f"  ratio Hub / baseline      p50 {h50 / b50:5.2f} x    p99 {h99 / b99:5.2f} x")
    rate = hub_throughput(args.throughput)
    print(f"push throughput to one client: {rate:,.0f} messages/s ({args.throughput} messages)")


if __name__ == "__main__":
    main()
