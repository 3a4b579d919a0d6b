"""How close does the emulator keep a 50 ms round trip when the machine is busy? Side by side, one run.

    python benchmarks/netem_fidelity.py [--n 300] [--rtt 50]

For each background load
  none          nothing else running in this process;
  busy thread   a pure-Python loop on a thread of this process (the kernel computing in a cell);
  busy process  a pure-Python loop in another process (one more core busy);
  busy thread, 0.5 ms switch   the busy thread with sys.setswitchinterval(0.0005) (default 5 ms):
                how much of what remains is threads of this process waiting for the GIL;
and each way of running the emulator
  thread        the link on a thread of this process (NetemProxy(process=False), as before);
  process       the link in its own process (NetemProxy's default),
it times `--n` WebSocket echo round trips (16 bytes, lock-step, after 10 dropped) through a profile
with `--rtt` ms of round trip, no jitter, no rate limit (the two emulators take turns, round trip
by round trip, so both meet the same noise), and prints the median, p90 and p99 of
(measured round trip - configured round trip), then ("late") the emulator's own timing error: how
late it wrote each chunk after its due time (NetemProxy.lateness_ms, both directions). Client and
lab server stay in this process in every case, so what a busy thread adds beyond "late" is theirs.
Last, the start-up time of a proxy (start() until it listens) in each mode.
Numbers are for this machine and this run (other programs share the cores); nothing here is a test.

    python benchmarks/netem_fidelity.py --model

times instead what the tests check only by order and by the emulator's counters (tests never assert
a timing): each claim of the delay model, its prediction and the measured time, once each: a new
connection without the handshake model (one round trip), ten pipelined messages (about one round
trip, not ten), a bandwidth-limited download (size / rate), a new connection's slow start (handshake
+ RFC 6928 windows), the same without slow start, the second answer on a kept-alive connection,
four downloads sharing one link, and a loss stall (round trip + RTO).
Run it with PYTHONPATH pointing at an older labkit to measure that one (modes it lacks are skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import threading
import time

from websockets.asyncio.client import connect

from labkit import _loop
from labkit.measure import percentile
from labkit.net.netem import KB, PROFILES, NetemProxy, Profile, Toxics, slow_start_rounds
from labkit.server.config import LabConfig
from labkit.server.runner import LabServer

WARMUP = 10
PAYLOAD = b"x" * 16


class BusyThread:
    """A pure-Python loop on a daemon thread: holds the GIL whenever the interpreter lets it."""

    def __enter__(self):
        self.running = True
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()
        return self

    def _spin(self):
        x = 0
        while self.running:
            x += 1

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


class BusyProcess:
    """A pure-Python loop in another process: one core kept busy."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


class Quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def proxy(lab, prof: Profile, mode: str) -> NetemProxy | None:
    try:
        return NetemProxy.for_lab(lab, prof, process=(mode == "process"))
    except TypeError:  # an older labkit: its proxy always ran on a thread
        return NetemProxy.for_lab(lab, prof) if mode == "thread" else None


def round_trips(urls: dict[str, str], n: int) -> dict[str, list[float]]:
    """Lock-step echoes over one WebSocket per URL, taking turns (the order swaps every round), so
    every URL meets the same background noise."""
    async def run():
        times = {name: [] for name in urls}
        sockets = {name: await connect(url, compression=None) for name, url in urls.items()}
        try:
            for i in range(WARMUP + n):
                names = list(sockets) if i % 2 else list(reversed(sockets))
                for name in names:
                    started = time.perf_counter_ns()
                    await sockets[name].send(PAYLOAD)
                    await sockets[name].recv()
                    if i >= WARMUP:
                        times[name].append((time.perf_counter_ns() - started) / 1e6)
        finally:
            for ws in sockets.values():
                await ws.close()
        return times

    return _loop.run(run(), timeout=900)


class FastSwitch:
    """A busy thread, with the interpreter's GIL switch interval cut from 5 ms to 0.5 ms."""

    def __enter__(self):
        self.before = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)
        self.busy = BusyThread().__enter__()
        return self

    def __exit__(self, *exc):
        self.busy.__exit__(*exc)
        sys.setswitchinterval(self.before)


