"""The emulator as a link: connections share its bandwidth, new connections pay slow start, and it runs
in its own process that never outlives its owner.

Round trips are counted as measured time / configured round trip (150 ms on the intercontinental
profile): the count checks the model, with a whole round trip of slack for the machine.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from labkit import _loop
from labkit.net.netem import KB, PROFILES, NetemProxy, Profile, Toxics, slow_start_rounds


async def _get(net: NetemProxy, size: int) -> tuple[bytes, float]:
    """GET /api/echo?size= on a new connection through `net`: (answer, seconds from connect to EOF)."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(net.host, net.port)
    writer.write(f"GET /api/echo?size={size} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return data, time.perf_counter() - started


def _rounds_by_hand(size: int) -> int:
    """RFC 6928 arithmetic: 10 segments of 1460 bytes, then 20, 40, 80 ... per round trip."""
    window, sent, rounds = 10 * 1460, 0, 0
    while sent < size:
        sent, window, rounds = sent + window, window * 2, rounds + 1
    return rounds


def test_slow_start_rounds_follow_rfc_6928_arithmetic():
    assert slow_start_rounds(1) == 1
    assert slow_start_rounds(14_600) == 1  # the initial window
    assert slow_start_rounds(14_601) == 2
    assert slow_start_rounds(43_800) == 2  # 10 + 20 segments
    assert slow_start_rounds(256_000) == _rounds_by_hand(256_000) == 5
    # once the window covers the bandwidth-delay product, the rest goes in one more round
    assert slow_start_rounds(10_000_000, bdp=50_000) == 3  # 14.6 k, 29.2 k, then the link's pace


def test_a_new_connection_pays_slow_start_round_trips(lab):
    intercontinental = PROFILES["intercontinental"]
    size = 256_000
    with NetemProxy.for_lab(lab, intercontinental) as net:
        data, seconds = _loop.run(_get(net, size), timeout=30)
    assert data.endswith(b"x" * size) and len(data) == data.index(b"\r\n\r\n") + 4 + size
    bdp = intercontinental.downstream.rate * KB * intercontinental.rtt_ms / 1000
    assert len(data) < bdp  # slow start never ends during this answer
    # handshake (1) + request up and the first window down (1) + one more per further window
    predicted = 1 + _rounds_by_hand(len(data))
    measured = seconds * 1000 / intercontinental.rtt_ms
    assert predicted == 6
    assert abs(measured - predicted) <= 1, (measured, predicted)


def test_without_slow_start_the_same_answer_takes_two_round_trips(lab):
    intercontinental = PROFILES["intercontinental"]
    with NetemProxy.for_lab(lab, intercontinental, slow_start=False) as net:
        data, seconds = _loop.run(_get(net, 256_000), timeout=30)
    link = len(data) / (intercontinental.downstream.rate * KB)  # 20 ms on the link
    measured = (seconds - link) * 1000 / intercontinental.rtt_ms
    assert data.endswith(b"x" * 256_000)
    assert abs(measured - 2) <= 1, measured


def test_a_kept_alive_connection_has_left_slow_start_behind(lab):
    """The window grows while it is used; the second large answer on a connection goes faster."""
    intercontinental = PROFILES["intercontinental"]
    size = 200_000

    async def twice():
        reader, writer = await asyncio.open_connection(net.host, net.port)
        times, heads = [], []
        for _ in range(2):
            started = time.perf_counter()
            writer.write(f"GET /api/echo?size={size} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            heads.append(len(await reader.readuntil(b"\r\n\r\n")))
            await reader.readexactly(size)
            times.append((time.perf_counter() - started) * 1000 / intercontinental.rtt_ms)
        writer.close()
        return times, heads

    with NetemProxy.for_lab(lab, intercontinental) as net:
        (first, second), heads = _loop.run(twice(), timeout=30)
    # the first answer: handshake + five windows (14.6 k + 29.2 k + ... covers 200 kB)
    assert abs(first - (1 + _rounds_by_hand(size + heads[0]))) <= 1, first
    assert second <= first - 2, (first, second)  # the grown window carries it in fewer rounds


def test_parallel_transfers_share_the_link(lab):
    """Four downloads through one 400 KB/s link together get 400 KB/s, not 4 x 400."""
    rate, size, count = 400, 100_000, 4
    narrow = Profile("narrow", Toxics(), Toxics(rate=rate))

    async def parallel():
        started = time.perf_counter()
        answers = await asyncio.gather(*(_get(net, size) for _ in range(count)))
        return answers, time.perf_counter() - started

    with NetemProxy.for_lab(lab, narrow) as net:
        answers, seconds = _loop.run(parallel(), timeout=60)
        single, alone = _loop.run(_get(net, size), timeout=60)
    total = sum(len(data) for data, _ in answers)
    assert all(data.endswith(b"x" * size) for data, _ in answers)
    assert total == sum(data.index(b"\r\n\r\n") + 4 + size for data, _ in answers)
    # the aggregate cannot beat the configured rate (5 % for timer rounding) ...
    assert total / seconds <= 1.05 * rate * KB
    # ... and the last download ended only when the link had carried all four: a per-connection
    # cap would let all four end together after about the time one takes alone
    assert max(t for _, t in answers) > 0.9 * count * alone, ([t for _, t in answers], alone)
    assert len(single) / alone <= 1.05 * rate * KB


def test_the_link_runs_in_its_own_process_and_stops_with_it(lab):
    net = NetemProxy.for_lab(lab, "4g").start()
    proc = net._backend.proc
    try:
        assert proc.pid != os.getpid() and proc.poll() is None
        data, _ = _loop.run(_get(net, 10), timeout=10)
        assert data.endswith(b"xxxxxxxxxx")
        assert net.bytes_down == len(data)
    finally:
        net.stop()
    assert proc.poll() is not None  # gone, not orphaned
    assert net.bytes_down == len(data)  # what happened stays readable after stop()
    assert [c.id for c in net.connections] == [1]
    assert len(net.lateness_ms["down"]) >= 1  # the link's own timing error, per chunk written
    net.stop()  # twice is fine


def test_the_thread_mode_keeps_the_same_api(lab):
    with NetemProxy.for_lab(lab, Profile.symmetric("t", 20), process=False) as net:
        data, _ = _loop.run(_get(net, 100), timeout=10)
    assert data.endswith(b"x" * 100)
    assert net.bytes_down == len(data)
    assert list(net.handshake_ms) == [1]


@pytest.mark.parametrize("ending", [
    "os._exit(0)",  # no stop(), no finalizers: a killed kernel (its pipes close all the same)
    "sys.exit(0)",  # a kernel that exits without stop(): the finalizer ends the process
])
def test_the_link_process_ends_when_its_owner_dies(lab, ending):
    script = (
        "import os, sys\n"
        "from labkit.net.netem import NetemProxy\n"
        f"net = NetemProxy('127.0.0.1', {lab.port}, '4g').start()\n"
        "print(net._backend.proc.pid, flush=True)\n"
        f"{ending}\n"
    )
    owner = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    pid = int(owner.stdout.strip())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_port_in_use_is_reported(lab):
    with NetemProxy.for_lab(lab, "4g") as first, pytest.raises(OSError, match="cannot listen"):
        NetemProxy.for_lab(lab, "4g", port=first.port).start()
