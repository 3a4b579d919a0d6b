"""Cluster benchmark: REST throughput per worker count, the Redis hop, fan-out, idle memory.

    .venv/bin/python benchmarks/cluster.py [--quick]

Prints, from one run (so the ratios compare like with like):
- REST requests/s through the front door with 1, 2, 3 workers (and the machine's core count);
- chat delivery delay (POST sent -> WebSocket received) in-process vs worker 1 -> Redis -> worker 2,
  median and p99;
- fan-out: one feed event to 1,000 WebSocket subscribers, all on 1 worker without a backplane vs
  spread over 2 workers through Redis: per event, the delay until the LAST subscriber has it,
  median and p99;
- KiB per idle WebSocket on one worker, compression off and on.
Never pass/fail: numbers for the notes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit import _loop
from labkit.cluster import Cluster  # noqa: E402
from labkit.lessons import scaling  # noqa: E402


def pct(values, q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def fanout(cluster, subscribers: int, events: int, rate_hz: float = 2.0) -> list[float]:
    """Per event: ms from its publish time (ts) until the last subscriber received it."""

    async def go():
        opened = await asyncio.gather(*(scaling.open_websocket(f"{cluster.ws_url}/ws/feed")
                                        for _ in range(subscribers)))
        last_arrival: dict[int, float] = {}
        published: dict[int, float] = {}

        async def read(ws):
            got = 0
            while got < events:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if "seq" in msg:
                    got += 1
                    now = time.time()
                    published[msg["seq"]] = msg["ts"]
                    last_arrival[msg["seq"]] = max(last_arrival.get(msg["seq"], 0.0), now)

        readers = [asyncio.create_task(read(ws)) for _w, ws in opened]
        import aiohttp

        async with (aiohttp.ClientSession() as s,
                    s.post(f"{cluster.workers[0].url}/api/feed/source",
                           json={"rate_hz": rate_hz, "ticks": events, "seed": 3}) as r):
            await r.read()
        await asyncio.gather(*readers)
        await asyncio.gather(*(ws.close() for _w, ws in opened))
        return [(last_arrival[s] - published[s]) * 1000 for s in sorted(published)]

    return _loop.run(go(), timeout=300)


def line(name: str, values) -> str:
    return (f"{name:<42} n={len(values):>4}  median={statistics.median(values):7.2f} ms  "
            f"p99={pct(values, 0.99):7.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    quick = args.quick
    print("== REST throughput through the front door ==")
    for direct in (False, True):
        rates = scaling.throughput((1, 2, 3), seconds=1.0 if quick else 4.0, direct=direct)
        base = rates["requests_per_s"].iloc[0]
        for _, row in rates.iterrows():
            print(f"{row['via']:<10} {row['workers']} worker(s): {row['requests_per_s']:>6} req/s "
                  f" ({row['requests_per_s'] / base:.2f}x)  cores={row['cores']}")
    messages = 100 if quick else 400
    subscribers = 200 if quick else 1000
    events = 10 if quick else 30
    with Cluster(1) as one, Cluster(2, backplane="redis") as two:
        print("\n== delivery delay: POST sent -> WebSocket received ==")
        cost = scaling.backplane_cost(one, two, messages)
        medians = {}
        for path, delays in cost.groupby("path")["delay_ms"]:
            print(line(path, list(delays)))
            medians[path] = statistics.median(delays)
        extra = medians["worker 1 -> Redis -> worker 2"] - medians["in-process (one worker)"]
        print(f"Redis hop adds {extra:.2f} ms at the median")
        print(f"\n== fan-out of one event to {subscribers} subscribers (until the last has it) ==")
        single = fanout(one, subscribers, events)
        spread = fanout(two, subscribers, events)
        print(line("1 worker, in-process hub", single))
        print(line("2 workers through Redis", spread))
        print(f"p99 ratio (2 workers / 1 worker): {pct(spread, 0.99) / pct(single, 0.99):.2f}")
    print("\n== memory per idle WebSocket (one worker's RSS) ==")
    counts = (0, 500, 1000) if quick else (0, 1000, 2000, 5000)
    for compression in (False, True):
        for hello in (False, True):
            with Cluster(1) as fresh:  # a fresh worker per row: no memory left from the last one
                frame = scaling.idle_memory(fresh.workers[0], counts, compression=compression,
                                            said_hello=hello)
            print(f"compression {'on ' if compression else 'off'}, "
                  f"{'one message each' if hello else 'silent since the handshake':<26}: "
                  f"{scaling.kib_per_connection(frame):6.1f} KiB per connection  "
                  f"(RSS {frame['rss_kib'].iloc[0]:.0f} -> {frame['rss_kib'].iloc[-1]:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
