"""Server CPU per pushed event: SSE against WebSocket, measured side by side.

    .venv/bin/python benchmarks/push_cpu.py [--clients 50] [--seconds 3] [--rate 50] [--rounds 5]

Each round runs `labkit.clients.feed.server_costs` for SSE and WebSocket (plus its run with no
clients, subtracted), in alternating order, so that a busy moment of the machine hits both alike.
The CPU is the lab server thread's (time.thread_time); the clients run on another thread. Prints
per round and then the median over rounds of the server's µs per delivered event, and the ratio
SSE / WebSocket. Numbers only, never pass/fail.
"""

from __future__ import annotations

import argparse

from labkit.clients.feed import server_costs
from labkit.measure import median
from labkit.server.runner import start, stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    lab = start()
    per_event: dict[str, list[float]] = {"SSE": [], "WebSocket": []}
    try:
        for round_ in range(args.rounds):
            order = ("sse", "ws") if round_ % 2 == 0 else ("ws", "sse")
            costs = server_costs(lab, order, clients=args.clients, seconds=args.seconds,
                                 rate_hz=args.rate).set_index("transport")
            for name in per_event:
                per_event[name].append(costs.loc[name, "cpu_us_per_event"])
            print(f"round {round_ + 1}: " + ", ".join(
                f"{name} {values[-1]:.1f} µs/event" for name, values in per_event.items()))
    finally:
        stop()
    sse, ws = median(per_event["SSE"]), median(per_event["WebSocket"])
    print(f"median over {args.rounds} rounds ({args.clients} clients, {args.rate:g} events/s): "
          f"SSE {sse:.1f} µs/event, WebSocket {ws:.1f} µs/event, SSE / WebSocket {sse / ws:.2f}")


if __name__ == "__main__":
    main()
