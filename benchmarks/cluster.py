"""Cluster benchmark: REST throughput per worker count, the Redis hop, fan-out, idle memory.

    .venv/bin/python benchmarks/cluster.py [--quick]

Prints, from one run (so the ratios compare like with like), with the machine's cores and load:
- REST requests/s with 1, 2, 3 workers, through the front door and straight to the workers, the
  load coming from load generator processes of their own, with the CPU ms one request cost the
  workers, the front door and the load generators, and the cores they kept busy;
- front door / straight to the worker, 1 worker, alternating rounds: requests/s ratio (goal >= 0.9);
- chat delivery delay (POST sent -> WebSocket received) in-process vs worker 1 -> Redis -> worker 2,
  median and p99, and the difference (goal: median +0.5 ms at most), with the CPU ms per message
  of each process on the path and how long it waited for a core (Linux: runnable, no core free);
- fan-out: one feed event to 1,000 WebSocket subscribers (opened through the front door by load
  processes of their own), all on 1 worker without a backplane vs spread over 2 workers through
  Redis: per event, the delay until the LAST subscriber has it, median and p99, the p99 ratio
  (goal <= 1.1), and the CPU ms per event of the workers, the front door, redis-server and the
  subscriber processes;
- KiB per idle WebSocket on one worker, compression off and on, silent or after one message
  (goals: 12 KiB off, 48 KiB on after a message), and the kernel's TCP buffer memory beside it.
Percentiles are nearest-rank; a p99 is printed only where n >= 100. Never pass/fail.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit.cluster import Cluster  # noqa: E402
from labkit.lessons import scaling  # noqa: E402


def pct(values, q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def p99(values) -> str:
    """The p99 as text, or why there is none (fewer than 100 values)."""
    return f"{pct(values, 0.99):7.2f} ms" if len(values) >= 100 else "   (n < 100)"


fanout = scaling.fanout_run


def line(name: str, values) -> str:
    return (f"{name:<42} n={len(values):>4}  median={statistics.median(values):7.2f} ms  "
            f"p99={p99(values)}")


def front_door_ratio(seconds: float, rounds: int) -> None:
    """1 worker: requests/s through the front door and straight to it, alternating rounds."""
    runs = scaling.front_door_rounds(seconds, rounds)
    medians = {}
    for name, rates in runs.items():
        per_s = [r["requests_per_s"] for r in rates]
        medians[name] = statistics.median(per_s)
        cpu = statistics.median(r["cpu_ms_workers"] + r["cpu_ms_front_door"] for r in rates)
        print(f"{name:<12} req/s per round {[round(r) for r in per_s]}  median "
              f"{medians[name]:7.0f}  server CPU per request {cpu:.3f} ms")
    print(f"front door / direct, 1 worker (median req/s): "
          f"{medians['front door'] / medians['direct']:.2f}  (goal >= 0.9)")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: "
                        "throughput,frontdoor,delivery,fanout,memory")
    args = parser.parse_args()
    quick, skip = args.quick, set(filter(None, args.skip.split(",")))
    print(f"cores: {os.cpu_count()}, load average: "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if "throughput" not in skip:
        print("== REST throughput, load generators in their own processes ==")
        for direct in (False, True):
            rates = scaling.throughput((1, 2, 3), seconds=1.0 if quick else 4.0, direct=direct)
            print(rates.to_string(index=False))
            print(scaling.throughput_story(rates))
    if "frontdoor" not in skip:
        print("\n== front door / straight to the worker (1 worker) ==")
        front_door_ratio(1.0 if quick else 3.0, 2 if quick else 5)
    messages = 100 if quick else 400
    subscribers = 200 if quick else 1000
    events = 20 if quick else 100
    if not {"delivery", "fanout"} <= skip:
        with Cluster(1) as one, Cluster(2, backplane="redis") as two:
            if "delivery" not in skip:
                print("\n== delivery delay: POST sent -> WebSocket received ==")
                cost = scaling.backplane_cost(one, two, messages)
                medians, tails = {}, {}
                for path, delays in cost.groupby("path")["delay_ms"]:
                    print(line(path, list(delays)))
                    print(f"{'':<42} CPU ms per message: {scaling.per_message_text(cost, path)}")
                    medians[path] = statistics.median(delays)
                    tails[path] = pct(list(delays), 0.99)
                redis, local = "worker 1 -> Redis -> worker 2", "in-process (one worker)"
                print(f"Redis hop adds {medians[redis] - medians[local]:+.2f} ms at the median "
                      f"(goal <= +0.5 ms), {tails[redis] - tails[local]:+.2f} ms at p99; "
                      f"ratio {medians[redis] / medians[local]:.2f}x median")
            if "fanout" not in skip:
                print(f"\n== fan-out of one event to {subscribers} subscribers "
                      "(until the last has it) ==")
                runs = {"one": fanout(one, subscribers, events, rate_hz=10.0),
                        "two": fanout(two, subscribers, events, rate_hz=10.0)}
                single, spread = runs["one"]["delays_ms"], runs["two"]["delays_ms"]
                for name, run, values in (("1 worker, in-process hub", runs["one"], single),
                                          ("2 workers through Redis", runs["two"], spread)):
                    print(line(name, values))
                    print(f"{'':<42} CPU ms per event: {scaling.fanout_cpu_text(run, events)} "
                          f"({run['received']} of {subscribers * events} messages arrived)")
                ratio = statistics.median(spread) / statistics.median(single)
                tail = (f"p99 ratio {pct(spread, 0.99) / pct(single, 0.99):.2f} (goal <= 1.1)"
                        if min(len(single), len(spread)) >= 100 else "p99: n < 100")
                print(f"2 workers / 1 worker: median ratio {ratio:.2f}, {tail}")
    if "memory" not in skip:
        print("\n== memory per idle WebSocket (one worker's RSS; kernel TCP buffers apart) ==")
        counts = (0, 500, 1000) if quick else (0, 1000, 2000, 5000)
        for compression in (False, True):
            for hello in (False, True):
                with Cluster(1) as fresh:  # a fresh worker per row: no memory left from the last
                    frame = scaling.idle_memory(fresh.workers[0], counts, compression=compression,
                                                said_hello=hello)
                kernel = scaling.kernel_kib_per_connection(frame)
                slab = scaling.kernel_kib_per_connection(frame, "kernel_slab_kib")
                goal = (" (goal <= 48)" if compression and hello else
                        " (goal <= 12)" if not compression else "")
                print(f"compression {'on ' if compression else 'off'}, "
                      f"{'one message each' if hello else 'silent since the handshake':<26}: "
                      f"{scaling.kib_per_connection(frame):6.1f} KiB per connection{goal}  "
                      f"(RSS {frame['rss_kib'].iloc[0]:.0f} -> {frame['rss_kib'].iloc[-1]:.0f} "
                      f"KiB; kernel, both ends, whole machine: TCP buffers {kernel} KiB, slab "
                      f"{slab} KiB per connection)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
