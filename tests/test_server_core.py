"""The foundation routes and the lab's life cycle, over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import labkit as lk
from labkit.clients.rest import RestClient
from labkit.clients.ws import WsClient
from labkit.server.config import LabConfig
from labkit.server.runner import LabServer, LabStartError

PROBLEM = "application/problem+json"


@pytest.fixture
def api(lab):
    with RestClient(lab) as client:
        yield client


def assert_problem(reply, status):
    assert reply.status == status
    assert reply.headers["Content-Type"].startswith(PROBLEM)
    body = reply.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    assert "Traceback" not in reply.text
    return body


# -- routes ------------------------------------------------------------------------------------
def test_index_json_lists_every_route(api, lab):
    routes = api.get("/", headers={"Accept": "application/json"}).json()["routes"]
    paths = {r["path"]: r for r in routes}
    for path in ("/", "/healthz", "/openapi.json", "/api/echo", "/ws/echo"):
        assert path in paths
    assert paths["/ws/echo"]["kind"] == "websocket"
    assert set(paths["/api/echo"]["methods"]) == {"GET", "POST"}
    served = {r.resource.canonical for r in lab.app.router.routes()}
    assert set(paths) == served


def test_index_html_by_default(api):
    reply = api.get("/")
    assert reply.headers["Content-Type"].startswith("text/html")
    assert "<table>" in reply.text and "/ws/echo" in reply.text


def test_healthz(api):
    assert api.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize("size", [0, 1, 1000, 65536])
def test_echo_get_returns_size_bytes(api, size):
    reply = api.get(f"/api/echo?size={size}")
    assert reply.status == 200 and len(reply.body) == size


@pytest.mark.parametrize("raw", ["x", "1.5", "-1", "", "1e3"])
def test_echo_get_bad_size_is_422_naming_the_field(api, raw):
    body = assert_problem(api.get(f"/api/echo?size={raw}"), 422)
    assert body["errors"][0]["field"] == "size"


def test_echo_get_over_limit_is_413(api, lab):
    body = assert_problem(api.get(f"/api/echo?size={lab.config.max_body + 1}"), 413)
    assert str(lab.config.max_body) in body["detail"]


def test_echo_post_returns_body_and_type(api):
    reply = api.post("/api/echo", data=b"\x00abc", headers={"Content-Type": "image/png"})
    assert reply.body == b"\x00abc" and reply.headers["Content-Type"] == "image/png"
    assert api.post("/api/echo", json={"a": 1}).json() == {"a": 1}


def test_echo_post_over_limit_is_413_and_server_keeps_serving(api, lab):
    assert_problem(api.post("/api/echo", data=b"y" * (lab.config.max_body + 1)), 413)
    assert api.get("/healthz").status == 200


def test_unknown_route_is_404_problem(api):
    assert_problem(api.get("/nope"), 404)


def test_wrong_method_is_405_with_allow(api):
    reply = api.delete("/healthz")
    assert_problem(reply, 405)
    assert set(reply.headers["Allow"].split(",")) == {"GET", "HEAD"}


def test_ws_echo_text_and_binary(lab):
    with WsClient(lab, "/ws/echo") as ws:
        assert ws.echo("héllo")[0] == "héllo"
        assert ws.echo(b"\x00\xff")[0] == b"\x00\xff"
        assert ws.echo("")[0] == ""


# -- Origin rule on WebSocket routes -----------------------------------------------------------------
async def _open(url, origin=None):
    async with connect(url, origin=origin, compression=None) as ws:
        await ws.send("x")
        return await ws.recv()


@pytest.mark.parametrize("origin", [None, "http://127.0.0.1:8888", "http://localhost:3000",
                                    "http://[::1]:8888", "http://127.0.0.2"])
def test_ws_accepts_loopback_or_no_origin(lab, origin):
    assert asyncio.run(_open(lab.ws_url + "/ws/echo", origin)) == "x"


@pytest.mark.parametrize("origin", ["https://evil.example", "http://192.168.1.5", "null",
                                    "http://localhost.evil.example"])
def test_ws_refuses_foreign_origin_with_403(lab, origin):
    with pytest.raises(InvalidStatus) as info:
        asyncio.run(_open(lab.ws_url + "/ws/echo", origin))
    assert info.value.response.status_code == 403
    assert info.value.response.headers["Content-Type"].startswith(PROBLEM)


def test_allowed_origins_option(make_lab):
    lab = make_lab(allowed_origins=["https://course.example"])
    assert asyncio.run(_open(lab.ws_url + "/ws/echo", "https://course.example")) == "x"
    with pytest.raises(InvalidStatus):
        asyncio.run(_open(lab.ws_url + "/ws/echo", "https://other.example"))


# -- life cycle --------------------------------------------------------------------------------------
def _can_bind(port):
    """True when a new server could listen on the port (SO_REUSEADDR, as every server sets)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
        return True


def _fd_count():
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None


def test_start_is_idempotent_and_new_options_restart(tmp_path):
    try:
        first = lk.start(db=str(tmp_path / "a.db"))
        assert lk.start(db=str(tmp_path / "a.db")) is first
        assert lk.current() is first
        second = lk.start(db=str(tmp_path / "b.db"))
        assert second is not first and not first.running and second.running
    finally:
        lk.stop()
    assert lk.current() is None


