"""What does the latency harness itself cost? Its round trips next to two floors, same run.

    python benchmarks/latency_overhead.py [--n 2000]

Measured on loopback, one after another in this process:
  floor       raw asyncio TCP echo (16 bytes out, 16 back), server on its own thread and loop;
  bare        a bare aiohttp app serving POST /api/echo and WS /ws/echo, nothing else, timed with
              the harness's own clients (lk.compare_transports, profile=None);
  kit direct  the lab server, lk.compare_transports(profile=None);
  kit proxy   the lab server through the netem proxy with the loopback profile (how the lesson
              measures, so bytes can be counted).
Printed: p50 and p99 per setup and transport, and the ratios kit / floor and kit / bare.
Numbers are for this machine and this run; nothing here is a test.
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

from aiohttp import WSMsgType, web
from echo_floor import PAYLOAD, ThreadedLoop, start_raw_server, time_raw

from labkit import _loop
from labkit.lessons.latency import compare_transports
from labkit.measure import percentile
from labkit.server.runner import LabServer

PAYLOAD_BYTES = len(PAYLOAD)


def raw_floor(n: int) -> list[float]:
    """Round trips (ms) of a raw asyncio TCP echo: the floor for any Python client and server
    (the same floor as benchmarks/echo_floor.py, whose server and client this reuses)."""
    host = ThreadedLoop()
    try:
        port = start_raw_server(host)
        return _loop.run(time_raw(port, n - n // 10, n // 10), timeout=120)
    finally:
        host.close()


def bare_app() -> tuple[ThreadedLoop, web.AppRunner, SimpleNamespace]:
    """A bare aiohttp app on the lab's echo paths (no middleware, no families)."""
    async def post_echo(request):
        return web.Response(body=await request.read(), content_type="application/octet-stream")

    async def ws_echo(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    app = web.Application()
    app.router.add_post("/api/echo", post_echo)
    app.router.add_get("/ws/echo", ws_echo)
    host = ThreadedLoop()
    runner = web.AppRunner(app, access_log=None)

    async def start():
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner.addresses[0][1]

    port = host.run(start())
    return host, runner, SimpleNamespace(host="127.0.0.1", port=port, config=None)


def stats(values) -> tuple[float, float]:
    return percentile(values, 50), percentile(values, 99)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="round trips per setup")
    n = parser.parse_args(argv).n
    warm = max(1, n // 10)
    transports = ["websocket", "rest-keepalive"]
    results: dict[tuple[str, str], tuple[float, float]] = {}

    results[("floor", "raw tcp")] = stats(raw_floor(n))
    host, runner, bare = bare_app()
    try:
        frame = compare_transports(bare, transports=transports, payloads=[PAYLOAD_BYTES],
                                   count=n, warmup=warm, profile=None, progress=False)
        for t, g in frame.groupby("transport"):
            results[("bare", t)] = stats(g["rtt_ms"])
    finally:
        host.run(runner.cleanup())
        host.close()
    with LabServer() as lab:
        for label, profile in (("kit direct", None), ("kit proxy", "loopback")):
            frame = compare_transports(lab, transports=transports, payloads=[PAYLOAD_BYTES],
                                       count=n, warmup=warm, profile=profile,
                                       progress=False)
            for t, g in frame.groupby("transport"):
                results[(label, t)] = stats(g["rtt_ms"])

    print(f"round trips on loopback, {PAYLOAD_BYTES}-byte payload, n={n} (after {warm} warm-up)")
    print(f"{'setup':<12} {'transport':<16} {'p50 µs':>9} {'p99 µs':>9}")
    for (setup, transport), (p50, p99) in results.items():
        print(f"{setup:<12} {transport:<16} {p50 * 1000:9.1f} {p99 * 1000:9.1f}")
    floor50, floor99 = results[("floor", "raw tcp")]
    print("\nratios (p50, p99)")
    for setup in ("kit direct", "kit proxy"):
        for t in transports:
            p50, p99 = results[(setup, t)]
            b50, b99 = results[("bare", t)]
            print(f"{setup:<12} {t:<16} / floor {p50 / floor50:5.2f} {p99 / floor99:5.2f}"
                  f"   / bare aiohttp {p50 / b50:5.2f} {p99 / b99:5.2f}")


if __name__ == "__main__":
    main()
