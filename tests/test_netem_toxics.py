"""Faults on the emulated link, switched on and off while connections are open: each one checked for
what it does to bytes, closes and ordering, and its stalls by the order of events and the emulator's
own records (never against a wall-clock bound)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from waiting import async_wait_until, wait_until
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from labkit import _loop
from labkit.net.netem import TOXIC_KINDS, NetemProxy, Profile

RTT = 20.0
PROFILE = Profile.symmetric("toxic-test", RTT)


@pytest.fixture
def net(lab):
    with NetemProxy.for_lab(lab, PROFILE) as proxy:
        yield proxy


def _wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- the API ---------------------------------------------------------------------------------------
def test_toxics_are_checked_before_anything_is_switched(net):
    with pytest.raises(ValueError, match="unknown toxic"):
        net.toxic("latency_spike")
    with pytest.raises(ValueError, match="needs probability"):
        net.toxic("loss")
    with pytest.raises(ValueError, match="probability must be"):
        net.toxic("loss", probability=1.5)
    with pytest.raises(ValueError, match="not both"):
        net.toxic("reset_peer", after_ms=10, after_bytes=10)
    with pytest.raises(ValueError, match="needs seconds"):
        net.toxic("idle_timeout")
    with pytest.raises(ValueError, match="takes"):
        net.toxic("timeout", seconds=3)
    with pytest.raises(ValueError, match="status"):
        net.toxic("refuse_upgrade", status=200)
    assert net.active_toxics == {}


def test_toxics_switch_on_and_off_and_can_be_set_before_start(lab):
    net = NetemProxy.for_lab(lab, PROFILE).toxic("idle_timeout", seconds=30)
    assert net.active_toxics == {"idle_timeout": {"seconds": 30}}
    with net:
        assert net.active_toxics == {"idle_timeout": {"seconds": 30}}
        net.toxic("loss", probability=0.1, seed=4)
        assert set(net.active_toxics) == {"idle_timeout", "loss"}
        assert net.active_toxics["loss"] == {"probability": 0.1, "rto_ms": 200.0, "seed": 4,
                                             "direction": "both"}
        net.clear("idle_timeout")
        assert set(net.active_toxics) == {"loss"}
        net.clear()
        assert net.active_toxics == {}
    assert set(TOXIC_KINDS) == {"timeout", "reset_peer", "idle_timeout", "refuse_upgrade", "loss"}


# -- timeout (blackhole) ---------------------------------------------------------------------------
def test_timeout_drops_bytes_without_closing_and_clear_restores_the_link(net):
    async def scenario():
        async with connect(net.url("ws", "/ws/echo"), compression=None, ping_interval=None) as ws:
            await ws.send("before")
            first = await ws.recv()
            await asyncio.to_thread(net.toxic, "timeout")
            await ws.send("lost")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 5 * RTT / 1000)
            still_open = [c.closed_ns for c in await asyncio.to_thread(lambda: net.connections)]
            up_during = (await asyncio.to_thread(lambda: net.bytes_up))
            await asyncio.to_thread(net.clear, "timeout")
            await ws.send("after")
            return first, still_open, up_during, await ws.recv()

    first, still_open, up_during, after = _loop.run(scenario(), timeout=20)
    assert first == "before"
    assert still_open == [None]  # nothing was closed
    assert up_during > 0  # the proxy read the lost message ...
    assert after == "after"  # ... and never delivered it: the next answer is the next message


def test_timeout_keeps_a_closed_peer_secret_until_cleared(net):
    """Half-open: the client hangs up during a blackhole; the server's side stays open."""
    async def hang_up():
        reader, writer = await asyncio.open_connection(net.host, net.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await reader.readuntil(b'{"status": "ok"}')
        await asyncio.to_thread(net.toxic, "timeout")
        writer.close()
        await writer.wait_closed()

    _loop.run(hang_up(), timeout=10)
    # a later connection reaches the proxy after the first one's end; the end was still held back
    with socket.create_connection((net.host, net.port), timeout=5):
        wait_until(lambda: len(net.connections) == 2, 5, what="the proxy accepted the second connection")
    assert net.connections[0].closed_ns is None
    net.clear("timeout")
    assert _wait_for(lambda: net.connections[0].closed_ns is not None)
    assert net.connections[0].ended_by is None  # an end point closed it, not the proxy


# -- reset_peer ------------------------------------------------------------------------------------
def test_reset_peer_after_ms_sends_an_rst_no_sooner(net):
    """Within the 300 ms the toxic waits (15 round trips), the connection still carries a request
    and its answer; the RST comes after them."""
    async def scenario():
        reader, writer = await asyncio.open_connection(net.host, net.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await reader.readuntil(b'{"status": "ok"}')
        await asyncio.to_thread(net.toxic, "reset_peer", after_ms=300)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        meanwhile = await reader.readuntil(b'{"status": "ok"}')
        with pytest.raises(ConnectionResetError):
            await reader.read()  # an RST, not an orderly EOF (that would return b"")
        return meanwhile

    meanwhile = _loop.run(scenario(), timeout=10)
    assert meanwhile.startswith(b"HTTP/1.1 200")
    assert net.connections[0].ended_by == "reset_peer"


def test_reset_peer_after_bytes_passes_exactly_that_many(net):
    size, limit = 50_000, 20_000
    net.toxic("reset_peer", after_bytes=limit, direction="down")

    async def download():
        reader, writer = await asyncio.open_connection(net.host, net.port)
        writer.write(f"GET /api/echo?size={size} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        got = b""
        try:
            while chunk := await reader.read(65536):
                got += chunk
        except ConnectionResetError:
            return got, "reset"
        return got, "eof"

    got, how = _loop.run(download(), timeout=10)
    assert how == "reset"
    assert len(got) == limit and got.startswith(b"HTTP/1.0 200")
    assert net.connections[0].ended_by == "reset_peer"
    net.clear("reset_peer")
    got, how = _loop.run(download(), timeout=10)  # cleared: the next connection gets everything
    assert how == "eof" and got.endswith(b"x" * size)


def test_reset_peer_cuts_a_live_websocket_and_a_reconnect_works_after_clear(net):
    async def scenario():
        async with connect(net.url("ws", "/ws/echo"), compression=None) as ws:
            await ws.send("hi")
            await ws.recv()
            await asyncio.to_thread(net.toxic, "reset_peer")
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            await asyncio.to_thread(net.clear, "reset_peer")
        async with connect(net.url("ws", "/ws/echo"), compression=None) as again:
            await again.send("back")
            return closed.value, await again.recv()

    closed, answer = _loop.run(scenario(), timeout=15)
    assert closed.rcvd is None  # no close frame: the connection was cut
    assert answer == "back"
    assert [c.ended_by for c in net.connections] == ["reset_peer", None]


# -- idle_timeout ----------------------------------------------------------------------------------
def test_idle_timeout_closes_the_silent_connection_and_spares_the_chatty_one(net):
    """The quiet connection outlives its first ticks of the chatty one (nothing is cut at once),
    then is cut; the chatty one, never idle for the timeout, is never cut."""
    idle_s = 0.5
    net.toxic("idle_timeout", seconds=idle_s)

    async def scenario():
        async with connect(net.url("ws", "/ws/echo"), compression=None, ping_interval=None) as quiet, \
                connect(net.url("ws", "/ws/echo"), compression=None, ping_interval=None) as chatty:
            await quiet.send("last word")
            await quiet.recv()
            states = []
            for _ in range(int(3 * idle_s / 0.1)):  # 1.5 s: three idle timeouts
                await chatty.send("tick")  # a byte every 0.1 s keeps it alive
                await chatty.recv()
                states.append(quiet.state.name)
                await asyncio.sleep(0.1)
            await async_wait_until(lambda: quiet.state.name == "CLOSED", 10, what="the quiet one cut")
            await chatty.send("still here")
            return states, quiet.close_code, await chatty.recv()

    states, code, answer = _loop.run(scenario(), timeout=30)
    assert states[0] == "OPEN", states  # still open one tick after its last byte
    assert code == 1006  # closed under it, no close frame: what a load balancer's FIN looks like
    assert answer == "still here"
    assert sorted(c.ended_by or "" for c in net.connections) == ["", "idle_timeout"]


# -- refuse_upgrade --------------------------------------------------------------------------------
def test_refuse_upgrade_answers_websocket_with_403_and_lets_http_through(net):
    async def scenario():
        async with connect(net.url("ws", "/ws/echo"), compression=None) as before:
            await asyncio.to_thread(net.toxic, "refuse_upgrade")
            with pytest.raises(InvalidStatus) as refused:
                await connect(net.url("ws", "/ws/echo"), open_timeout=5)
            await before.send("upgraded before")  # an existing WebSocket keeps working
            kept = await before.recv()
        reader, writer = await asyncio.open_connection(net.host, net.port)
        writer.write(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        plain = await reader.read()
        writer.close()
        return refused.value.response, kept, plain

    response, kept, plain = _loop.run(scenario(), timeout=15)
    assert response.status_code == 403
    assert b"plain HTTP only" in response.body
    assert kept == "upgraded before"
    assert plain.startswith(b"HTTP/1.0 200") and plain.endswith(b'{"status": "ok"}')
    assert [c.ended_by for c in net.connections][1] == "refuse_upgrade"


# -- loss ------------------------------------------------------------------------------------------
def _lock_step(net: NetemProxy, count: int) -> list[tuple[int, int]]:
    """(sent, received) perf_counter_ns of `count` echo round trips on one WebSocket."""
    async def run():
        spans = []
        async with connect(net.url("ws", "/ws/echo"), compression=None, ping_interval=None) as ws:
            for i in range(count):
                sent = time.perf_counter_ns()
                await ws.send(f"m{i:03d}")
                assert await ws.recv() == f"m{i:03d}"
                spans.append((sent, time.perf_counter_ns()))
        return spans

    return _loop.run(run(), timeout=60)


def test_loss_stalls_exactly_the_round_trips_it_hits(lab):
    """Every loss the emulator records falls inside one lock-step round trip (the order of the
    timestamps: sent, lost, answered) and carries the configured RTO as its stall, and the round
    trips it hit are the run's slowest ones. (How long a stall takes: benchmarks/netem_fidelity.py.)"""
    rto, count = 300.0, 30
    with NetemProxy.for_lab(lab, PROFILE).toxic("loss", probability=0.15, rto_ms=rto, seed=5) as net:
        spans = _lock_step(net, count)
        losses = net.losses
    hits = [sum(sent <= loss["t_ns"] <= got for loss in losses) for sent, got in spans]
    assert sum(hits) == len(losses) > 0  # every modelled loss fell inside one round trip
    assert all(loss["stall_ms"] == rto and loss["segments_lost"] >= 1 for loss in losses)
    assert all(0 < loss["bytes"] <= 1460 for loss in losses)  # one echo frame each, no more
    assert len({(loss["direction"], loss["offset"]) for loss in losses}) == len(losses)
    # the stalled round trips are exactly the slowest ones (an order among the run's own round trips)
    durations = [got - sent for sent, got in spans]
    hit = {i for i, k in enumerate(hits) if k}
    slowest = set(sorted(range(count), key=durations.__getitem__)[count - len(hit):])
    assert slowest == hit, (sorted(hit), sorted(slowest))


def test_loss_is_reproducible_with_its_seed(lab):
    def pattern(seed):
        with NetemProxy.for_lab(lab, PROFILE).toxic("loss", probability=0.2, rto_ms=1,
                                                     seed=seed) as net:
            _lock_step(net, 30)
            return [(x["direction"], x["offset"]) for x in net.losses]

    first, again, other = pattern(1), pattern(1), pattern(2)
    assert first == again and len(first) > 0
    assert first != other


def test_a_lost_chunk_holds_up_the_bytes_behind_it(net):
    """Head-of-line blocking: a message that was not lost waits for the one before it."""
    rto = 300.0

    async def scenario():
        async with connect(net.url("ws", "/ws/echo"), compression=None, ping_interval=None) as ws:
            await asyncio.to_thread(net.toxic, "loss", probability=1.0, rto_ms=rto, direction="down")
            await ws.send("lost")
            lost = await asyncio.to_thread(_wait_for, lambda: len(net.losses) == 1)
            await asyncio.to_thread(net.clear, "loss")
            sent_b = time.perf_counter_ns()
            await ws.send("behind")
            answers = [await ws.recv(), await ws.recv()]
            return lost, answers, sent_b, time.perf_counter_ns()

    lost, answers, sent_b, _ = _loop.run(scenario(), timeout=15)
    (loss,) = net.losses
    assert lost
    assert sent_b > loss["t_ns"]  # "behind" was sent after the loss, with the toxic off ...
    assert answers == ["lost", "behind"]  # ... and still came after the stalled one