def test_twenty_cycles_leave_no_thread_socket_or_port(tmp_path):
    def cycle():
        with LabServer(LabConfig(db=str(tmp_path / "c.db"))) as lab, RestClient(lab) as api:
            assert api.get("/healthz").status == 200
        return lab.port

    cycle()  # warm up: the clients' loop thread and imports exist from here on
    threads, fds = threading.active_count(), _fd_count()
    ports = [cycle() for _ in range(20)]
    assert threading.active_count() == threads
    if fds is not None:
        # with aiodns installed (jupyterhub brings it), aiohttp's resolver is c-ares, whose channel
        # lets go of its pipe, epoll and inotify descriptors on a thread of its own a moment after
        # the session closed: wait for that (bounded), then every descriptor must be back
        deadline = time.monotonic() + 10
        while _fd_count() > fds and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _fd_count() <= fds
    assert all(_can_bind(port) for port in ports)


def test_stop_closes_websockets_with_1001_and_frees_port(lab):
    port = lab.port
    ws = WsClient(lab, "/ws/echo")
    ws.echo("before")
    lab.stop()
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=2)
    assert ws.connection.close_code == 1001
    assert _can_bind(port)


def test_port_in_use_raises_in_caller_with_advice():
    threads = threading.active_count()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(LabStartError, match="already in use"):
            LabServer(LabConfig(port=port)).start()
    assert threading.active_count() == threads  # the failed server's thread is gone too


def test_restart_keeps_port(lab):
    port = lab.port
    lab.restart()
    assert lab.port == port and lab.running


def test_status_counts_open_websockets(lab):
    with WsClient(lab, "/ws/echo") as ws:
        ws.echo("x")
        assert lab.status()["open_websockets"] == 1


def test_a_plain_aiohttp_client_gets_problem_json_for_an_unknown_path(lab):
    async def go():
        async with aiohttp.ClientSession() as s, s.get(lab.url + "/nope/") as r:
            return r.status, r.headers["Content-Type"]

    assert asyncio.run(go()) == (404, PROBLEM)


@pytest.mark.parametrize(("size", "accepted"), [(1023, True), (1024, True), (1025, False)])
def test_ws_message_limit_is_inclusive(make_lab, size, accepted):
    lab = make_lab(max_ws_message=1024)
    with WsClient(lab, "/ws/echo") as ws:
        if accepted:
            assert len(ws.echo(b"x" * size)[0]) == size
        else:
            with pytest.raises(ConnectionClosed):
                ws.echo(b"x" * size)
            assert ws.connection.close_code == 1009


# -- hardening wired into every app ----------------------------------------------------------------
@pytest.mark.parametrize("status, title", [(413, "Content Too Large"), (422, "Unprocessable Content")])
def test_problem_titles_use_rfc_9110_phrases(api, lab, status, title):
    target = f"/api/echo?size={lab.config.max_body + 1}" if status == 413 else "/api/echo?size=x"
    assert assert_problem(api.get(target), status)["title"] == title


def test_a_foreign_host_is_refused_before_its_body_is_waited_for(make_lab):
    """serve_app's body deadline runs after the Host check: a request for another host is 403 at
    once, however slowly its body comes; a loopback one waits for its body, then 408."""
    import socket

    lab = make_lab(body_timeout=1)
    answers = {}
    for host in ("evil.example", f"127.0.0.1:{lab.port}"):
        with socket.create_connection(("127.0.0.1", lab.port), timeout=10) as sock:
            sock.sendall(f"POST /api/notes HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                         "Content-Length: 100\r\n\r\n{".encode())
            answers[host] = sock.recv(65536).split(b"\r\n")[0]
    assert answers["evil.example"] == b"HTTP/1.1 403 Forbidden"
    assert answers[f"127.0.0.1:{lab.port}"] == b"HTTP/1.1 408 Request Timeout"


def test_sse_feed_is_described_event_by_event():
    from labkit.routes.docs import SSE_EVENT_SCHEMA, openapi_document
    from labkit.server.app import make_app

    doc = openapi_document(make_app())
    stream = doc["paths"]["/sse/feed"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    assert stream["schema"] == SSE_EVENT_SCHEMA
    assert set(SSE_EVENT_SCHEMA["properties"]) == {"event", "data", "id", "retry"}
    # the families' own declarations are not changed by building a document
    from labkit.routes import feed

    declared = feed.OPENAPI_PATHS["/sse/feed"]["get"]["responses"]["200"]["content"]
    assert declared["text/event-stream"]["schema"] is not SSE_EVENT_SCHEMA


def test_echo_streams_large_answers_whole(api):
    reply = api.get("/api/echo?size=1048576")
    assert reply.status == 200 and reply.body == b"x" * 1048576
    assert reply.headers["Content-Length"] == "1048576"


def test_a_missing_file_at_start_is_named_not_called_a_bind_error(monkeypatch):
    """A start that fails on a file (here the TLS certificate) says which file, instead of
    "Cannot bind 127.0.0.1:0", which would send the student after the wrong problem."""
    import errno

    import labkit.net.tls as tls
    from labkit.server.config import LabConfig
    from labkit.server.runner import LabServer, LabStartError

    def missing():
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "certs/lab.pem")

    monkeypatch.setattr(tls, "server_ssl_context", missing)
    with pytest.raises(LabStartError) as caught:
        LabServer(LabConfig(tls=True)).start()
    assert "could not start" in str(caught.value) and "certs/lab.pem" in str(caught.value)
    assert "Cannot bind" not in str(caught.value)
