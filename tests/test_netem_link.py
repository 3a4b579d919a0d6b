"""The emulator as a link: connections share its bandwidth, new connections pay slow start, and it runs
in its own process that never outlives its owner.

The model is checked by order (a transfer the model gives more round trips answers after one it gives
fewer, when both start at the same moment) and by the emulator's own counters, never against a
wall-clock bound; the measured round trips per transfer are printed by benchmarks/netem_fidelity.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from labkit import _loop
from labkit.net.netem import KB, MSS, PROFILES, NetemProxy, Profile, Toxics, slow_start_rounds


async def _get(net: NetemProxy, size: int, finished: list | None = None, name: str = "") -> bytes:
    """GET /api/echo?size= on a new connection through `net`: the answer, read to EOF. `name` is
    appended to `finished` at EOF (the order transfers ended in)."""
    reader, writer = await asyncio.open_connection(net.host, net.port)
    writer.write(f"GET /api/echo?size={size} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = await reader.read()
    if finished is not None:
        finished.append(name)
    writer.close()
    return data


def _rounds_by_hand(size: int) -> int:
    """RFC 6928 arithmetic: 10 segments of MSS bytes, then 20, 40, 80 ... per round trip."""
    window, sent, rounds = 10 * MSS, 0, 0
    while sent < size:
        sent, window, rounds = sent + window, window * 2, rounds + 1
    return rounds


def test_slow_start_rounds_follow_rfc_6928_arithmetic():
    assert slow_start_rounds(1) == 1
    assert MSS == 1448  # 1500 - IPv4 20 - TCP 20 - timestamps 12
    assert slow_start_rounds(10 * MSS) == 1  # the initial window
    assert slow_start_rounds(10 * MSS + 1) == 2
    assert slow_start_rounds(30 * MSS) == 2  # 10 + 20 segments
    assert slow_start_rounds(256_000) == _rounds_by_hand(256_000) == 5
    # once the window covers the bandwidth-delay product, the rest goes in one more round
    assert slow_start_rounds(10_000_000, bdp=50_000) == 3  # 14.5 k, 29 k, then the link's pace


def test_a_new_connection_pays_slow_start_round_trips(lab):
    """256 kB on a new intercontinental connection: the model gives it the handshake and five
    windows with slow start, the handshake and one with it off. Started at the same moment on two
    emulators, the one without slow start ends first; each paid one modelled handshake."""
    intercontinental = PROFILES["intercontinental"]
    size = 256_000
    bdp = intercontinental.downstream.rate * KB * intercontinental.rtt_ms / 1000
    assert size < bdp  # slow start never ends during this answer
    assert 1 + slow_start_rounds(size) == 1 + _rounds_by_hand(size) == 6
    finished: list[str] = []

    async def both(slow, quick):
        return await asyncio.gather(_get(slow, size, finished, "slow start"),
                                    _get(quick, size, finished, "no slow start"))

    with NetemProxy.for_lab(lab, intercontinental) as slow, \
            NetemProxy.for_lab(lab, intercontinental, slow_start=False) as quick:
        answers = _loop.run(both(slow, quick), timeout=30)
        handshakes = [list(slow.handshake_ms), list(quick.handshake_ms)]
    for data in answers:
        assert data.endswith(b"x" * size) and len(data) == data.index(b"\r\n\r\n") + 4 + size
    assert finished == ["no slow start", "slow start"]
    assert handshakes == [[1], [1]]


def test_a_kept_alive_connection_has_left_slow_start_behind(lab):
    """The window grows while it is used: the second large answer on a kept-alive connection ends
    before the same answer asked for at the same moment on a new connection (handshake, then the
    window from its start)."""
    intercontinental = PROFILES["intercontinental"]
    size = 200_000
    finished: list[str] = []

    async def race():
        reader, writer = await asyncio.open_connection(net.host, net.port)
        request = f"GET /api/echo?size={size} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        writer.write(request)
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(size)

        async def again():
            writer.write(request)
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(size)
            finished.append("kept alive")

        fresh = await asyncio.gather(again(), _get(net, size, finished, "new"))
        writer.close()
        return fresh[1]

    with NetemProxy.for_lab(lab, intercontinental) as net:
        data = _loop.run(race(), timeout=30)
        connections = len(net.connections)
    assert data.endswith(b"x" * size)
    assert connections == 2
    assert finished == ["kept alive", "new"]


def test_parallel_transfers_share_the_link(lab):
    """Four downloads through one 400 KB/s link together get 400 KB/s, not 4 x 400: the last of
    them ends after one download alone through an identical link started at the same moment (a
    per-connection cap would let all five end together)."""
    rate, size, count = 400, 100_000, 4
    narrow = Profile("narrow", Toxics(), Toxics(rate=rate))
    finished: list[str] = []

    async def race(shared, alone):
        return await asyncio.gather(*(_get(shared, size, finished, "shared") for _ in range(count)),
                                    _get(alone, size, finished, "alone"))

    with NetemProxy.for_lab(lab, narrow) as shared, NetemProxy.for_lab(lab, narrow) as alone:
        answers = _loop.run(race(shared, alone), timeout=60)
        carried = shared.bytes_down
    assert all(data.endswith(b"x" * size) for data in answers)
    assert carried == sum(len(data) for data in answers[:count])
    assert finished[-1] == "shared" and finished.count("shared") == count


def test_the_link_runs_in_its_own_process_and_stops_with_it(lab):
    net = NetemProxy.for_lab(lab, "4g").start()
    proc = net._backend.proc
    try:
        assert proc.pid != os.getpid() and proc.poll() is None
        data = _loop.run(_get(net, 10), timeout=10)
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
        data = _loop.run(_get(net, 100), timeout=10)
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
