"""Reliability costs, measured side by side in one run (lesson 07).

    python benchmarks/reliability.py [--runs 5] [--clients 300] [--storm-runs 3] [--posts 300]

1. Detection time of a blackholed WebSocket (netem "timeout" toxic) against the ping interval
   (ping timeout = interval): median and max of `--runs` blackholes per interval (too few for a
   p99), next to the bound interval + timeout + close timeout.
2. A reconnect storm: `--clients` WebSocket clients, the lab stopped for 1 s and started again on
   the same port, `--storm-runs` times without and with full jitter: attempts started in all, the
   peak of attempts started (and finished) per 100 ms, and the spread of the ratios over the runs.
3. The cost of an Idempotency-Key on POST /api/notes (SQLite, WAL): p50 and p99 of `--posts`
   POSTs with a fresh key each, interleaved with as many without a key, on one keep-alive
   connection; the ratio of the p50s.
Numbers are for this machine, this run; nothing here is a test.
"""

from __future__ import annotations

import argparse
import time
import uuid

import requests

from labkit.lessons import reliability
from labkit.measure import median, percentile
from labkit.net.netem import NetemProxy
from labkit.server.config import LabConfig
from labkit.server.runner import LabServer


def detection(lab, intervals=(0.2, 0.5, 1.0), runs: int = 5) -> None:
    print("1. detection of a blackholed WebSocket (ping timeout = ping interval)")
    print(f"   {'interval s':>10} {'median s':>9} {'max s':>7} {'bound s':>8} {'found':>6}")
    with NetemProxy.for_lab(lab).start() as net:
        for interval in intervals:
            found = [reliability.detection_run(lab, "ws", interval, limit_s=4 * interval + 2,
                                               net=net) for _ in range(runs)]
            times = [r["detect_s"] for r in found if r["detected"]]
            print(f"   {interval:>10g} {median(times):>9.3f} {max(times, default=float('nan')):>7.3f}"
                  f" {found[0]['budget_s']:>8.2f} {len(times):>3}/{runs}")


def storm(lab, clients: int, runs: int) -> None:
    print(f"2. reconnect storm: {clients} WebSocket clients, server down 1 s, {runs} runs each")
    storms = reliability.herd_runs(lab, clients, runs=runs, down_s=1.0, after_s=6.0)
    summary = reliability.herd_summary(storms, 0.1)
    for row in summary.to_dict("records"):
        print(f"   run {row['run']} {row['jitter']:>5} jitter: {row['attempts']:>5} attempts started, "
              f"peak {row['peak_started']:>4} started / {row['peak_finished']:>4} finished per 100 ms")
    print("   " + reliability.herd_text(summary, clients))


def idempotency_cost(lab, posts: int) -> None:
    print(f"3. POST /api/notes with and without an Idempotency-Key ({posts} each, interleaved)")
    times = {"without key": [], "with key": []}
    with requests.Session() as session:
        for _ in range(20):  # warm-up, dropped
            session.post(lab.url + "/api/notes", json={"title": "warm"})
        for i in range(posts):
            for label in (("without key", "with key") if i % 2 else ("with key", "without key")):
                headers = {"Idempotency-Key": f'"{uuid.uuid4()}"'} if label == "with key" else {}
                start = time.perf_counter_ns()
                r = session.post(lab.url + "/api/notes", json={"title": f"n{i}"}, headers=headers)
                times[label].append((time.perf_counter_ns() - start) / 1e6)
                assert r.status_code == 201, r.text
    for label, values in times.items():
        print(f"   {label:>12}: p50 {median(values):.3f} ms, p99 {percentile(values, 99):.3f} ms")
    print(f"   p50 ratio with / without: {median(times['with key']) / median(times['without key']):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--storm-runs", type=int, default=3)
    parser.add_argument("--posts", type=int, default=300)
    args = parser.parse_args()
    with LabServer(LabConfig()) as lab:
        detection(lab, runs=args.runs)
        storm(lab, args.clients, args.storm_runs)
        idempotency_cost(lab, args.posts)


if __name__ == "__main__":
    main()
