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
