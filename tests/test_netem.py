"""The network emulator: fidelity against its configured delays, pipelining, order, jitter seeds,
bandwidth, the modelled TCP handshake, and delayed bytes delivered before the close. The shared
link and slow start are in test_netem_link.py, the faults in test_netem_toxics.py.

Fidelity tests compare measured round trips with the delays the emulator was configured with
(tens of ms): they check the emulator, not the speed of the machine.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.asyncio.client import connect

from labkit import _loop
from labkit.lessons.latency import compare_transports
from labkit.measure import median
from labkit.net.netem import PROFILES, NetemProxy, Profile, Toxics, profile

RTT = 50.0


def test_profiles_have_sources_and_lookup_is_forgiving():
    for p in PROFILES.values():
        assert p.source
    assert profile("4G") is PROFILES["4g"]
    assert profile("Wi-Fi") is PROFILES["wifi"]
    assert profile(None) is PROFILES["loopback"]
    assert PROFILES["intercontinental"].rtt_ms > PROFILES["4g"].rtt_ms > PROFILES["wifi"].rtt_ms
    with pytest.raises(ValueError, match="unknown network profile"):
        profile("5g-ultra")


def test_fidelity_round_trips_match_the_configured_rtt(lab):
    # 16 round trips each. A busy machine only adds time, to some samples more than others: the
    # fastest tenth shows what the emulator itself adds (a wrong delay would move it), the median
    # gets more room for the neighbours of a shared machine
    frame = compare_transports(lab, profile=Profile.symmetric("fidelity", RTT), count=16,
                               warmup=2)
    rtt = {t: median(g["rtt_ms"]) for t, g in frame.groupby("transport")}
    fast = {t: g["rtt_ms"].quantile(0.1) for t, g in frame.groupby("transport")}
    for transport in ("websocket", "rest-keepalive"):
        assert fast[transport] == pytest.approx(RTT, rel=0.05), transport
        assert rtt[transport] == pytest.approx(RTT, rel=0.1), transport
    # a new connection pays the modelled TCP handshake, then the request: about two round trips
    assert 1.8 <= rtt["rest-new"] / RTT <= 2.4
    new = frame[frame.transport == "rest-new"]
    assert new["tcp_ms"].median() == pytest.approx(RTT, rel=0.1)


def test_without_handshake_model_a_new_connection_costs_one_round_trip(lab):
    net = NetemProxy.for_lab(lab, Profile.symmetric("no-syn", 40), model_handshake=False).start()

    async def one_request():
        reader, writer = await asyncio.open_connection(net.host, net.port)
        started = time.perf_counter()
        writer.write(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        data = await reader.read()
        writer.close()
        return data, (time.perf_counter() - started) * 1000

    try:
        answers = [_loop.run(one_request()) for _ in range(5)]
    finally:
        net.stop()
    assert all(data.startswith(b"HTTP/1.") and data.endswith(b'{"status": "ok"}')
               for data, _ in answers)
    # one round trip, not two: the fastest of five (a busy machine only ever adds time)
    assert min(elapsed for _, elapsed in answers) < 1.5 * 40
    assert net.handshake_ms == {i: 0.0 for i in range(1, 6)}


def test_delayed_bytes_arrive_before_the_close(lab):
    """HTTP/1.0: the server answers and closes at once; the delayed answer must still arrive."""
    with NetemProxy.for_lab(lab, Profile.symmetric("slow", 30)) as net:
        async def fetch():
            reader, writer = await asyncio.open_connection(net.host, net.port)
            writer.write(b"GET /api/echo?size=5000 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            data = await reader.read()  # until EOF
            writer.close()
            return data

        data = _loop.run(fetch())
        assert data.split(b"\r\n\r\n", 1)[1] == b"x" * 5000
        assert len(net.handshake_ms) == 1
        assert net.bytes_down == len(data)


def test_delays_pipeline_and_keep_order_under_jitter(lab):
    """Ten messages sent back to back come back in order after about one round trip, not ten."""
    wild = Profile("wild", Toxics(30, 15), Toxics(30, 15))
    with NetemProxy.for_lab(lab, wild, seed=3) as net:
        async def burst():
            async with connect(net.url("ws", "/ws/echo"), compression=None) as ws:
                started = time.perf_counter()
                for i in range(10):
                    await ws.send(f"m{i}")
                answers = [await ws.recv() for _ in range(10)]
                return answers, (time.perf_counter() - started) * 1000

        answers, elapsed = _loop.run(burst())
    assert answers == [f"m{i}" for i in range(10)]
    assert elapsed < 3 * (60 + 30)  # serialised delivery would take ~10 round trips


def _jitter_draws(lab, seed: int) -> tuple[list, list]:
    # 5 +/- 2 ms each way: round trips stay far above BURST_GAP, so every message gets its own draw
    jittery = Profile("j", Toxics(5, 2), Toxics(5, 2))
    with NetemProxy.for_lab(lab, jittery, seed=seed) as net:
        async def talk():
            async with connect(net.url("ws", "/ws/echo"), compression=None) as ws:
                for i in range(6):
                    await ws.send(f"{i}")
                    await ws.recv()

        _loop.run(talk())
        return list(net.delays_ms["up"]), list(net.delays_ms["down"])


def test_jitter_is_reproducible_with_a_seed(lab):
    first, again, other = (_jitter_draws(lab, s) for s in (7, 7, 8))
    assert first == again
    assert first != other
    up = first[0]
    assert len(set(up)) > 3
    assert all(3 <= d <= 7 for d in up)


def test_bandwidth_limit_shapes_a_large_transfer(lab):
    size, rate = 60_000, 100  # bytes, KB/s: 0.6 s of link time
    narrow = Profile("narrow", Toxics(), Toxics(rate=rate))
    with NetemProxy.for_lab(lab, narrow) as net:
        async def download():
            reader, writer = await asyncio.open_connection(net.host, net.port)
            started = time.perf_counter()
            writer.write(f"GET /api/echo?size={size} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            data = await reader.read()
            writer.close()
            return data, time.perf_counter() - started

        data, elapsed = _loop.run(download())
    expected = len(data) / (rate * 1000)
    assert data.endswith(b"x" * size)
    assert 0.9 * expected <= elapsed <= 1.5 * expected + 0.2


def test_a_client_that_hangs_up_mid_transfer_does_not_break_the_proxy(lab):
    """The client leaves while a throttled answer is still queued; the next client is served."""
    narrow = Profile("narrow", Toxics(), Toxics(latency=5, rate=50))
    with NetemProxy.for_lab(lab, narrow) as net:
        async def leave_early():
            reader, writer = await asyncio.open_connection(net.host, net.port)
            writer.write(b"GET /api/echo?size=200000 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            first = await reader.read(100)
            writer.transport.abort()  # reset, with most of the answer still queued
            return first

        async def health():
            reader, writer = await asyncio.open_connection(net.host, net.port)
            writer.write(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            data = await reader.read()
            writer.close()
            return data

        assert _loop.run(leave_early()).startswith(b"HTTP/1.")
        assert _loop.run(health(), timeout=10).endswith(b'{"status": "ok"}')
        deadline = time.monotonic() + 5
        while net.connections[0].closed_ns is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert net.connections[0].closed_ns is not None  # the cut connection was wound up
        assert net.bytes_down > 0


_MANY_IDLE_SCRIPT = r"""
import json, os, resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))  # the proxy process inherits it
from labkit.net.netem import NetemProxy