async def _get(net: NetemProxy, size: int, version: str = "1.0") -> float:
    """Seconds for GET /api/echo?size= on a new connection through `net`, connect to EOF."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(net.host, net.port)
    writer.write(f"GET /api/echo?size={size} HTTP/{version}\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await reader.read()
    writer.close()
    return time.perf_counter() - started


def model(lab) -> None:
    """Each claim of the delay model: predicted vs measured (ms), one run each."""
    inter = PROFILES["intercontinental"]
    rows = []

    def row(claim, predicted_ms, measured_s):
        rows.append((claim, predicted_ms, measured_s * 1000))

    with NetemProxy.for_lab(lab, Profile.symmetric("no-syn", 40), model_handshake=False) as net:
        row("new connection, no handshake model: 1 RTT", 40, min(_loop.run(_get(net, 0)) for _ in range(5)))

    async def burst(net):
        async with connect(net.url("ws", "/ws/echo"), compression=None) as ws:
            started = time.perf_counter()
            for i in range(10):
                await ws.send(f"m{i}")
            for _ in range(10):
                await ws.recv()
            return time.perf_counter() - started

    with NetemProxy.for_lab(lab, Profile("wild", Toxics(30, 15), Toxics(30, 15)), seed=3) as net:
        row("10 pipelined messages, 30+/-15 ms each way: ~1 RTT", 60, _loop.run(burst(net)))
    with NetemProxy.for_lab(lab, Profile("narrow", Toxics(), Toxics(rate=100))) as net:
        row("60 kB through 100 KB/s", 600, _loop.run(_get(net, 60_000)))
    with NetemProxy.for_lab(lab, inter) as net:
        row("256 kB, new connection, slow start: 1 + 5 RTT", (1 + slow_start_rounds(256_000)) * inter.rtt_ms,
            _loop.run(_get(net, 256_000), timeout=30))
    with NetemProxy.for_lab(lab, inter, slow_start=False) as net:
        link_ms = 256_000 / (inter.downstream.rate * KB) * 1000
        row("256 kB, no slow start: 2 RTT + link", 2 * inter.rtt_ms + link_ms,
            _loop.run(_get(net, 256_000), timeout=30))

    async def twice(net, size=200_000):
        reader, writer = await asyncio.open_connection(net.host, net.port)
        times = []
        for _ in range(2):
            started = time.perf_counter()
            writer.write(f"GET /api/echo?size={size} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(size)
            times.append(time.perf_counter() - started)
        writer.close()
        return times

    with NetemProxy.for_lab(lab, inter) as net:
        first, second = _loop.run(twice(net), timeout=30)
    row("200 kB, kept alive, first answer: 1 + 5 RTT", 6 * inter.rtt_ms, first)
    row("200 kB, kept alive, second answer: fewer RTT", 2 * inter.rtt_ms, second)

    async def parallel(net):
        started = time.perf_counter()
        await asyncio.gather(*(_get(net, 100_000) for _ in range(4)))
        return time.perf_counter() - started

    with NetemProxy.for_lab(lab, Profile("narrow", Toxics(), Toxics(rate=400))) as net:
        row("4 x 100 kB sharing 400 KB/s", 1000, _loop.run(parallel(net), timeout=60))

    async def lossy(net):
        async with connect(net.url("ws", "/ws/echo"), compression=None, ping_interval=None) as ws:
            spans = []
            for i in range(30):
                started = time.perf_counter()
                await ws.send(f"m{i:03d}")
                await ws.recv()
                spans.append(time.perf_counter() - started)
            return spans

    with NetemProxy.for_lab(lab, Profile.symmetric("loss", 20)).toxic(
            "loss", probability=0.15, rto_ms=300, seed=5) as net:
        spans = _loop.run(lossy(net), timeout=60)
    row("a round trip hit by a loss: RTT + RTO (slowest of 30)", 320, max(spans))
    print(f"{'claim of the delay model':<56}{'predicted':>10}{'measured':>10}  (ms)")
    for claim, predicted, measured in rows:
        print(f"{claim:<56}{predicted:10.0f}{measured:10.0f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="round trips per cell (>= 100 for p99)")
    parser.add_argument("--rtt", type=float, default=50.0, help="configured round trip in ms")
    parser.add_argument("--model", action="store_true", help="time each claim of the delay model instead")
    args = parser.parse_args(argv)
    if args.model:
        with tempfile.TemporaryDirectory() as tmp:
            lab = LabServer(LabConfig(db=f"{tmp}/lab.db")).start()
            try:
                model(lab)
            finally:
                lab.stop()
        return
    prof = Profile.symmetric("bench", args.rtt)
    loads = {"none": Quiet, "busy thread": BusyThread, "busy process": BusyProcess,
             "busy thread, 0.5 ms switch": FastSwitch}
    with tempfile.TemporaryDirectory() as tmp:
        lab = LabServer(LabConfig(db=f"{tmp}/lab.db")).start()
        try:
            print(f"WebSocket echo, {args.n} round trips per cell, configured RTT {args.rtt:g} ms; "
                  "figures are measured - configured, in ms")
            print(f"{'load':<28}{'emulator':<10}{'median':>8}{'p90':>8}{'p99':>8}{'max':>8}"
                  f"{'late p50':>10}{'late p99':>10}")
            for load_name, load in loads.items():
                nets = {mode: net for mode in ("thread", "process")
                        if (net := proxy(lab, prof, mode)) is not None}
                for net in nets.values():
                    net.start()
                try:
                    with load():
                        times = round_trips({m: n.url("ws", "/ws/echo") for m, n in nets.items()},
                                            args.n)
                finally:
                    for net in nets.values():
                        net.stop()
                for mode, net in nets.items():
                    extra = [t - args.rtt for t in times[mode]]
                    late = getattr(net, "lateness_ms", None)  # older labkit: not recorded
                    late = late["up"] + late["down"] if late else []
                    print(f"{load_name:<28}{mode:<10}{percentile(extra, 50):8.2f}"
                          f"{percentile(extra, 90):8.2f}{percentile(extra, 99):8.2f}{max(extra):8.2f}"
                          + (f"{percentile(late, 50):10.2f}{percentile(late, 99):10.2f}" if late else ""))
            for mode in ("thread", "process"):
                starts = []
                for _ in range(10):
                    net = proxy(lab, prof, mode)
                    if net is None:
                        break
                    started = time.perf_counter()
                    with net:
                        starts.append((time.perf_counter() - started) * 1000)
                if starts:
                    print(f"start-up ({mode}): median {percentile(starts, 50):.1f} ms, "
                          f"max {max(starts):.1f} ms over {len(starts)} starts")
        finally:
            lab.stop()


if __name__ == "__main__":
    main()
