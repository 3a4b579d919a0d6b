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
Run it with PYTHONPATH pointing at an older labkit to measure that one (modes it lacks are skipped).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time

from websockets.asyncio.client import connect

from labkit import _loop
from labkit.measure import percentile
from labkit.net.netem import NetemProxy, Profile
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="round trips per cell (>= 100 for p99)")
    parser.add_argument("--rtt", type=float, default=50.0, help="configured round trip in ms")
    args = parser.parse_args(argv)
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
