"""Protocol hygiene on the lab's WebSocket routes, over real sockets: close codes, bad input,
ping/pong, many connections, isolation between clients, Origin, shutdown."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode

from labkit.clients.rest import RestClient


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def closed_code(conn) -> int:
    """Read until the server closes; the close code it sent."""
    with pytest.raises(ConnectionClosed):
        for _ in range(10):
            await asyncio.wait_for(conn.recv(), 5)
    return conn.close_code


async def send_raw_text(conn, payload: bytes) -> None:
    """Put a masked text frame with any payload (even invalid UTF-8) straight on the wire."""
    conn.transport.write(Frame(Opcode.TEXT, payload).serialize(mask=True))


async def session(url: str):
    conn = await connect(url + "/ws/session", compression=None)
    welcome = json.loads(await conn.recv())
    assert welcome["type"] == "welcome"
    return conn


async def command(conn, message) -> dict:
    await conn.send(message if isinstance(message, str | bytes) else json.dumps(message))
    return json.loads(await asyncio.wait_for(conn.recv(), 5))


# -- close codes -----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/ws/echo", "/ws/session", "/ws/clock?rate=1"])
def test_invalid_utf8_in_text_frame_closes_1007(lab, path):
    async def go():
        async with connect(lab.ws_url + path, compression=None) as conn:
            await send_raw_text(conn, b"ok \xff\xfe not utf-8")
            return await closed_code(conn)

    assert run(go()) == 1007


def test_message_over_limit_closes_1009_and_limit_is_configurable(make_lab):
    lab = make_lab(max_ws_message=1024)

    async def go():
        async with connect(lab.ws_url + "/ws/echo", compression=None, max_size=None) as conn:
            await conn.send(b"x" * 1000)  # under the limit: fine
            assert await conn.recv() == b"x" * 1000
            await conn.send(b"x" * 1025)
            return await closed_code(conn)

    assert run(go()) == 1009


def test_default_limit_is_one_mebibyte(lab):
    async def go():
        async with connect(lab.ws_url + "/ws/echo", compression=None, max_size=None) as conn:
            await conn.send(b"y" * (1024 * 1024 - 1))
            assert len(await conn.recv()) == 1024 * 1024 - 1
            await conn.send(b"y" * (1024 * 1024 + 1))
            return await closed_code(conn)

    assert run(go()) == 1009


# -- the JSON session route ----------------------------------------------------------------------------
def test_session_garbage_gets_error_and_connection_stays_usable(lab):
    async def go():
        conn = await session(lab.ws_url)
        replies = [await command(conn, m) for m in
                   ["{not json", "[1, 2]", {"op": "fly"}, {"op": "incr", "by": "two"},
                    {"op": "set_name", "name": ""}, b"\x00binary"]]
        assert [r["type"] for r in replies] == ["error"] * 6
        after = await command(conn, {"op": "incr", "by": 5})
        await conn.close()
        return after

    after = run(go())
    assert (after["type"], after["name"], after["count"]) == ("state", None, 5)


def test_session_state_belongs_to_one_connection(lab):
    async def go():
        a, b = await session(lab.ws_url), await session(lab.ws_url)
        await command(a, {"op": "set_name", "name": "ada"})
        for _ in range(3):
            await command(a, {"op": "incr"})
        state_a, state_b = await command(a, {"op": "get"}), await command(b, {"op": "get"})
        await a.close()
        c = await session(lab.ws_url)  # a new connection starts from nothing
        state_c = await command(c, {"op": "get"})
        await b.close()
        await c.close()
        return state_a, state_b, state_c

    a, b, c = run(go())
    assert (a["name"], a["count"]) == ("ada", 3)
    assert (b["name"], b["count"]) == (None, 0)
    assert (c["name"], c["count"]) == (None, 0)
    assert len({a["session"], b["session"], c["session"]}) == 3


# -- ping / pong -----------------------------------------------------------------------------------------
def test_ping_gets_pong_with_same_data(lab):
    async def go():
        async with connect(lab.ws_url + "/ws/session", compression=None) as conn:
            await conn.recv()
            waiter = await conn.ping(b"are you there")
            latency = await asyncio.wait_for(waiter, 5)  # resolves only on the matching pong
            assert (await command(conn, {"op": "get"}))["type"] == "state"
            return latency

    assert run(go()) >= 0


# -- the clock: push and full duplex ----------------------------------------------------------------------
@pytest.mark.parametrize("query", ["rate=0", "rate=1000", "rate=fast", "rate=nan", "count=0"])
def test_clock_refuses_bad_rate_with_422_before_upgrading(lab, query):
    reply = RestClient(lab).get(f"/ws/clock?{query}")
    assert reply.status == 422
    assert reply.headers["Content-Type"].startswith("application/problem+json")

    async def go():
        with pytest.raises(InvalidStatus) as info:
            await connect(lab.ws_url + f"/ws/clock?{query}")
        return info.value.response.status_code

    assert run(go()) == 422


def test_clock_pushes_count_ticks_then_closes_1000(lab):
    async def go():
        async with connect(lab.ws_url + "/ws/clock?rate=100&count=5", compression=None) as conn:
            ticks = [json.loads(m) async for m in conn]
            return ticks, conn.close_code

    ticks, code = run(go())
    assert [t["seq"] for t in ticks] == [1, 2, 3, 4, 5]
    assert all(t["type"] == "tick" for t in ticks)
    assert code == 1000


def test_clock_is_full_duplex_acks_arrive_between_ticks(lab):
    async def go():
        async with connect(lab.ws_url + "/ws/clock?rate=50&count=20", compression=None) as conn:
            async def writer():
                for i in range(5):
                    await conn.send(f"hello {i}")
                    await asyncio.sleep(0.02)
                await conn.send(json.dumps({"rate": 100}))
                await conn.send(json.dumps({"rate": 5000}))
            task = asyncio.create_task(writer())
            received = [json.loads(m) async for m in conn]
            await task
            return received

    received = run(go())
    ticks = [m for m in received if m["type"] == "tick"]
    acks = [m for m in received if m["type"] == "ack"]
    errors = [m for m in received if m["type"] == "error"]
    assert [t["seq"] for t in ticks] == list(range(1, 21))
    assert [a["n"] for a in acks] == [1, 2, 3, 4, 5, 6]
    assert acks[-1]["rate"] == 100
    assert len(errors) == 1  # 5000 Hz is refused, the socket stays open
    first_ack = received.index(acks[0])
    last_ack = received.index(acks[4])
    assert any(m["type"] == "tick" for m in received[first_ack:last_ack])  # interleaved


# -- many clients, isolation --------------------------------------------------------------------------------
def test_500_concurrent_connections_each_get_their_own_echo(lab):
    n = 500

    async def go():
        limit = asyncio.Semaphore(100)  # open in waves of 100; all stay open together
        all_open = asyncio.Event()
        conns = []

        async def one(i):
            async with limit:
                conn = await connect(lab.ws_url + "/ws/echo", compression=None, open_timeout=20)
            conns.append(conn)
            if len(conns) == n:
                all_open.set()
            await asyncio.wait_for(all_open.wait(), 30)
            await conn.send(f"client {i}")
            return await asyncio.wait_for(conn.recv(), 10)

        answers = await asyncio.gather(*(one(i) for i in range(n)))
        open_on_server = lab.status()["open_websockets"]
        await asyncio.gather(*(c.close() for c in conns))
        return answers, open_on_server

    answers, open_on_server = run(go(), timeout=60)
    assert answers == [f"client {i}" for i in range(n)]
    assert open_on_server == n


def test_misbehaving_client_never_disturbs_others(make_lab):
    lab = make_lab(max_ws_message=4096)

    async def go():
        good = [await session(lab.ws_url) for _ in range(5)]
        for conn in good:
            await command(conn, {"op": "incr"})
        codes = []
        for attack in ("garbage", "utf8", "big"):
            bad = await connect(lab.ws_url + "/ws/session", compression=None, max_size=None)
            await bad.recv()
            if attack == "garbage":
                for _ in range(20):
                    await bad.send("}}}{{{")
                replies = [json.loads(await bad.recv()) for _ in range(20)]
                assert all(r["type"] == "error" for r in replies)
                await bad.close()
                codes.append(bad.close_code)
            elif attack == "utf8":
                await send_raw_text(bad, b"\xc3\x28")
                codes.append(await closed_code(bad))
            else:
                await bad.send("z" * 5000)
                codes.append(await closed_code(bad))
            for conn in good:  # everyone else still answers, with their own state intact
                await command(conn, {"op": "incr"})
        states = [await command(conn, {"op": "get"}) for conn in good]
        for conn in good:
            await conn.close()
        return codes, states

    codes, states = run(go())
    assert codes == [1000, 1007, 1009]
    assert [s["count"] for s in states] == [4] * 5


# -- Origin and shutdown on the new routes -----------------------------------------------------------------
@pytest.mark.parametrize("path", ["/ws/session", "/ws/clock"])
@pytest.mark.parametrize(("origin", "allowed"), [
    ("https://evil.example", False),
    ("http://localhost:8888", True),
    ("http://127.0.0.1:5000", True),
    (None, True),
])
def test_origin_rule_on_new_routes(lab, path, origin, allowed):
    async def go():
        headers = {"Origin": origin} if origin else None
        try:
            conn = await connect(lab.ws_url + path, additional_headers=headers)
        except InvalidStatus as exc:
            return exc.response.status_code
        await conn.close()
        return 101

    assert run(go()) == (101 if allowed else 403)


def test_allowed_origins_option_on_session(make_lab):
    lab = make_lab(allowed_origins=["https://course.example"])

    async def go(origin):
        try:
            conn = await connect(lab.ws_url + "/ws/session", origin=origin)
        except InvalidStatus as exc:
            return exc.response.status_code
        await conn.close()
        return 101

    assert run(go("https://course.example")) == 101
    assert run(go("https://other.example")) == 403


def test_stop_closes_session_and_clock_with_1001(make_lab):
    lab = make_lab()
    from labkit.clients.ws import WsClient

    clients = [WsClient(lab, "/ws/session"), WsClient(lab, "/ws/clock?rate=1")]
    lab.stop()
    for client in clients:
        conn = client.connection
        with pytest.raises(ConnectionClosed):
            for _ in range(5):
                client.recv(timeout=5)
        assert conn.close_code == 1001


# -- the sync client's helpers used by lesson 02 -------------------------------------------------------------
def test_ws_client_ask_ping_and_close_code(lab):
    from labkit.clients.ws import WsClient

    ws = WsClient(lab, "/ws/session")
    assert ws.recv_json()["type"] == "welcome"
    assert ws.ask({"op": "incr", "by": 2})["count"] == 2
    assert ws.ask("{broken")["type"] == "error"
    assert ws.ping(b"x") >= 0
    assert ws.close_code is None
    assert ws.close() == 1000 and ws.close_code == 1000


def test_full_duplex_helper_records_both_directions(lab):
    from labkit.clients.ws import full_duplex

    events = full_duplex(lab, clock_hz=50, send_hz=40, seconds=0.4)
    up, down = events[events["direction"] == "up"], events[events["direction"] == "down"]
    assert list(up["seq"]) == list(range(1, 17))
    ticks = down[down["type"] == "tick"]
    assert len(ticks) >= 5 and list(ticks["seq"]) == list(range(1, len(ticks) + 1))
    acks = down[down["type"] == "ack"]
    assert list(acks["seq"]) == list(range(1, 17))  # every message sent was acknowledged
    assert events["t_ms"].is_monotonic_increasing
