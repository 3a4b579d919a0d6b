"""Lesson 10's servers, clients and links through real sockets on 127.0.0.1: HTTP/2 multiplexes
many requests over one connection (counted at the server), HTTP/3 crosses the UDP emulator
(datagrams counted), seeded UDP loss drops the same datagrams every time, the listener's cap
applies, Host and Origin are checked, and the head-of-line timelines show their pattern (order and
counts, never a speed)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

import pytest

from labkit._loop import run
from labkit.lessons.beyond_http1 import clients, experiments
from labkit.lessons.beyond_http1.servers import VersionServers
from labkit.net import tls
from labkit.net.netem import UdpLink
from labkit.server.listen import Limits


@pytest.fixture(scope="module")
def servers():
    with VersionServers() as started:
        if started.quic_error:
            pytest.skip(f"QUIC cannot run here: {started.quic_error}")
        yield started


def test_http2_carries_many_requests_over_one_connection(servers):
    before = servers.counters.tcp_connections
    before_h2 = servers.counters.requests.get("2", 0)
    result = run(clients.h2_multiplexed(servers.tcp_port, 50))
    assert servers.counters.tcp_connections - before == 1
    assert servers.counters.requests.get("2", 0) - before_h2 == 51  # the first request, then 50
    assert result.alpn == "h2" and len(result.items) == 50
    assert servers.counters.alpn.get("h2", 0) >= 1


def test_http1_patterns_open_the_connections_they_say(servers):
    for function, opened in ((clients.h1_sequential, 1), (clients.h1_parallel, 6),
                             (clients.h1_pipelined, 1)):
        before = servers.counters.tcp_connections
        result = run(function(servers.tcp_port, 12))
        assert servers.counters.tcp_connections - before == opened == result.connections
        assert [item.index for item in result.items] == list(range(12))
        assert result.alpn == "http/1.1"


def test_http3_goes_through_the_udp_emulator(servers):
    tcp_before = servers.counters.tcp_connections
    h3_before = servers.counters.requests.get("3", 0)
    with UdpLink("127.0.0.1", servers.udp_port, "loopback") as link:
        result = run(clients.h3_multiplexed(link.port, 20))
        up, down = link.datagrams["up"], link.datagrams["down"]
    assert servers.counters.requests.get("3", 0) - h3_before == 20
    assert servers.counters.tcp_connections == tcp_before  # no TCP at all
    assert result.alpn == "h3" and len(result.items) == 20
    assert up >= 2 and down >= 2  # the handshake and the streams crossed the link


def test_websocket_echoes_in_both_patterns(servers):
    before = servers.counters.ws_messages
    assert len(run(clients.ws_lockstep(servers.tcp_port, 10)).items) == 10
    assert len(run(clients.ws_streamed(servers.tcp_port, 10)).items) == 10
    assert servers.counters.ws_messages - before == 20


def test_websocket_over_http2_is_one_stream_of_one_h2_connection(servers):
    """RFC 8441: extended CONNECT on an HTTP/2 connection; the echoes come back on that stream."""
    connections, messages = servers.counters.tcp_connections, servers.counters.ws_messages
    h2_connections = servers.counters.alpn.get("h2", 0)
    result = run(clients.ws_h2_streamed(servers.tcp_port, 25))
    assert result.alpn == "h2" and [item.index for item in result.items] == list(range(25))
    assert servers.counters.tcp_connections - connections == 1
    assert servers.counters.alpn.get("h2", 0) - h2_connections == 1
    assert servers.counters.ws_messages - messages == 25


def test_websocket_frames_round_trip_through_the_hand_made_codec():
    buffer = bytearray()
    for payload in (b"", b"x" * 125, b"y" * 126, b"z" * 4000):
        masked = clients.ws_frame(payload)
        assert masked[0] == 0x81 and masked[1] & 0x80  # a text frame, masked (client to server)
        size = len(payload)
        buffer += bytes([0x81]) + (bytes([size]) if size < 126 else bytes([126]) + size.to_bytes(2, "big"))
        buffer += payload
    buffer += b"\x81"  # the first byte of a frame still on its way
    assert [len(m) for m in clients.ws_messages(buffer)] == [0, 125, 126, 4000]
    assert buffer == bytearray(b"\x81")


class _Sink(asyncio.DatagramProtocol):
    def __init__(self):
        self.received: list[bytes] = []

    def datagram_received(self, data, addr):
        self.received.append(data)


def _through_link(seed: int, count: int = 300) -> tuple[list[int], list[int]]:
    """Send `count` numbered datagrams through a lossy link to a sink; (dropped, arrived numbers)."""

    async def sink():
        loop = asyncio.get_running_loop()
        return await loop.create_datagram_endpoint(_Sink, local_addr=("127.0.0.1", 0))

    transport, protocol = run(sink())
    try:
        port = transport.get_extra_info("sockname")[1]
        with UdpLink("127.0.0.1", port, "loopback", loss=0.1, seed=seed) as link, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for i in range(count):
                sender.sendto(str(i).encode(), ("127.0.0.1", link.port))
                time.sleep(0.0005)
            deadline = time.monotonic() + 10
            while (len(protocol.received) + len(link.dropped["up"]) < count
                   and time.monotonic() < deadline):
                time.sleep(0.02)
            return link.dropped["up"], sorted(int(d) for d in protocol.received)
    finally:
        transport.close()


def test_seeded_udp_loss_drops_the_same_datagrams_every_time():
    dropped, arrived = _through_link(seed=7)
    again, arrived_again = _through_link(seed=7)
    other, _ = _through_link(seed=8)
    assert dropped == again and arrived == arrived_again
    assert 0 < len(dropped) < 300
    assert other != dropped
    # the drops are real: exactly the other datagrams arrived
    assert arrived == [i for i in range(300) if i not in set(dropped)]


def test_the_listener_cap_applies_to_the_tls_listener():
    with VersionServers(quic=False, limits=Limits(max_connections=2, per_peer_share=1.0)) as small:
        context = tls.client_ssl_context()
        held = [context.wrap_socket(socket.create_connection(("127.0.0.1", small.tcp_port), timeout=10),
                                    server_hostname="127.0.0.1") for _ in range(2)]
        try:
            raw = socket.create_connection(("127.0.0.1", small.tcp_port), timeout=10)
            try:  # over the cap: closed without an answer (during or right after the handshake)
                got = context.wrap_socket(raw, server_hostname="127.0.0.1").recv(1)
            except (ssl.SSLError, OSError):
                got = b""
            raw.close()
            assert got == b""
            assert small.listener is not None and small.listener.refused >= 1
        finally:
            for sock in held:
                sock.close()


def test_a_foreign_host_or_origin_is_refused(servers):
    import httpx

    async def ask():
        async with httpx.AsyncClient(http2=True, verify=tls.client_ssl_context()) as client:
            return await client.get(f"https://127.0.0.1:{servers.tcp_port}/healthz",
                                    headers={"host": "evil.example"})

    answer = run(ask())
    assert answer.status_code == 403
    assert answer.headers["content-type"] == "application/problem+json"

    async def foreign_origin():
        from websockets.asyncio.client import connect

        async with connect(f"wss://127.0.0.1:{servers.tcp_port}/ws/echo",
                           ssl=tls.client_ssl_context(), origin="https://evil.example"):  # type: ignore[arg-type]
            pass

    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        run(foreign_origin())
    assert refused.value.response.status_code == 403


def test_head_of_line_timelines_show_the_stall_pattern(servers):
    """HTTP/2: one TCP byte stream, so a modelled lost segment holds every later byte and cannot
    let a later stream pass (the server's own scheduling may, now and then: seen 0-2 of 30).
    HTTP/3: real dropped datagrams, and later streams overtake the ones that lost a packet (seen
    14-23 of 30 under loss, 2-7 without). Counts compared, never durations."""
    frame = experiments.hol_timeline(servers, "4g", loss=0.05, streams=30, gap_s=0.01, seed=3)
    summary = experiments.hol_summary(frame).set_index("protocol")
    assert frame.attrs["tcp_stalls"] >= 1 and frame.attrs["datagrams_dropped"] >= 1
    assert list(summary["streams"]) == [30, 30]
    assert summary.loc["HTTP/2", "delayed_over_1_rtt"] >= 2  # a stall holds several streams
    assert summary.loc["HTTP/3", "overtaken_streams"] > summary.loc["HTTP/2", "overtaken_streams"]


def test_header_bytes_shrink_with_hpack_and_qpack(servers):
    frame = experiments.header_bytes(servers, n=5)
    last = frame[frame["request"] == 5].set_index("protocol")["total"]
    first = frame[frame["request"] == 1].set_index("protocol")["total"]
    assert first["HTTP/1.1"] == last["HTTP/1.1"]  # HTTP/1.1 repeats every header
    assert last["HTTP/2 (HPACK)"] < first["HTTP/2 (HPACK)"]
    assert last["HTTP/3 (QPACK)"] < first["HTTP/3 (QPACK)"]
    assert last["WebSocket frame"] < last["HTTP/3 (QPACK)"] < last["HTTP/1.1"]


def test_the_lessons_figures_label_every_panel_and_name_every_pattern():
    import pandas as pd

    from labkit.plots import http_versions as charts

    grid = pd.DataFrame([{"profile": p, "loss": loss, "key": k, "n": 10, "total_ms": 100.0}
                         for p in ("loopback", "4g") for loss in (0.0, 0.02) for k in clients.PATTERNS])
    fig = charts.totals(grid)
    assert fig.layout.title.text and fig.layout.yaxis.title.text
    assert all(axis.title.text == "loss rate on the link" for axis in (fig.layout.xaxis, fig.layout.xaxis2))
    assert [t.name for t in fig.data if t.showlegend] == list(clients.PATTERNS)
    timeline = pd.DataFrame([{"protocol": p, "stream": i, "sent_ms": 10.0 * i, "done_ms": 10.0 * i + 60,
                              "overtaken_by": int(p == "HTTP/3" and i == 2)}
                             for p in ("HTTP/2", "HTTP/3") for i in range(5)])
    fig = charts.timeline(timeline)
    assert fig.layout.xaxis2.title.text == fig.layout.xaxis.title.text
    assert len(fig.data) == 4  # in order and overtaken, per protocol
    overtaken = next(t for t in fig.data if t.name == "HTTP/3: overtaken by a later stream")
    assert [y for y in overtaken.y if y is not None] == [2, 2]


@pytest.mark.parametrize("sends", ["nothing", "half a head", "a head one line at a time"])
def test_a_connection_without_a_whole_request_head_is_closed_after_the_keepalive_timeout(sends):
    """hypercorn has no head deadline and sends no 408 (ARCHITECTURE.md says so): its keep-alive
    timer closes a connection that is not serving a request, whatever it trickles in."""
    with VersionServers(quic=False, keepalive_timeout=1) as small:
        context = tls.client_ssl_context()
        context.set_alpn_protocols(["http/1.1"])
        with context.wrap_socket(socket.create_connection(("127.0.0.1", small.tcp_port), timeout=15),
                                 server_hostname="127.0.0.1") as sock:
            got = None
            if sends == "half a head":
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127")
            elif sends == "a head one line at a time":
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")
                try:
                    for _ in range(60):  # far longer than the timeout, unless the server closes
                        time.sleep(0.25)
                        sock.sendall(b"X-Slow: 1\r\n")
                except (ssl.SSLError, OSError):
                    got = b""  # closed while we were still sending
            if got is None:
                try:
                    got = sock.recv(100)
                except (ssl.SSLError, OSError):
                    got = b""
            assert got == b""  # closed, with no answer


@pytest.mark.timeout(60)
@pytest.mark.parametrize("alpn", ["http/1.1", "h2"])
def test_stop_ends_idle_connections_and_frees_the_port(alpn, caplog):
    """A client holding an idle connection (a student's own httpx client, say) does not keep
    stop() waiting: the served connections are aborted, the port is free, a second start works,
    and asyncio logs no error (a notebook would show it as an error output)."""
    servers = VersionServers(quic=False).start()
    context = tls.client_ssl_context()
    context.set_alpn_protocols([alpn])
    idle = context.wrap_socket(socket.create_connection(("127.0.0.1", servers.tcp_port), timeout=10),
                               server_hostname="127.0.0.1")
    try:
        assert idle.selected_alpn_protocol() == alpn
        if alpn == "h2":  # the client's preface and SETTINGS: hypercorn now serves an h2 connection
            idle.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        else:  # one whole exchange, then the connection stays open, idle (keep-alive)
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert idle.recv(100)  # the server answered on it
        port = servers.tcp_port
        servers.stop()
        try:
            got = idle.recv(100)
            while got:  # what the server still had on its way (an h2 GOAWAY), then the end
                got = idle.recv(100)
        except (ssl.SSLError, OSError):
            pass
        with socket.socket() as probe:  # the port is free again
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
    finally:
        idle.close()
    with VersionServers(quic=False) as again:
        import httpx

        with httpx.Client(verify=tls.client_ssl_context()) as client:
            assert client.get(again.url("/healthz")).json() == {"status": "ok"}
    assert [r.getMessage()[:80] for r in caplog.records if r.levelname == "ERROR"] == []


def test_stopped_servers_leave_no_certificate_folder_nor_exit_hook():
    """Each start makes a folder for the server's certificate; stop removes it and forgets it, so a
    kernel that starts lesson 10's servers many times does not pile up exit hooks or folders."""
    import atexit

    from labkit.lessons.beyond_http1 import servers as module

    before = set(module._LIVE_FOLDERS)  # (the module's shared servers may be running)
    VersionServers(quic=False).start().stop()  # the process's one-off hooks (its CA's folder)
    hooks = atexit._ncallbacks()
    for _ in range(2):
        with VersionServers(quic=False):
            (folder,) = module._LIVE_FOLDERS - before
            assert (folder / "server.pem").is_file()
        assert before == module._LIVE_FOLDERS and not folder.exists()
    assert atexit._ncallbacks() == hooks  # one hook for them all, registered at import


class _EchoSink(asyncio.DatagramProtocol):
    def __init__(self):
        self.received: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.received.append(data)
        assert self.transport is not None
        self.transport.sendto(data, addr)


@pytest.mark.parametrize("idle_expiry_s", [3600.0, 0.0])
def test_the_udp_link_forgets_client_addresses_and_keeps_serving_new_ones(monkeypatch, idle_expiry_s):
    """70 clients one after the other (more than MAX_CLIENTS = 64) all get through: the least
    recently active address is evicted when the link is full, or an idle one expires first."""
    from labkit.net.netem import udp

    monkeypatch.setattr(udp, "IDLE_EXPIRY_S", idle_expiry_s)

    async def sink():
        loop = asyncio.get_running_loop()
        return await loop.create_datagram_endpoint(_EchoSink, local_addr=("127.0.0.1", 0))

    transport, protocol = run(sink())
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(udp.MAX_CLIENTS + 6)]
    try:
        with UdpLink("127.0.0.1", transport.get_extra_info("sockname")[1]) as link:
            for i, client in enumerate(clients):  # one at a time: each address held before the next
                client.settimeout(10)
                client.sendto(f"{i}".encode(), ("127.0.0.1", link.port))
                assert client.recv(100) == f"{i}".encode()
            clients[0].sendto(b"again", ("127.0.0.1", link.port))  # forgotten, and served again
            assert clients[0].recv(100) == b"again"
            assert link.clients_refused == 0
            if idle_expiry_s:
                assert (link.clients_evicted, link.clients_expired) == (7, 0)
                assert link.clients == udp.MAX_CLIENTS
            else:
                assert (link.clients_evicted, link.clients_expired) == (0, len(clients))
                assert link.clients == 1
        assert len(protocol.received) == len(clients) + 1
    finally:
        for client in clients:
            client.close()
        transport.close()
