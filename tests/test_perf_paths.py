"""The fast paths of the serving guard behave like the slow ones did: behaviour only, never timing.

- `listen()` serves a protocol that reports its own end (the guarded aiohttp handler) without a
  wrapper, and still counts it: live and per-peer counts go up with each connection and back to 0.
- The head clock (one timer per connection, read instead of re-armed per request) still answers a
  head that trickles in on a kept-alive connection, after a served request, with 408 problem+json.
- The remembered Host decisions never turn a refused Host into an accepted one.
- `labkit bench`'s overhead figures carry n, p50, ratios, and a p99 only where n >= 100.
- A lab WebSocket's heartbeat is labkit's (`MaskCheck`), so aiohttp's per-chunk heartbeat callback
  is off; its HTTP parser is let go after the upgrade; its compressor is the small one, made at the
  first compressed message.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

from waiting import wait_until

from labkit.server import listen as serving
from labkit.server.config import LabConfig
from labkit.server.guard import GuardedRequestHandler
from labkit.server.runner import LabServer

WAIT_S = 10.0


def _get(sock: socket.socket, path: str, host: str = "127.0.0.1") -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return _read_answer(sock)


def _read_answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _listener(lab: LabServer):
    return lab._served.listener  # the lab's one listener (its counters)


def _until(condition, timeout: float = WAIT_S) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_guarded_connections_are_served_unwrapped_and_counted():
    with LabServer(LabConfig()) as lab:
        listener = _listener(lab)
        socks = [socket.create_connection(("127.0.0.1", lab.port), timeout=WAIT_S) for _ in range(3)]
        try:
            for sock in socks:
                assert _get(sock, "/healthz").startswith(b"HTTP/1.1 200")
            assert listener.live == 3 and listener.peer_count("127.0.0.1") == 3
            protocols = list(listener._live)
            assert len(protocols) == 3
            assert all(type(p) is GuardedRequestHandler for p in protocols)
        finally:
            for sock in socks:
                sock.close()
        assert _until(lambda: listener.live == 0 and listener.peer_count("127.0.0.1") == 0)


def test_a_plain_protocol_is_still_counted_through_its_wrapper():
    from labkit.server.listen import Limits, listen

    async def main():
        lost = asyncio.Event()

        class Echo(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport

            def data_received(self, data):
                self.transport.write(data)

            def connection_lost(self, exc):
                lost.set()

        listener = await listen(Echo, "127.0.0.1", 0, limits=Limits(max_connections=8))
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), WAIT_S) == b"ping"
        assert listener.live == 1 and listener.peer_count("127.0.0.1") == 1
        writer.close()
        await asyncio.wait_for(lost.wait(), WAIT_S)
        counts = (listener.live, listener.peer_count("127.0.0.1"))
        listener.close()
        await listener.wait_closed()
        return counts

    assert asyncio.run(main()) == (0, 0)


def test_a_late_head_after_a_served_request_still_gets_408():
    with LabServer(LabConfig(head_timeout=1.0)) as lab:
        with socket.create_connection(("127.0.0.1", lab.port), timeout=WAIT_S) as sock:
            for _ in range(3):  # back to back: the head clock is read, not re-armed
                assert _get(sock, "/healthz").startswith(b"HTTP/1.1 200")
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # a head that never completes
            answer = _read_answer(sock)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408")
        assert b"application/problem+json" in head
        assert json.loads(body)["status"] == 408


def test_after_a_408_the_server_half_closes_and_reads_what_the_client_still_sends(monkeypatch):
    """RFC 9112 9.6: a server that closed at once would answer the client's further bytes with an
    RST (the kernel resets a socket closed with unread input), which can destroy the 408 before it
    is read. The lab sends the 408, then its FIN, and reads and drops what still comes, so a
    client that keeps writing (a slow head) reads the whole 408, then the end, and is not reset.
    (The linger is made long here, so a slow machine cannot end it before the client's writes.)"""
    monkeypatch.setattr(serving, "LINGER_S", 60.0)
    with LabServer(LabConfig(head_timeout=0.5)) as lab:
        with socket.create_connection(("127.0.0.1", lab.port), timeout=WAIT_S) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
            answer = _read_answer(sock)  # the 408, then EOF: our side is done, theirs is open
            for _ in range(3):  # a full close would have reset the connection by the second one
                sock.sendall(b"a" * 1000)
                time.sleep(0.1)
            assert sock.recv(10) == b""  # still the clean end of the stream, not ECONNRESET
        assert answer.startswith(b"HTTP/1.1 408") and json.loads(answer.partition(b"\r\n\r\n")[2])


def _connection_tasks() -> int:
    """aiohttp's per-connection tasks alive on the running loop."""
    return sum(task.get_coro().__qualname__ == "RequestHandler.start" for task in asyncio.all_tasks())


async def _count_connection_tasks() -> int:
    return _connection_tasks()


def test_after_a_late_bodys_408_the_server_half_closes_and_reads_what_the_client_still_sends(
        monkeypatch):
    """The same rule for a body that does not arrive in time: the 408 (saying Connection: close),
    our FIN, and the rest of the body read and dropped, so the client is not reset. Once the
    client closes too, the connection is over: its task ends then (aiohttp's own read of an unread
    body would otherwise hold it up to 10 s for bytes the lab now drops)."""
    monkeypatch.setattr(serving, "LINGER_S", 60.0)  # only the client's close ends it here
    with LabServer(LabConfig(body_timeout=0.5)) as lab:
        with socket.create_connection(("127.0.0.1", lab.port), timeout=WAIT_S) as sock:
            sock.sendall(b"POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Length: 100000\r\n\r\nab")
            answer = _read_answer(sock)
            for _ in range(3):  # the body goes on arriving after the 408
                sock.sendall(b"c" * 1000)
                time.sleep(0.1)
            assert sock.recv(10) == b""  # the clean end of the stream, not ECONNRESET
            assert lab.call(_count_connection_tasks()) == 1
        wait_until(lambda: lab.call(_count_connection_tasks()) == 0, 5,
                   what="the connection's task ended after the client closed")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower()
        assert json.loads(body)["detail"] == "The request body did not arrive within 0.5 s."


def test_an_idle_kept_alive_connection_is_not_cut_by_the_head_clock():
    with (LabServer(LabConfig(head_timeout=0.5)) as lab,
          socket.create_connection(("127.0.0.1", lab.port), timeout=WAIT_S) as sock):
        assert _get(sock, "/healthz").startswith(b"HTTP/1.1 200")
        time.sleep(0.8)  # idle between requests: keep-alive's rule, not the head deadline
        assert _get(sock, "/healthz").startswith(b"HTTP/1.1 200")


def test_remembered_hosts_never_accept_a_refused_one():
    with (LabServer(LabConfig()) as lab,
          socket.create_connection(("127.0.0.1", lab.port), timeout=WAIT_S) as sock):
        for host in ("localhost", "127.0.0.1", "evil.example", "localhost", "evil.example"):
            status = _get(sock, "/healthz", host=host).split(b" ", 2)[1]
            assert status == (b"403" if host == "evil.example" else b"200"), host


def test_bench_overhead_figures_have_p99_only_with_enough_round_trips():
    from labkit.bench import OVERHEAD_PAIRS, _overhead_html, overhead_figures

    few = overhead_figures(n=20, warmup=5, rounds=1, startup_runs=1)
    assert {row["n"] for row in few["setups"].values()} == {20}
    assert all(row["p99_ms"] is None for row in few["setups"].values())
    assert [r["figure"] for r in few["ratios"]] == [pair[0] for pair in OVERHEAD_PAIRS]
    assert all(r["p99_ratio"] is None and r["p50_ratio"] > 0 for r in few["ratios"])
    assert "<th>p99" not in _overhead_html(few)  # no p99 column below n = 100
    enough = overhead_figures(n=100, warmup=5, rounds=1, startup_runs=1)
    assert all(row["p99_ms"] is not None for row in enough["setups"].values())
    assert all(r["p99_ratio"] is not None for r in enough["ratios"])
    assert "<th>p99 ratio</th>" in _overhead_html(enough)
    assert few["start_ms"] > 0 and few["cores"] >= 1


def test_a_lab_websocket_has_no_per_chunk_heartbeat_callback_and_a_small_compressor():
    import gc

    from websockets.asyncio.client import connect

    from labkit.server.websocket import DEFLATE_WINDOW_BITS, MaskCheck

    def open_sockets(lab) -> list[dict]:
        """What each of the lab's open WebSockets holds, read on the lab's own loop."""
        async def read():
            gc.collect()
            return [{"aiohttp_callback": o.inner._data_received_cb, "aiohttp_heartbeat": o.ws._heartbeat,
                     "timer": o.timer is not None, "compress": o.ws.compress,
                     "http_parser": o.inner._parser,
                     "compressor": type(o.ws._writer._compressobj).__name__,
                     "zlib_made": getattr(o.ws._writer._compressobj, "zlib", None) is not None}
                    for o in gc.get_objects() if isinstance(o, MaskCheck)
                    and o.transport.get_extra_info("sockname")[1] == lab.port and not o.ws.closed]
        return asyncio.run_coroutine_threadsafe(read(), lab._loop).result(WAIT_S)

    async def talk(lab, compression):
        async with connect(lab.ws_url + "/ws/echo", compression=compression) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            return open_sockets(lab)

    with LabServer(LabConfig()) as lab:
        plain, = asyncio.run(talk(lab, None))
        deflate, = asyncio.run(talk(lab, "deflate"))
    for held in (plain, deflate):  # aiohttp's per-chunk heartbeat is off, labkit's timer is armed
        assert held["aiohttp_callback"] is None and held["aiohttp_heartbeat"] is None and held["timer"]
        assert held["http_parser"] is None  # let go once the socket carries frames
    assert not plain["compress"] and plain["compressor"] == "NoneType"
    assert deflate["compress"] == DEFLATE_WINDOW_BITS
    assert deflate["compressor"] == "_SmallDeflate" and deflate["zlib_made"]