lab_port, count = int(sys.argv[1]), int(sys.argv[2])
report = {"opened": 0, "peak_fds": 0}
net = NetemProxy("127.0.0.1", lab_port, "loopback").start()
pid = net._backend.proc.pid
clients = []

def proxy_fds():
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0

try:
    for _ in range(count):
        try:
            clients.append(socket.create_connection((net.host, net.port), timeout=10))
        except OSError as exc:
            report["connect_error"] = repr(exc)
            break
    report["opened"] = len(clients)
    # wait (bounded) until the proxy holds both sockets of every connection, or has died
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and net._backend.proc.poll() is None:
        report["peak_fds"] = max(report["peak_fds"], proxy_fds())
        if report["peak_fds"] >= 2 * count:
            break
        time.sleep(0.05)
    report["alive"] = net._backend.proc.poll() is None
    try:
        with open(f"/proc/{pid}/limits") as limits:
            line = next(x for x in limits if x.startswith("Max open files"))
        report["proxy_soft_limit"] = line.split()[3]  # a number, or "unlimited"
    except OSError as exc:  # the process is gone
        report["proxy_soft_limit"] = repr(exc)
    try:
        with socket.create_connection((net.host, net.port), timeout=10) as fresh:
            fresh.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while chunk := fresh.recv(65536):
                answer += chunk
        report["answer"] = answer.decode(errors="replace")
    except OSError as exc:
        report["answer"] = repr(exc)
    try:
        net.toxic("idle_timeout", seconds=60)
        report["toxics_on"] = sorted(net.active_toxics)
        net.clear()
        report["toxics_after_clear"] = sorted(net.active_toxics)
        report["accepted"] = len(net.connections)
    except Exception as exc:
        report["toxic_error"] = repr(exc)
finally:
    for client in clients:
        client.close()
    net.stop()
print(json.dumps(report), flush=True)
"""


@pytest.mark.xdist_group("serial")
def test_hundreds_of_idle_connections_do_not_kill_the_link(lab):
    """700 idle connections need ~1,400 descriptors in the proxy process, beyond select()'s
    FD_SETSIZE of 1,024: the link must stay up, serve a new request and take toxics."""
    import json
    import os
    import resource
    import subprocess
    import sys

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("counts descriptors in /proc")
    count = 700
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip("the hard open-file limit is below 2,048")
    run = subprocess.run([sys.executable, "-c", _MANY_IDLE_SCRIPT, str(lab.port), str(count)],
                         capture_output=True, text=True, timeout=100)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["opened"] == count, report
    assert report["peak_fds"] >= 2 * count, report  # both sockets of each: past FD_SETSIZE
    assert report["alive"], report
    if hard == resource.RLIM_INFINITY or hard > 2048:  # the proxy raised the soft limit it inherited
        limit = report["proxy_soft_limit"]
        assert limit == "unlimited" or int(limit) > 2048, report
    assert report["answer"].endswith('{"status": "ok"}'), report
    assert report["toxics_on"] == ["idle_timeout"], report
    assert report["toxics_after_clear"] == [], report
    assert report["accepted"] == count + 1, report
