"""Lesson 02's streaming HTTP handler (`StreamingEcho`) keeps the lab's head deadline and Host
check on its own listener: 408 problem+json when no whole request head arrived in time, 403 for a
foreign Host. Real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import time

import pytest

from labkit.lessons.duplex import serve_streaming_echo, stop_streaming_echo
from labkit.server import listen


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(data)
        got = b""
        while chunk := sock.recv(4096):
            got += chunk
        return got


@pytest.fixture
def echo():
    listener = serve_streaming_echo()
    yield listener
    stop_streaming_echo(listener)


def test_a_whole_head_in_time_is_served(echo):
    ok = _exchange(echo.port, b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\nabc")
    assert ok.startswith(b"HTTP/1.1 200") and ok.endswith(b"3\r\nabc\r\n0\r\n\r\n")


@pytest.mark.parametrize("sends", [b"", b"POST / HTTP/1.1\r\nHost: 127"])
def test_no_whole_head_in_time_gets_408(monkeypatch, sends):
    import labkit.server.config as config

    monkeypatch.setattr(config, "HEAD_TIMEOUT_S", 0.5)
    listener = serve_streaming_echo()
    try:
        got = _exchange(listener.port, sends)  # then nothing more: the server ends it
    finally:
        stop_streaming_echo(listener)
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and b"application/problem+json" in head
    assert b'"status": 408' in body


@pytest.mark.parametrize("host", [b"evil.example", b"evil.example:8888", b"127.0.0.1.nip.io"])
def test_a_foreign_host_gets_403_problem_json_and_no_echo(echo, host):
    got = _exchange(echo.port, b"POST / HTTP/1.1\r\nHost: " + host
                    + b"\r\nContent-Length: 6\r\n\r\nsecret")
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403") and b"application/problem+json" in head
    problem = json.loads(body)
    assert problem["status"] == 403 and host.split(b":")[0].decode() in problem["detail"]
    assert b"secret" not in got  # nothing of the body comes back


@pytest.mark.parametrize("host", [b"localhost", b"127.0.0.1:9", b"[::1]"])
def test_a_loopback_host_is_served(echo, host):
    ok = _exchange(echo.port, b"POST / HTTP/1.1\r\nHost: " + host + b"\r\nContent-Length: 2\r\n\r\nhi")
    assert ok.startswith(b"HTTP/1.1 200") and ok.endswith(b"2\r\nhi\r\n0\r\n\r\n")


def test_a_refused_body_still_arriving_does_not_reset_the_answer(echo, monkeypatch):
    """After the 403 the server half-closes and drops the rest of the body, so a client still
    sending reads the whole answer and then a clean end, not ECONNRESET (RFC 9112 9.6). (The
    linger is made long here, so a slow machine cannot end it before the client's writes.)"""
    monkeypatch.setattr(listen, "LINGER_S", 60.0)
    with socket.create_connection(("127.0.0.1", echo.port), timeout=15) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 100000\r\n\r\nab")
        got = b""
        while not got.endswith(b"}"):
            chunk = sock.recv(4096)
            assert chunk, f"the connection ended before the whole answer: {got!r}"
            got += chunk
        for _ in range(3):  # the body goes on arriving after the 403
            sock.sendall(b"c" * 1000)
            time.sleep(0.1)
        assert sock.recv(10) == b""
    assert got.startswith(b"HTTP/1.1 403") and b"connection: close" in got.lower()
