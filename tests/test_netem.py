"""The network emulator: fidelity against its configured delays, pipelining, order, jitter seeds,
bandwidth, the modelled TCP handshake, and delayed bytes delivered before the close. The shared
link and slow start are in test_netem_link.py, the faults in test_netem_toxics.py.

The tests check the delay model by order and by the emulator's own counters (the delays it drew, the
handshakes it modelled, the slices it wrote), never against a wall-clock bound: how closely measured
round trips follow the configured ones is benchmarks/netem_fidelity.py's business.
"""

from __future__ import annotations

import asyncio

import pytest
from waiting import wait_until
from websockets.asyncio.client import connect

from labkit import _loop
from labkit.lessons.latency import compare_transports
from labkit.measure import median
from labkit.net.netem import KB, PROFILES, SLICE_SECONDS, NetemProxy, Profile, Toxics, profile

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


def test_round_trips_follow_the_model_in_order_and_in_the_emulators_counts(lab):
    """Through a 50 ms round trip: every transport's round trips are counted, and a new connection
    (the modelled TCP handshake, then the request) answers after a kept-alive one, and is itself
    slower than its own handshake. How close the numbers come to 50 ms: benchmarks/netem_fidelity.py."""
    frame = compare_transports(lab, profile=Profile.symmetric("fidelity", RTT), count=16, warmup=2)
    assert frame.groupby("transport").size().to_dict() == {
        "websocket": 16, "rest-keepalive": 16, "rest-new": 16}
    rtt = {t: median(g["rtt_ms"]) for t, g in frame.groupby("transport")}
    assert rtt["rest-new"] > rtt["rest-keepalive"]
    assert rtt["rest-new"] > rtt["websocket"]
    new = frame[frame.transport == "rest-new"]
    assert (new["tcp_ms"] < new["rtt_ms"]).all()  # the handshake is a part of the new connection's time


def test_without_handshake_model_a_new_connection_costs_one_round_trip(lab):
    """The emulator's own count: no handshake wait for any of five connections without the model,
    one round trip (20 ms each way) for each with it."""
    async def one_request(net):
        reader, writer = await asyncio.open_connection(net.host, net.port)
        writer.write(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        data = await reader.read()
        writer.close()
        return data

    waits = {}
    for model in (False, True):
        with NetemProxy.for_lab(lab, Profile.symmetric("syn", 40), model_handshake=model) as net:
            answers = [_loop.run(one_request(net)) for _ in range(5)]
            waits[model] = net.handshake_ms
        assert all(data.startswith(b"HTTP/1.") and data.endswith(b'{"status": "ok"}') for data in answers)
    assert waits[False] == {i: 0.0 for i in range(1, 6)}
    assert waits[True] == {i: 40.0 for i in range(1, 6)}


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
    """Ten messages sent back to back, through delays drawn from 30 +/- 15 ms each way, come back
    in order; every delay the emulator drew lies in the configured range. (That they take about one
    round trip, not ten, is timed by benchmarks/netem_fidelity.py.)"""
    wild = Profile("wild", Toxics(30, 15), Toxics(30, 15))
    with NetemProxy.for_lab(lab, wild, seed=3) as net:
        async def burst():
            async with connect(net.url("ws", "/ws/echo"), compression=None) as ws:
                for i in range(10):
                    await ws.send(f"m{i}")
                return [await ws.recv() for _ in range(10)]

        answers = _loop.run(burst())
        delays = net.delays_ms
    assert answers == [f"m{i}" for i in range(10)]
    for direction in ("up", "down"):
        assert delays[direction] and all(15 <= d <= 45 for d in delays[direction]), delays


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
    """The narrow link writes the answer in slices of SLICE_SECONDS of link time (counted by the
    emulator), and an unlimited link started at the same moment delivers the same answer first."""
    size, rate = 60_000, 100  # bytes, KB/s: 0.6 s of link time
    narrow = Profile("narrow", Toxics(), Toxics(rate=rate))
    finished: list[str] = []

    async def download(net, name):
        reader, writer = await asyncio.open_connection(net.host, net.port)
        writer.write(f"GET /api/echo?size={size} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = await reader.read()
        finished.append(name)
        writer.close()
        return data

    async def both(slow, fast):
        return await asyncio.gather(download(slow, "narrow"), download(fast, "unlimited"))

    with NetemProxy.for_lab(lab, narrow) as slow, NetemProxy.for_lab(lab, "loopback") as fast:
        data, other = _loop.run(both(slow, fast), timeout=30)
        slices = len(slow.lateness_ms["down"])
    assert data.endswith(b"x" * size) and other == data
    assert finished == ["unlimited", "narrow"]
    step = int(rate * KB * SLICE_SECONDS)  # bytes per slice
    assert slices >= len(data) // step, (slices, len(data), step)


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
        # the cut connection is wound up
        wait_until(lambda: net.connections[0].closed_ns is not None, 5, what="the cut connection closed")
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
