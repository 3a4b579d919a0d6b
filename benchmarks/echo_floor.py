"""How close is the lab server to the floor? Round trips measured side by side in one run.

    python benchmarks/echo_floor.py [--n 3000] [--rounds 3]

Every server runs on its own thread and event loop (as the lab does in a kernel); the client runs on
the main thread, with the same client code for a setup and its floor. Rounds interleave the setups so
that load on the machine hits all alike. Printed: n, p50 and p99 per setup, and the ratios the kit
cares about (p50 and p99 each):
  lab REST keep-alive GET / bare aiohttp app GET                 (goal: p50 <= 1.05)
  lab WebSocket echo / raw asyncio WebSocket echo on its own thread (goal: p50 <= 1.10)
  lab WebSocket echo / bare aiohttp WebSocket echo               (for reference)
plus `lk.start()` to the first answered request (goal <= 200 ms) and `import labkit`, the machine's
cores and load average. Numbers are for this machine, this run; nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import struct
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


class RawWebSocketEcho(asyncio.Protocol):
    """The floor of a WebSocket echo: asyncio's protocol callbacks, the RFC 6455 handshake and
    frame format done by hand, nothing else (no limits, no heartbeat, no fragmentation; a small
    unfragmented masked client frame in, the same payload unmasked out)."""

    GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def connection_made(self, transport) -> None:
        self.transport, self.buffer, self.open = transport, b"", False

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.open:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key:"))
            accept = base64.b64encode(hashlib.sha1(key + self.GUID).digest())
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                                 + b"\r\n\r\n")
            self.open, self.buffer = True, rest
        while len(self.buffer) >= 6:
            first, second = self.buffer[0], self.buffer[1] & 0x7F
            start = 2 + (2 if second == 126 else 8 if second == 127 else 0)
            if second == 126:
                second = struct.unpack_from("!H", self.buffer, 2)[0]
            elif second == 127:
                second = struct.unpack_from("!Q", self.buffer, 2)[0]
            end = start + 4 + second
            if len(self.buffer) < end:
                return
            mask = self.buffer[start:start + 4]
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.buffer[start + 4:end]))
            self.buffer = self.buffer[end:]
            if first & 0x0F == 8:  # close: answer it and stop
                self.transport.write(bytes([0x88, len(payload)]) + payload)
                self.transport.close()
                return
            size = (bytes([len(payload)]) if len(payload) < 126
                    else bytes([126]) + struct.pack("!H", len(payload)))
            self.transport.write(bytes([first]) + size + payload)


def start_raw_ws_server(host: ThreadedLoop) -> int:
    async def _start():
        server = await asyncio.get_running_loop().create_server(RawWebSocketEcho, "127.0.0.1", 0)
        return server.sockets[0].getsockname()[1]

    return host.run(_start())


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


def ratio_line(label: str, results: dict, setup: str, floor: str, goal: float | None) -> str:
    """`label`: p50 and p99 of `setup` over those of `floor`, and the p50 goal."""
    p50 = median(results[setup]) / median(results[floor])
    p99 = percentile(results[setup], 99) / percentile(results[floor], 99)
    aim = f"  (goal p50 <= {goal:.2f})" if goal is not None else ""
    return f"{label:<52} p50 {p50:5.2f}x  p99 {p99:5.2f}x{aim}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=3000, help="round trips per setup and round")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from labkit.server.runner import LabServer

    raw_host, raw_ws_host, bare_host = ThreadedLoop(), ThreadedLoop(), ThreadedLoop()
    raw_port, bare_port = start_raw_server(raw_host), start_bare_aiohttp(bare_host)
    raw_ws_port = start_raw_ws_server(raw_ws_host)
    lab = LabServer().start()
    setups = {
        "raw asyncio TCP echo": lambda: time_raw(raw_port, args.n, args.warmup),
        "bare aiohttp GET keep-alive": lambda: time_http(
            f"http://127.0.0.1:{bare_port}/echo", args.n, args.warmup
        ),
        "lab REST GET keep-alive": lambda: time_http(
            f"{lab.url}/api/echo?size=16", args.n, args.warmup
        ),
        "raw asyncio WS echo": lambda: time_ws(f"ws://127.0.0.1:{raw_ws_port}/", args.n,
                                               args.warmup),
        "bare aiohttp WS echo": lambda: time_ws(f"ws://127.0.0.1:{bare_port}/ws", args.n, args.warmup),
        "lab WS echo": lambda: time_ws(f"{lab.ws_url}/ws/echo", args.n, args.warmup),
    }
    results: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(args.rounds):  # interleave rounds so drift hits every setup alike
        for name, make in setups.items():
            results[name] += asyncio.run(make())
    lab.stop()
    for host in (raw_host, raw_ws_host, bare_host):
        host.close()

    print(f"cores: {os.cpu_count()}, load average before the startup runs: "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'setup':<32}{'n':>7}{'p50 ms':>10}{'p99 ms':>10}")
    for name, values in results.items():
        print(f"{name:<32}{len(values):>7}{median(values):>10.4f}{percentile(values, 99):>10.4f}")
    print()
    print(ratio_line("lab REST / bare aiohttp GET", results, "lab REST GET keep-alive",
                     "bare aiohttp GET keep-alive", 1.05))
    print(ratio_line("lab WS echo / raw asyncio WS echo", results, "lab WS echo",
                     "raw asyncio WS echo", 1.10))
    print(ratio_line("lab WS echo / bare aiohttp WS echo", results, "lab WS echo",
                     "bare aiohttp WS echo", None))
    t_import, t_start = startup_times()
    print(f"import labkit:                           {t_import * 1000:.1f} ms (median of 5)")
    print(f"lk.start() to first answered request:    {t_start * 1000:.1f} ms (median of 5, goal <= 200)")


if __name__ == "__main__":
    main()
