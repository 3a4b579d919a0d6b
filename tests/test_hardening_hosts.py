"""DNS rebinding: the lab answers only requests addressed to a loopback name, on every route.

A page on evil.example whose name resolves to 127.0.0.1 sends `Host: evil.example:PORT`. Every route
the lab serves (read from its own index, so a new route is covered the day it is added), WebSocket
upgrades included, must refuse it with 403 problem+json and change nothing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket

import pytest

from labkit.server.hostcheck import host_allowed, host_name

EVIL = "evil.example"


def raw_request(lab, method: str, target: str, host: str | None, headers=(), body: bytes = b"") -> tuple:
    """One request on a fresh connection; (status, headers, body) of the answer."""
    lines = [f"{method} {target} HTTP/1.1", "Connection: close"]
    lines += [f"Host: {host}"] if host is not None else []
    lines += [f"{k}: {v}" for k, v in headers] + [f"Content-Length: {len(body)}"] * bool(body)
    with socket.create_connection(("127.0.0.1", lab.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        data = b""
        while b"\r\n\r\n" not in data or (method != "HEAD" and not _complete(data)):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), hdrs, rest


def _complete(data: bytes) -> bool:
    head, _, rest = data.partition(b"\r\n\r\n")
    if head.split(b" ")[1:2] == [b"101"]:  # switched to WebSocket: the head is all there is
        return True
    match = re.search(rb"content-length:\s*(\d+)", head, flags=re.I)
    return match is not None and len(rest) >= int(match[1])


def upgrade_headers() -> list[tuple[str, str]]:
    key = base64.b64encode(os.urandom(16)).decode()
    return [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", key)]


def every_route(lab) -> list[tuple[str, str, bool]]:
    """(method, concrete path, is_websocket) for each route in the lab's own index."""
    status, _, body = raw_request(lab, "GET", "/", "127.0.0.1", [("Accept", "application/json")])
    assert status == 200
    routes = []
    for entry in json.loads(body)["routes"]:
        path = re.sub(r"\{[^}]+\}", "1", entry["path"])
        if entry["kind"] == "websocket":
            routes.append(("GET", path, True))
        else:
            routes += [(method, path, False) for method in entry["methods"]]
    return routes


def test_every_route_refuses_a_foreign_host(lab):
    routes = every_route(lab)
    assert len(routes) >= 20 and any(ws for _, _, ws in routes)
    body = json.dumps({"title": "planted", "name": "evil", "text": "hi", "rate_hz": 1}).encode()
    for method, path, websocket in routes:
        headers = upgrade_headers() if websocket else [("Content-Type", "application/json")]
        status, hdrs, reply = raw_request(lab, method, path, f"{EVIL}:{lab.port}", headers,
                                          body if method in ("POST", "PUT", "PATCH") else b"")
        assert status == 403, (method, path, status)
        assert hdrs["content-type"].startswith("application/problem+json"), (method, path)
        assert "DNS rebinding" in json.loads(reply)["detail"]
    # nothing was created or changed by the refused writes
    status, _, reply = raw_request(lab, "GET", "/api/notes", "127.0.0.1")
    assert status == 200 and json.loads(reply)["total"] == 0
    status, _, reply = raw_request(lab, "GET", "/api/chat/messages", "127.0.0.1")
    assert status == 200 and not [m for m in json.loads(reply) if m["data"]["name"] == "evil"]


@pytest.mark.parametrize("host", [
    EVIL, "localhost.evil.example", "127.0.0.1.evil.example", "evil.example:1", "[::2]", "10.0.0.1",
    "0.0.0.0", "", "localhost:80:80", "[::1", "locaIhost",
])
def test_foreign_or_malformed_hosts_are_refused(lab, host):
    status, hdrs, reply = raw_request(lab, "GET", "/healthz", host)
    assert status == 403
    assert json.loads(reply)["status"] == 403


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:{port}", "127.8.9.10",
    "lab.localhost:{port}",
])
def test_loopback_hosts_are_served(lab, host):
    status, _, reply = raw_request(lab, "GET", "/healthz", host.format(port=lab.port))
    assert (status, json.loads(reply)) == (200, {"status": "ok"})


def test_a_request_without_host(lab):
    # HTTP/1.1 requires Host (aiohttp's parser answers 400); an HTTP/1.0 tool may omit it and is
    # served: a browser, the DNS-rebinding vector, always sends Host.
    assert raw_request(lab, "GET", "/healthz", None)[0] == 400
    with socket.create_connection(("127.0.0.1", lab.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.0 200") and data.endswith(b'{"status": "ok"}')


def test_websocket_upgrade_with_a_foreign_host_is_not_upgraded(lab):
    for path in ("/ws/echo", "/ws/session", "/ws/chat?name=evil"):
        status, hdrs, _ = raw_request(lab, "GET", path, f"{EVIL}:{lab.port}", upgrade_headers())
        assert status == 403 and "upgrade" not in hdrs, path
        status, _, _ = raw_request(lab, "GET", path, f"localhost:{lab.port}", upgrade_headers())
        assert status == 101, path


def test_allowed_hosts_extend_the_loopback_set(make_lab):
    lab = make_lab(allowed_hosts=("lab.example",))
    assert raw_request(lab, "GET", "/healthz", f"lab.example:{lab.port}")[0] == 200
    assert raw_request(lab, "GET", "/healthz", f"{EVIL}:{lab.port}")[0] == 403
    anyone = make_lab(allowed_hosts=("*",))
    assert raw_request(anyone, "GET", "/healthz", f"{EVIL}:{anyone.port}")[0] == 200


def test_lk_start_takes_allowed_hosts_as_a_list():
    from labkit.server import runner

    lab = runner.start(allowed_hosts=["lab.example"])
    try:
        assert lab.config.allowed_hosts == ("lab.example",)
        assert raw_request(lab, "GET", "/healthz", "lab.example")[0] == 200
    finally:
        runner.stop()


@pytest.mark.parametrize("header, host", [
    ("localhost:8888", "localhost"), ("[::1]:80", "::1"), ("[::1]", "::1"), ("Example.COM", "example.com"),
    ("a:b", ""), ("[::1]x", ""),
])
def test_host_name_parsing(header, host):
    assert host_name(header) == host


def test_the_bound_address_is_allowed_unless_it_is_a_wildcard():
    assert host_allowed("192.168.1.5:8000", bound="192.168.1.5")
    assert not host_allowed("192.168.1.5:8000", bound="0.0.0.0")
    assert not host_allowed("0.0.0.0:8000", bound="0.0.0.0")
    assert host_allowed("[fe80::1]:1", bound="[fe80::1]")
