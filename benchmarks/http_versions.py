"""HTTP/1.1, HTTP/2, HTTP/3 and WebSocket side by side on the same emulated links, in one run.

    python benchmarks/http_versions.py [--profiles loopback,4g] [--losses 0,0.01,0.02] [--n 100]
                                       [--rounds 2]

For each link and loss rate, every pattern of lesson 10 (`labkit.lessons.beyond_http1.PATTERNS`,
and WebSocket over HTTP/2, `MORE_PATTERNS`)
sends N small requests (or messages), `rounds` times, the patterns interleaved within each round so
that load on the machine hits all alike. TCP patterns cross `NetemProxy` (loss: the modelled 200 ms
stall), HTTP/3 crosses `UdpLink` (loss: real dropped datagrams, QUIC recovers). Printed per
pattern: the median total for N (over the rounds), and the median and p99 of the per-request times
pooled over the rounds (p99 only when at least 100 were pooled), and each total's ratio to the
streamed WebSocket's on the same link and loss. Numbers are for this machine, this run; nothing
here is a test.
"""

from __future__ import annotations

import argparse
import os
import time

from labkit.lessons import beyond_http1 as h
from labkit.measure import median, percentile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", default="loopback,4g")
    parser.add_argument("--losses", default="0,0.01,0.02")
    parser.add_argument("--n", type=int, default=100, help="requests or messages per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    profiles = args.profiles.split(",")
    losses = [float(x) for x in args.losses.split(",")]

    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; N = {args.n}, "
          f"{args.rounds} rounds per pattern")
    servers = h.start()
    print(h.describe(servers))
    patterns = [p for p in [*h.PATTERNS, *h.MORE_PATTERNS] if servers.udp_port or not p.startswith("h3")]
    try:
        for profile in profiles:
            for loss in losses:
                started = time.perf_counter()
                totals: dict[str, list[float]] = {p: [] for p in patterns}
                latencies: dict[str, list[float]] = {p: [] for p in patterns}
                with h.links(servers, profile, loss, args.seed) as (net, link):
                    for _ in range(args.rounds):
                        for pattern in patterns:
                            run = h.run_pattern(pattern, net, link, args.n)
                            totals[pattern].append(run.total_s * 1000)
                            latencies[pattern] += [item.latency_s * 1000 for item in run.items]
                    stalls = len(net.losses)
                    dropped = sum(len(v) for v in link.dropped.values()) if link else 0
                base = median(totals["ws streamed"])
                print(f"\n{profile}, loss {loss:.0%}: {stalls} modelled TCP stalls, {dropped} "
                      f"datagrams dropped ({time.perf_counter() - started:.0f} s)")
                print(f"  {'pattern':<20} {'total (median)':>15} {'x ws streamed':>14} "
                      f"{'per request p50':>16} {'p99':>10} {'n':>6}")
                for pattern in patterns:
                    pooled = latencies[pattern]
                    p99 = (f"{percentile(pooled, 99):8.1f}ms" if len(pooled) >= 100
                           else "  (n<100)")
                    total = median(totals[pattern])
                    print(f"  {pattern:<20} {total:13.0f}ms {total / base:13.2f}x "
                          f"{median(pooled):14.1f}ms {p99:>10} {len(pooled):6d}")
    finally:
        servers.stop()


if __name__ == "__main__":
    main()
