"""The one owner of streaming sockets (labkit/streaming/sockets.py): one Close frame per connection,
a member that stops reading is closed with 1008 while everyone else goes on, and nothing else in the
server writes frames underneath aiohttp. Real sockets on 127.0.0.1; raw ones where the test must see
every frame on the wire."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import threading
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from labkit import _loop
from labkit.streaming.hub import HUB

PACKAGE = Path(__file__).parent.parent / "labkit"
SMALL_RECEIVE_BUFFER = 4096


def raw_websocket(port: int, target: str) -> socket.socket:
    """A WebSocket handshake on a plain socket with a small receive buffer (a reader that stops
    reading fills up fast); returns the socket right after the 101 answer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RECEIVE_BUFFER)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "the server closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def masked_close(code: int = 1000) -> bytes:
    """A client's Close frame (clients mask what they send)."""
    payload = struct.pack("!H", code)
    mask = os.urandom(4)
    return bytes([0x88, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frames(sock: socket.socket) -> list[tuple[int, bytes]]:
    """Every frame the server sends until it closes the connection, as (opcode, payload). On the
    first Close it answers with its own Close, as a client must, and keeps reading."""
    data, frames, answered = b"", [], False
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            break
        data += chunk
        while len(data) >= 2:
            length, at = data[1] & 0x7F, 2
            if length == 126:
                if len(data) < 4:
                    break
                length, at = struct.unpack("!H", data[2:4])[0], 4
            elif length == 127:
                if len(data) < 10:
                    break
                length, at = struct.unpack("!Q", data[2:10])[0], 10
            if len(data) < at + length:
                break
            opcode, payload = data[0] & 0x0F, data[at:at + length]
            frames.append((opcode, payload))
            data = data[at + length:]
            if opcode == 0x8 and not answered:
                sock.sendall(masked_close())
                answered = True
    return frames


def closes(frames: list[tuple[int, bytes]]) -> list[tuple[int, str]]:
    return [(struct.unpack("!H", p[:2])[0], p[2:].decode()) for op, p in frames if op == 0x8]


def test_a_slow_feed_subscriber_gets_exactly_one_close_frame(lab):
    sock = raw_websocket(lab.port, "/ws/feed")
    try:
        topic = lab.app[HUB].topic("feed")
        lab.call(_until(lambda: len(topic.subscribers) == 1))

        async def publish() -> None:
            for i in range(1500):
                lab.app[HUB].publish("feed", {"i": i, "pad": "x" * 2048})
                if i % 20 == 19:
                    await asyncio.sleep(0)

        lab.call(publish(), timeout=60)
        frames = read_frames(sock)  # only now does the subscriber read
    finally:
        sock.close()
    got = closes(frames)
    assert len(got) == 1, got  # one Close frame, never the 1008 and then aiohttp's 1000
    code, reason = got[0]
    events = [json.loads(p) for op, p in frames if op == 0x1]
    assert code == 1008 and reason.startswith(f"too slow: resume with since={events[-1]['seq']}&epoch=")
    assert frames[-1][0] == 0x8  # nothing after the Close
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


async def _until(predicate, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def test_a_whiteboard_member_that_never_reads_is_cut_and_the_room_goes_on(lab):
    """The issue's attack: one member stops reading. Before, the room sent to members one after
    another, so every stroke waited for it. Now the stuck member's outbox fills and closes it with
    1008; the member who reads gets every stroke, in order."""
    room, strokes = "stuck-member", 600
    from labkit.clients.rest import RestClient

    with RestClient(lab) as api:
        assert api.put(f"/api/collab/{room}").status == 201  # a room exists once created
    stuck = raw_websocket(lab.port, f"/ws/collab?room={room}&name=stuck")
    points = [[i / 100, (i % 7) / 7] for i in range(100)]  # more strokes than an outbox holds

    async def run() -> list[dict]:
        base = lab.ws_url + f"/ws/collab?room={room}"
        async with connect(base + "&name=reader", compression=None, max_size=2**24) as reader, \
                connect(base + "&name=drawer", compression=None, max_size=2**24) as drawer:
            for _ in range(2):  # their welcomes
                assert json.loads(await reader.recv())["type"] in ("welcome", "join")
            got: list[dict] = []

            async def read() -> None:
                while len(got) < strokes:
                    message = json.loads(await reader.recv())
                    if message["type"] == "stroke":
                        got.append(message)

            reading = asyncio.create_task(read())
            # Lock-step: the drawer waits for its own stroke to come back, so the reader and the
            # drawer keep up and only the member that reads nothing falls behind.
            for _ in range(strokes):
                await drawer.send(json.dumps({"type": "stroke", "points": points}))
                while json.loads(await drawer.recv())["type"] != "stroke":
                    pass
            async with asyncio.timeout(60):
                await reading
            return got

    try:
        got = _loop.run(run(), timeout=90)
        frames = read_frames(stuck)
    finally:
        stuck.close()
    assert [m["seq"] for m in got] == list(range(got[0]["seq"], got[0]["seq"] + strokes))
    got_closes = closes(frames)
    assert len(got_closes) == 1 and got_closes[0][0] == 1008, got_closes
    received = sum(1 for op, p in frames if op == 0x1 and json.loads(p)["type"] == "stroke")
    assert received < strokes  # it really fell behind: cut, not served late


def test_game_moves_over_rest_reach_a_reading_spectator_past_one_that_reads_nothing(lab):
    """The other half of the attack: a REST move used to wait for every socket of the game in turn.
    With a spectator that never reads, every move is still answered and the spectator who reads
    sees each state, in order."""
    import aiohttp

    game = "stuck-spectator"
    from labkit.clients.rest import RestClient

    with RestClient(lab) as api:
        assert api.put(f"/api/games/{game}").status == 201  # a game exists once created
    stuck = raw_websocket(lab.port, f"/ws/game?game={game}&role=watch&name=stuck")
    columns = [0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 4, 5, 4, 5]  # no four in a row in 16 moves

    async def run() -> tuple[list[int], list[int]]:
        async with aiohttp.ClientSession() as http, \
                connect(lab.ws_url + f"/ws/game?game={game}&role=watch&name=reader",
                        compression=None) as reader:
            seats = {}
            for name in ("x", "o"):
                async with http.post(f"{lab.url}/api/games/{game}/seats", json={"name": name}) as r:
                    assert r.status == 201
                    body = await r.json()
                    seats[body["seat"]] = body["token"]
            statuses = []
            for n, column in enumerate(columns):
                seat = "X" if n % 2 == 0 else "O"
                async with http.post(f"{lab.url}/api/games/{game}/moves",
                                     json={"seat": seat, "token": seats[seat], "column": column}) as r:
                    statuses.append(r.status)
            moves: list[int] = []
            async with asyncio.timeout(30):
                while len(moves) < len(columns):
                    message = json.loads(await reader.recv())
                    if message.get("type") == "state" and message.get("move"):
                        moves.append(message["move"]["n"])
            return statuses, moves

    try:
        statuses, moves = _loop.run(run(), timeout=60)
    finally:
        stuck.close()
    assert statuses == [201] * len(columns)
    assert moves == list(range(1, len(columns) + 1))


def test_the_streaming_module_refuses_an_untested_aiohttp():
    from labkit.streaming.sockets import TESTED_AIOHTTP, check_aiohttp

    low, high = TESTED_AIOHTTP
    check_aiohttp(f"{low[0]}.{low[1]}.0")
    check_aiohttp(f"{high[0]}.{high[1]}.9")
    for version in (f"{low[0]}.{low[1] - 1}.5", f"{high[0]}.{high[1] + 1}.0", "4.0.0"):
        with pytest.raises(ImportError, match="tested with aiohttp"):
            check_aiohttp(version)


FRAME_WRITERS = ("Frame(", "text_frame(", "Opcode.")


def test_only_the_streaming_owner_writes_frames_underneath_aiohttp():
    """Frames built by hand and written to a transport live in labkit/streaming/sockets.py only."""
    owner = PACKAGE / "streaming" / "sockets.py"
    offenders = {}
    for folder in ("server", "routes", "streaming", "cluster"):
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            if path == owner:
                continue
            found = [w for w in FRAME_WRITERS if w in path.read_text()]
            if found:
                offenders[str(path.relative_to(PACKAGE))] = found
    assert not offenders, offenders
    assert all(w in owner.read_text() for w in ("Frame(", "transport.write("))  # the rule sees it


@pytest.mark.parametrize("family", ["game", "collab"])
def test_rooms_send_only_through_outboxes(family):
    """A room never awaits a member's socket: its members get messages through outboxes."""
    source = (PACKAGE / "routes" / f"{family}.py").read_text()
    assert "Outbox(" in source and "send_message(" not in source


def test_route_families_write_to_websockets_only_through_the_streaming_owner():
    offenders = {}
    for path in sorted((PACKAGE / "routes").glob("*.py")):
        found = [w for w in (".send_str(", ".send_json(", ".send_bytes(", ".send_frame(")
                 if w in path.read_text()]
        if found:
            offenders[path.name] = found
    assert not offenders, offenders
    assert ".send_str(" in (PACKAGE / "streaming" / "sockets.py").read_text()  # the rule sees it


def test_outbox_states_go_open_closing_closed(lab):
    """The state machine itself, on a real socket: a full outbox closes once and refuses more."""
    from labkit.streaming.sockets import Outbox

    done = threading.Event()
    states: list[str] = []

    async def scenario() -> None:
        from aiohttp import web

        from labkit.server.websocket import accept

        async def handler(request: web.Request) -> web.WebSocketResponse:
            ws = await accept(request, compress=False, autoclose=False)
            box = Outbox(request, ws, limit=3)
            states.append(box.state)
            for i in range(3):
                assert box.send(f"m{i}")
            assert not box.send("one too many")  # the fourth overflows: closing
            states.append(box.state)
            assert not box.send("after closing")
            async for _ in ws:
                pass
            await box.finish()
            states.append(box.state)
            done.set()
            return ws

        from labkit.server.config import LabConfig
        from labkit.server.guard import serve_app
        from labkit.server.keys import CONFIG, WEBSOCKETS

        app = web.Application()  # the lab's app is frozen: the handler gets a small app of its own
        app[CONFIG], app[WEBSOCKETS] = LabConfig(), __import__("weakref").WeakSet()
        app.router.add_get("/box", handler)
        served = await serve_app(app, "127.0.0.1", 0, config=LabConfig())
        try:
            async with connect(f"ws://127.0.0.1:{served.port}/box", compression=None) as ws:
                from websockets.exceptions import ConnectionClosedError

                received = []
                with pytest.raises(ConnectionClosedError):  # a 1008 close ends the reading
                    while True:
                        received.append(await ws.recv())
                assert ws.close_code == 1008
                assert received == []  # the outbox dropped what was queued: closing, not late
        finally:
            await served.close()

    lab.call(scenario(), timeout=60)
    assert done.wait(10)
    assert states == ["open", "closing", "closed"]
