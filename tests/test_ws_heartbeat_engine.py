"""The lab's own WebSocket heartbeat (`websocket.MaskCheck`) and its compressor, over real sockets
on 127.0.0.1: a silent peer that answers no ping is dropped while others are served, a talking
peer is not pinged, an idle one is, a route's `?heartbeat=S` is kept, no timer outlives its
socket; permessage-deflate is answered with a 4 KiB window and messages still round-trip."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import socket
import time

import pytest
from websockets.asyncio.client import connect

from labkit.server.keys import WEBSOCKETS
from labkit.server.websocket import DEFLATE_WINDOW_BITS, MaskCheck

PING, PONG, TEXT, CLOSE = 0x9, 0xA, 0x1, 0x8


class RawPeer:
    """A WebSocket client on a plain socket: it answers pings only when told to."""

    def __init__(self, lab, path: str = "/ws/echo", extensions: str | None = None):
        self.sock = socket.create_connection(("127.0.0.1", lab.port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        head = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{lab.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
        if extensions:
            head += f"Sec-WebSocket-Extensions: {extensions}\r\n"
        self.sock.sendall((head + "\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            assert chunk, "closed during the handshake"
            buf += chunk
        raw_head, self.buf = buf.split(b"\r\n\r\n", 1)
        lines = raw_head.decode().split("\r\n")
        self.status = lines[0]
        self.headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}

    def send(self, opcode: int, payload: bytes = b"") -> None:
        mask = os.urandom(4)
        assert len(payload) < 126
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask
                          + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _need(self, n: int) -> bool:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.buf += chunk
        return True

    def frame(self) -> tuple[int, bytes] | None:
        """The next frame (opcode, payload), None once the server closed the connection."""
        if not self._need(2):
            return None
        opcode, length = self.buf[0] & 0x0F, self.buf[1] & 0x7F
        start = 2
        if length == 126:
            if not self._need(4):
                return None
            length, start = int.from_bytes(self.buf[2:4], "big"), 4
        if not self._need(start + length):
            return None
        payload, self.buf = self.buf[start:start + length], self.buf[start + length:]
        return opcode, payload

    def frames_until(self, seconds: float, answer_pings: bool) -> tuple[list[int], bool]:
        """Opcodes read for `seconds` (pings answered or not); and whether the server closed."""
        seen: list[int] = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                got = self.frame()
            except TimeoutError:
                break
            if got is None:
                return seen, True
            seen.append(got[0])
            if got[0] == PING and answer_pings:
                self.send(PONG, got[1])
        return seen, False

    def close(self) -> None:
        self.sock.close()


def on_loop(lab, fn):
    """Run `fn()` on the lab's own event loop thread and return what it returns."""
    async def call():
        return fn()
    return asyncio.run_coroutine_threadsafe(call(), lab._loop).result(10)


def checks_of(lab) -> list[MaskCheck]:
    """This lab's MaskCheck objects still alive (a pending heartbeat timer keeps its own alive)."""
    def find():
        gc.collect()
        return [o for o in gc.get_objects() if isinstance(o, MaskCheck)
                and o.transport.get_extra_info("sockname")[1] == lab.port]
    return on_loop(lab, find)


def open_sockets(lab) -> int:
    return on_loop(lab, lambda: (gc.collect(), len(lab.app[WEBSOCKETS]))[1])


def test_a_silent_peer_is_pinged_then_dropped_while_another_is_served(make_lab):
    lab = make_lab(ws_heartbeat=0.4)
    silent = RawPeer(lab)
    assert silent.status.startswith("HTTP/1.1 101")

    async def talk():  # a client that answers pings (websockets does) and echoes all along
        replies = []
        async with connect(lab.ws_url + "/ws/echo", compression=None) as ws:
            for i in range(30):
                await ws.send(f"m{i}")
                replies.append(await asyncio.wait_for(ws.recv(), 10))
                await asyncio.sleep(0.1)
        return replies

    loop = asyncio.new_event_loop()
    try:
        talker = loop.run_in_executor(None, lambda: asyncio.run(talk()))
        seen, closed = silent.frames_until(15, answer_pings=False)
        replies = loop.run_until_complete(talker)
    finally:
        loop.close()
    assert seen == [PING] and closed  # one ping, no answer, dropped without a Close frame
    assert replies == [f"m{i}" for i in range(30)]
    silent.close()
    deadline = time.monotonic() + 10
    while open_sockets(lab) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_sockets(lab) == 0  # it left the open sockets


def test_an_idle_peer_that_answers_gets_pings_and_stays(make_lab):
    lab = make_lab(ws_heartbeat=0.3)
    peer = RawPeer(lab)
    seen, closed = peer.frames_until(2.0, answer_pings=True)
    assert not closed and len(seen) >= 2 and set(seen) == {PING}
    peer.send(TEXT, b"still here")
    assert peer.frame() == (TEXT, b"still here")
    peer.close()


