"""How close is the lab server to the floor? Round trips measured side by side in one run.

    python benchmarks/echo_floor.py [--n 3000] [--rounds 3]

Every server runs on its own thread and event loop (as the lab does in a kernel); the client runs on
the main thread, with the same client code for a setup and its floor. Each round runs the setups in
turn in ten short blocks, so that load on the machine hits all alike. Printed: n, p50 and p99 per
setup, and the ratios the kit cares about (p50 and p99 each):
  lab REST keep-alive GET / bare aiohttp app GET                 (goal: p50 <= 1.05)
  lab WebSocket echo / raw asyncio WebSocket echo on its own thread (goal: p50 <= 1.10)
  lab WebSocket echo / bare aiohttp WebSocket echo               (for reference)
  bare aiohttp WebSocket echo / raw asyncio                       (the library's own share)
plus `lk.start()` to the first answered request (goal <= 200 ms) and `import labkit`, the machine's
cores and load average. Numbers are for this machine, this run; nothing here is a test.
"""

from __future__ import annotations

import argparse
import os

from labkit.bench import OVERHEAD_PAIRS, overhead_rounds, startup_times
from labkit.measure import median, percentile


def ratio_line(label: str, results: dict, setup: str, floor: str, goal: float | None) -> str:
    """`label`: p50 and p99 of `setup` over those of `floor`, and the p50 goal."""
    p50 = median(results[setup]) / median(results[floor])
    aim = f"  (goal p50 <= {goal:.2f})" if goal is not None else ""
    if min(len(results[setup]), len(results[floor])) < 100:
        return f"{label:<52} p50 {p50:5.2f}x  p99 (n < 100){aim}"
    p99 = percentile(results[setup], 99) / percentile(results[floor], 99)
    return f"{label:<52} p50 {p50:5.2f}x  p99 {p99:5.2f}x{aim}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=3000, help="round trips per setup and round")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    results = overhead_rounds(args.n, args.warmup, args.rounds)
    print(f"cores: {os.cpu_count()}, load average: "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'setup':<32}{'n':>7}{'p50 ms':>10}{'p99 ms':>10}")
    for name, values in results.items():
        tail = f"{percentile(values, 99):>10.4f}" if len(values) >= 100 else f"{'-':>10}"
        print(f"{name:<32}{len(values):>7}{median(values):>10.4f}{tail}")
    print()
    for figure, setup, floor, goal in OVERHEAD_PAIRS:
        print(ratio_line(figure, results, setup, floor, goal))
    t_import, t_start, t_aiohttp = startup_times()
    print(f"import labkit:                           {t_import * 1000:.1f} ms (median of 5)")
    print(f"lk.start() to first answered request:    {t_start * 1000:.1f} ms (median of 5, goal <= 200)")
    print(f"  of which import aiohttp.web alone:     {t_aiohttp * 1000:.1f} ms (median of 5; "
          f"labkit's own share, a difference of medians of separate interpreters: "
          f"{(t_start - t_aiohttp) * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
