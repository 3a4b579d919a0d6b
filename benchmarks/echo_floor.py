"""How close is the lab server to the floor? Round trips measured side by side in one run.

    python benchmarks/echo_floor.py [--n 3000]

Every server runs on its own thread and event loop (as the lab does in a kernel); the client runs on
the main thread. Printed: p50 and p99 per setup, and the ratios the kit cares about:
  lab WebSocket echo p50 / raw asyncio TCP echo p50      (target <= 2.2)
  lab REST keep-alive GET p50 / bare aiohttp app GET p50 (target <= 1.15)
plus `lk.start()` time to first answered request and `import labkit` time.
Numbers are for this machine, this run; nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import threading
import time

import aiohttp
from aiohttp import web
from websockets.asyncio.client import connect

from labkit.measure import median, percentile

PAYLOAD = b"x" * 16


class ThreadedLoop:
    """An event loop on a daemon thread, to host a server the way the lab is hosted."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro):
        """Run `coro` on this loop and return its result (at most 30 s)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self):
        """Stop the loop and end its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def _raw_echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def start_raw_server(host: ThreadedLoop) -> int:
    async def _start():
        server = await asyncio.start_server(_raw_echo, "127.0.0.1", 0)
        return server.sockets[0].getsockname()[1]

    return host.run(_start())


def start_bare_aiohttp(host: ThreadedLoop) -> int:
    async def get(request):
        return web.Response(body=PAYLOAD, content_type="application/octet-stream")

    async def ws(request):
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type is aiohttp.WSMsgType.TEXT:
                await sock.send_str(msg.data)
        return sock

    async def _start():
        app = web.Application()
        app.router.add_get("/echo", get)
        app.router.add_get("/ws", ws)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner.addresses[0][1]

    return host.run(_start())


async def time_raw(port: int, n: int, warmup: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    for i in range(n + warmup):
        t = time.perf_counter_ns()
        writer.write(PAYLOAD)
        await writer.drain()
        await reader.readexactly(len(PAYLOAD))
        if i >= warmup:
            out.append((time.perf_counter_ns() - t) / 1e6)
    writer.close()
    return out


async def time_http(url: str, n: int, warmup: int) -> list[float]:
    out = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for i in range(n + warmup):
            t = time.perf_counter_ns()
            async with session.get(url) as reply:
                await reply.read()
            if i >= warmup:
                out.append((time.perf_counter_ns() - t) / 1e6)
    return out


async def time_ws(url: str, n: int, warmup: int) -> list[float]:
    out = []
    text = PAYLOAD.decode()
    async with connect(url, compression=None) as ws:
        for i in range(n + warmup):
            t = time.perf_counter_ns()
            await ws.send(text)
            await ws.recv()
            if i >= warmup:
                out.append((time.perf_counter_ns() - t) / 1e6)
    return out


def startup_times() -> tuple[float, float]:
    """(import labkit s, lk.start() to first answered request s), each in a fresh interpreter."""
    code_import = "import time; t=time.perf_counter(); import labkit; print(time.perf_counter()-t)"
    code_start = (
        "import time, urllib.request, labkit as lk; t=time.perf_counter(); lab=lk.start(); "
        "urllib.request.urlopen(lab.url + '/healthz').read(); print(time.perf_counter()-t); lab.stop()"
    )

    def median_of_5(code: str) -> float:
        runs = [float(subprocess.check_output([sys.executable, "-c", code])) for _ in range(5)]
        return median(runs)

    return median_of_5(code_import), median_of_5(code_start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=3000, help="round trips per setup (after warm-up)")
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args()

    from labkit.server.runner import LabServer

    raw_host, bare_host = ThreadedLoop(), ThreadedLoop()
    raw_port, bare_port = start_raw_server(raw_host), start_bare_aiohttp(bare_host)
    lab = LabServer().start()
    setups = {
        "raw asyncio TCP echo (floor)": lambda: time_raw(raw_port, args.n, args.warmup),
        "bare aiohttp GET keep-alive": lambda: time_http(
            f"http://127.0.0.1:{bare_port}/echo", args.n, args.warmup
        ),
        "lab REST GET keep-alive": lambda: time_http(
            f"{lab.url}/api/echo?size=16", args.n, args.warmup
        ),
        "bare aiohttp WS echo": lambda: time_ws(f"ws://127.0.0.1:{bare_port}/ws", args.n, args.warmup),
        "lab WS echo": lambda: time_ws(f"{lab.ws_url}/ws/echo", args.n, args.warmup),
    }
    results = {name: [] for name in setups}
    for _ in range(3):  # interleave rounds so drift hits every setup alike
        for name, make in setups.items():
            results[name] += asyncio.run(make())
    lab.stop()
    raw_host.close()
    bare_host.close()

    print(f"{'setup':<32}{'n':>7}{'p50 ms':>10}{'p99 ms':>10}")
    p50 = {}
    for name, values in results.items():
        p50[name] = median(values)
        print(f"{name:<32}{len(values):>7}{p50[name]:>10.4f}{percentile(values, 99):>10.4f}")
    ws_ratio = p50["lab WS echo"] / p50["raw asyncio TCP echo (floor)"]
    rest_ratio = p50["lab REST GET keep-alive"] / p50["bare aiohttp GET keep-alive"]
    print(f"\nlab WS echo / raw floor (p50):          {ws_ratio:.2f}x  (target <= 2.2)")
    print(f"lab REST / bare aiohttp GET (p50):       {rest_ratio:.2f}x  (target <= 1.15)")
    t_import, t_start = startup_times()
    print(f"import labkit:                           {t_import * 1000:.1f} ms (median of 5)")
    print(f"lk.start() to first answered request:    {t_start * 1000:.1f} ms (median of 5, target <= 300)")


if __name__ == "__main__":
    main()