def test_a_talking_peer_is_not_pinged(make_lab):
    lab = make_lab(ws_heartbeat=1.5)
    peer = RawPeer(lab)
    echoes = pings = 0
    for i in range(25):  # a message every 0.1 s for 2.5 s: bytes arrive in every interval
        peer.send(TEXT, f"{i}".encode())
        got = peer.frame()
        assert got is not None
        pings += got[0] == PING
        echoes += got == (TEXT, f"{i}".encode())
        time.sleep(0.1)
    assert echoes == 25 and pings == 0
    peer.close()


def test_a_routes_heartbeat_option_sets_the_interval(lab):
    assert lab.config.ws_heartbeat >= 30  # the lab's own would not ping within this test
    peer = RawPeer(lab, "/ws/feed?heartbeat=0.3")
    assert peer.status.startswith("HTTP/1.1 101")
    seen, closed = peer.frames_until(2.0, answer_pings=True)
    assert not closed and seen.count(PING) >= 2
    peer.close()


def test_no_heartbeat_timer_outlives_its_socket(make_lab):
    lab = make_lab(ws_heartbeat=60)  # a timer left pending would keep its MaskCheck for 60 s
    peers = [RawPeer(lab) for _ in range(20)]
    for peer in peers:
        peer.send(TEXT, b"x")
        assert peer.frame() == (TEXT, b"x")
    assert [check.timer is not None for check in checks_of(lab)] == [True] * 20
    for i, peer in enumerate(peers):
        if i % 2:
            peer.send(CLOSE, (1000).to_bytes(2, "big"))  # a clean close
            assert peer.frame() is not None
        peer.close()  # the others vanish without a Close
    deadline = time.monotonic() + 10
    while checks_of(lab) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert checks_of(lab) == []


def test_compression_is_answered_with_a_small_window_and_round_trips(lab):
    peer = RawPeer(lab, extensions="permessage-deflate; client_max_window_bits")
    assert peer.headers["sec-websocket-extensions"] == (
        f"permessage-deflate; server_max_window_bits={DEFLATE_WINDOW_BITS}")
    peer.close()
    smaller = RawPeer(lab, extensions="permessage-deflate; server_max_window_bits=10")
    assert smaller.headers["sec-websocket-extensions"] == "permessage-deflate; server_max_window_bits=10"
    smaller.close()
    messages = [json.dumps({"seq": i, "text": "hello " * (i % 7)}) for i in range(50)]
    messages.append("x" * 40_000 + "".join(messages))  # past the executor threshold

    async def go():
        async with connect(lab.ws_url + "/ws/echo", compression="deflate") as ws:
            assert "server_max_window_bits=12" in ws.response.headers["Sec-WebSocket-Extensions"]
            got = []
            for message in messages:
                await ws.send(message)
                got.append(await asyncio.wait_for(ws.recv(), 10))
            return got

    assert asyncio.run(go()) == messages


@pytest.mark.parametrize("offer", ["permessage-deflate; server_no_context_takeover", None])
def test_no_context_takeover_and_no_compression_are_kept(lab, offer):
    peer = RawPeer(lab, extensions=offer)
    said = peer.headers.get("sec-websocket-extensions")
    if offer is None:
        assert said is None
    else:
        assert said == (f"permessage-deflate; server_max_window_bits={DEFLATE_WINDOW_BITS}; "
                        "server_no_context_takeover")
    peer.close()


def test_no_ping_follows_a_slow_consumers_close_and_the_close_arrives(lab):
    """A slow consumer's Close frame (sockets.linger_close) ends the pings: a peer that then keeps
    quiet while it drains is neither pinged after the Close nor cut off before the Close reaches it
    (the linger's own timeout is what ends a peer that never answers)."""
    from labkit.streaming.hub import HUB
    from labkit.streaming.sockets import CLOSES_SENT

    peer = RawPeer(lab, "/ws/feed?heartbeat=0.3")
    assert peer.status.startswith("HTTP/1.1 101")

    async def flood():  # events under 64 KiB: RawPeer reads 16-bit frame lengths
        for i in range(400):
            lab.app[HUB].publish("feed", {"i": i, "pad": "x" * 60_000})
            if i % 20 == 19:
                await asyncio.sleep(0)

    deadline = time.monotonic() + 30
    lab.call(flood(), timeout=60)
    while not on_loop(lab, lambda: len(CLOSES_SENT)) and time.monotonic() < deadline:
        peer.send(PING)  # alive (it talks) but reads nothing: a slow consumer
        time.sleep(0.1)
    assert on_loop(lab, lambda: len(CLOSES_SENT))  # closed as a slow consumer
    time.sleep(1.5)  # five heartbeat intervals of silence after the Close was written
    peer.sock.settimeout(10)
    opcodes = []
    while CLOSE not in opcodes and (got := peer.frame()) is not None:
        opcodes.append(got[0])
    assert opcodes.count(CLOSE) == 1 and PING not in opcodes  # the Close came; no ping before it
    peer.sock.settimeout(1.0)
    with pytest.raises(TimeoutError):  # and nothing after it: no ping, no drop, until it answers
        peer.frame()
    peer.send(CLOSE, (1000).to_bytes(2, "big"))
    peer.sock.settimeout(10)
    assert peer.frame() is None  # its answer ends the connection
    peer.close()
