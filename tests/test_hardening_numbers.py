"""One canonical-number rule for every numeric query parameter (validate.query_integer / query_number).

A number in a query is plain ASCII decimal: no sign, no leading zero, no `_`, no spaces, no other
digits (Arabic-Indic, fullwidth), no nan/inf, no hex. The echo size, the clock's rate and count, and
the feed's and chat's since/wait all refuse the same spellings with 422 problem+json naming the
parameter, and accept the canonical ones.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import quote

import pytest

NOT_CANONICAL = ["+1", "01", "1_0", " 1", "1 ", "\u0661", "\uff11", "0x10", "nan", "inf", "-0", "", "1e0"]
NOT_CANONICAL_NUMBER = ["+1", "01", "1_0", " 1", "\u0661", "nan", "inf", "-inf", ".5", "5.", "0x1", ""]

INTEGER_PARAMS = [("/api/echo", "size"), ("/ws/clock", "count"), ("/api/feed", "since"),
                  ("/api/chat/messages", "since"), ("/sse/feed", "since")]
NUMBER_PARAMS = [("/ws/clock", "rate"), ("/api/feed", "wait")]


def get(lab, target: str) -> tuple[int, str, bytes]:
    with socket.create_connection(("127.0.0.1", lab.port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        sock.settimeout(3)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:  # a stream (SSE) that was accepted: its head is what we check
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    content_type = next((line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                         if line.lower().startswith(b"content-type:")), "")
    return int(head.split()[1]), content_type, body


@pytest.mark.parametrize("path, name", INTEGER_PARAMS)
@pytest.mark.parametrize("raw", NOT_CANONICAL, ids=[repr(r) for r in NOT_CANONICAL])
def test_non_canonical_integers_are_refused_everywhere(lab, path, name, raw):
    status, content_type, body = get(lab, f"{path}?{name}={quote(raw)}")
    assert status == 422 and content_type == "application/problem+json", (path, raw, status)
    assert json.loads(body)["errors"][0]["field"] == name


@pytest.mark.parametrize("path, name", NUMBER_PARAMS)
@pytest.mark.parametrize("raw", NOT_CANONICAL_NUMBER, ids=[repr(r) for r in NOT_CANONICAL_NUMBER])
def test_non_canonical_numbers_are_refused_everywhere(lab, path, name, raw):
    status, content_type, body = get(lab, f"{path}?{name}={quote(raw)}")
    assert status == 422 and content_type == "application/problem+json", (path, raw, status)
    assert json.loads(body)["errors"][0]["field"] == name


@pytest.mark.parametrize("target, status", [
    ("/api/echo?size=0", 200), ("/api/echo?size=10", 200), ("/api/echo?size=1048577", 413),
    ("/api/feed?since=0", 200), ("/api/feed?wait=0.5&since=0", 200), ("/api/feed?wait=1e-1", 200),
    ("/api/chat/messages?since=0", 200),
])
def test_canonical_numbers_are_accepted(lab, target, status):
    assert get(lab, target)[0] == status


@pytest.mark.parametrize("query", ["rate=2", "rate=0.5", "rate=1e1", "count=3", "rate=100&count=1"])
def test_clock_accepts_canonical_numbers(lab, query):
    import asyncio

    from websockets.asyncio.client import connect

    async def first_tick() -> dict:
        async with connect(f"{lab.ws_url}/ws/clock?{query}", compression=None, open_timeout=10) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 15))

    assert asyncio.run(first_tick())["type"] == "tick"
