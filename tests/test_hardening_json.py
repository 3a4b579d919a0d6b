"""Over-deep JSON is refused at every JSON entry point (HTTP bodies and WebSocket messages), never a crash.

Every entry point reads JSON through `validate.load_json`, which refuses nesting deeper than
MAX_JSON_DEPTH (and NaN/Infinity, which are not JSON). Over HTTP that is a 400 problem+json; over a
WebSocket an error message, and the connection stays open.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket

import pytest
from websockets.asyncio.client import connect

from labkit.routes.docs import openapi_document
from labkit.server.app import make_app
from labkit.server.validate import MAX_JSON_DEPTH, JSONInputError, load_json

DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000  # deep enough for Python's parser to give up
JSON_TYPES = ("application/json", "application/merge-patch+json")


def nested(depth: int) -> str:
    return '{"a": ' * (depth - 1) + "[1]" + "}" * (depth - 1)


def http(lab, method: str, path: str, content_type: str, body: bytes) -> tuple[int, str, bytes]:
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", lab.port), timeout=15) as sock:
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    content_type = re.search(rb"(?im)^content-type:\s*(\S+)", head)
    return int(head.split()[1]), (content_type[1].decode() if content_type else ""), rest


def json_operations() -> list[tuple[str, str, str]]:
    """(method, path with ids filled in, media type) of every operation that takes a JSON body."""
    found = []
    for path, item in openapi_document(make_app())["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict):
                continue
            for media in operation.get("requestBody", {}).get("content", {}):
                if media in JSON_TYPES:
                    found.append((method.upper(), re.sub(r"\{[^}]+\}", "1", path), media))
    return found


OPERATIONS = json_operations()
CORE = {("POST", "/api/notes"), ("PUT", "/api/notes/1"), ("PATCH", "/api/notes/1"),
        ("POST", "/api/chat/messages"), ("POST", "/api/feed/source")}


def test_the_core_json_routes_are_all_found():
    assert {(m, p) for m, p, _ in OPERATIONS} >= CORE


@pytest.mark.parametrize("method, path, media", OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
@pytest.mark.parametrize("body", [DEEP_ARRAY, nested(MAX_JSON_DEPTH + 1).encode()],
                         ids=["100000-deep", "one-level-too-deep"])
def test_over_deep_json_body_is_a_4xx_problem(lab, method, path, media, body):
    http(lab, "POST", "/api/notes", "application/json", b'{"title": "target"}')  # so /api/notes/1 exists
    status, content_type, reply = http(lab, method, path, media, body)
    assert 400 <= status < 500 and content_type == "application/problem+json", (status, reply[:200])
    if (method, path) in CORE:
        assert status == 400 and "nested deeper than" in json.loads(reply)["detail"]
    assert http(lab, "GET", "/healthz", "application/json", b"")[0] == 200


def test_json_at_the_depth_limit_is_read():
    assert load_json(nested(MAX_JSON_DEPTH)) is not None
    with pytest.raises(JSONInputError, match="nested deeper"):
        load_json(nested(MAX_JSON_DEPTH + 1))
    with pytest.raises(JSONInputError, match="nested deeper"):
        load_json(DEEP_ARRAY)


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}', "{'a': 1}", "", "\udc80"])
def test_not_json_is_refused_with_a_reason(text):
    with pytest.raises(JSONInputError):
        load_json(text)
    with pytest.raises(JSONInputError):
        load_json(b"\xff\xfe")


async def _ws_exchange(url: str, message: str, skip_first: bool, follow_up: str) -> tuple[dict, str]:
    async with connect(url, compression=None, open_timeout=10) as ws:
        if skip_first:
            await asyncio.wait_for(ws.recv(), 10)  # welcome
        await ws.send(message)
        while True:  # skip pushed traffic (ticks, messages) until the answer to our message
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if reply.get("type") in ("error", "ack"):
                break
        await ws.send(follow_up)
        return reply, await asyncio.wait_for(ws.recv(), 10)  # the connection still answers


DEEP_MESSAGES = {"deep-array": DEEP_ARRAY.decode(),
                 "deep-text": '{"type": "message", "text": ' + nested(40) + "}",
                 "deep-rate": '{"rate": ' + nested(40) + "}"}


@pytest.mark.parametrize("path, skip_first, follow_up", [
    ("/ws/session", True, '{"op": "get"}'),
    ("/ws/clock?rate=0.1", False, "still here"),
    ("/ws/chat?name=deep", True, '{"type": "unknown"}'),
])
@pytest.mark.parametrize("message", list(DEEP_MESSAGES.values()), ids=list(DEEP_MESSAGES))
def test_over_deep_websocket_message_gets_an_error_and_the_socket_stays(lab, path, skip_first, follow_up,
                                                                      message):
    reply, after = asyncio.run(_ws_exchange(f"{lab.ws_url}{path}", message, skip_first, follow_up))
    if path.startswith("/ws/clock"):  # the clock acks anything; a deep {"rate": ...} is not a rate change
        assert reply["type"] == "ack" and "rate" not in reply
    else:
        assert reply["type"] == "error", reply
    assert json.loads(after)["type"] in ("state", "error", "ack")  # the connection still answers


def test_chat_websocket_error_names_json(lab):
    async def run() -> dict:
        async with connect(f"{lab.ws_url}/ws/chat?name=deep", compression=None) as ws:
            await asyncio.wait_for(ws.recv(), 10)
            await ws.send(DEEP_ARRAY.decode())
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    reply = asyncio.run(run())
    assert reply["type"] == "error" and "JSON" in reply["detail"]
