"""Property-based fuzzing of every HTTP route, from the lab's own OpenAPI document, plus hostile inputs.

schemathesis generates requests that fit the document (they must be accepted) and requests that break
it (they must be refused with a 4xx); every answer must be documented (status, content type, body
schema, headers) and never a 5xx. Examples per operation are bounded and derandomized, so a run is
reproducible. The hand-written tests below send what schemathesis never builds: broken HTTP framing,
oversized headers, bad encodings, deeply nested JSON.
"""

from __future__ import annotations

import json
import logging
import socket

import pytest
import requests
import schemathesis
import urllib3
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from labkit.routes.docs import openapi_document
from labkit.server.app import make_app
from labkit.streaming.hub import HUB

EXAMPLES_PER_OPERATION = 60
REFUSED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
"""Statuses that count as "refused" for schema-breaking requests (413: above the lab's size limit)."""

POLLS = {"/api/feed": "feed", "/api/chat/messages": "chat", "/sse/feed": "feed",
         "/api/iot/devices/{device}/commands": None}
"""Poll routes: a schema-valid `since` the topic has not reached yet is refused (422, documented).
The value names the topic to seed (None: a topic per device, left empty)."""
SEEDED_EVENTS = 3
"""Events published before fuzzing a poll route, so small `since` values are answered with 200."""

_config = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": REFUSED}}}
)
schema = schemathesis.openapi.from_dict(openapi_document(make_app()), config=_config)

SSE_EVENTS_READ = 3
"""An event stream never ends: the fuzz run reads this many events of it (bounded), then hangs up."""
SSE_READ_TIMEOUT_S = 2.0
"""...or stops reading when no byte came for this long (then validates what it read)."""
FEED_TICK_HZ = 50
"""The feed ticks while /sse/feed is fuzzed, so each stream has events to read at once."""


class BoundedStreamSession(requests.Session):
    """A requests session that reads at most SSE_EVENTS_READ events of a text/event-stream answer and
    then closes the connection; other answers are read whole. schemathesis validates each event read
    against the document's event schema."""

    def send(self, request, **kwargs):
        kwargs["stream"] = True
        response = super().send(request, **kwargs)
        if not response.headers.get("Content-Type", "").startswith("text/event-stream"):
            response.content  # noqa: B018 - read the whole (finite) answer
            return response
        body = b""
        try:
            for chunk in response.raw.stream(1024, decode_content=True):
                body += chunk
                if body.count(b"\n\n") >= SSE_EVENTS_READ:
                    break
        except (requests.exceptions.RequestException, OSError, urllib3.exceptions.HTTPError):
            pass  # no event within the read timeout: validate what arrived
        response.close()
        complete = body[: body.rfind(b"\n\n") + 2] if b"\n\n" in body else b""
        response._content, response._content_consumed = complete, True
        return response


@pytest.fixture
def lab(make_lab):
    """The fuzzed lab: chat's per-member rate limit out of the way (fuzzing posts as fast as it can)."""
    return make_lab(chat_rate=1e9, chat_burst=10**9)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def _since_ahead(case, response) -> bool:
    """The documented state refusal: 422 naming `since` (or SSE's Last-Event-ID) as never published,
    and it really is above the newest SEQ the problem reports."""
    if case.operation.path not in POLLS or response.status_code != 422:
        return False
    problem = response.json()
    errors = problem.get("errors") or [{}]
    field = errors[0].get("field")
    if field == "Last-Event-ID":
        since = (case.headers or {}).get("Last-Event-ID", "").rpartition(":")[2]
    else:
        since = case.query.get("since") if isinstance(case.query, dict) else None
    return (errors == [{"field": field, "message": "never published"}] and since is not None
            and isinstance(problem.get("last_seq"), int) and int(since) > problem["last_seq"])


STATE_REFUSALS = {("Idempotency-Key", "reused for another request"), ("account", "no such account")}
"""422s that depend on what the server holds, not on the request's form (documented): an
Idempotency-Key that earlier examples used with another body, a payment from an account that was
never opened."""


def _state_refusal(response) -> bool:
    if response.status_code != 422:
        return False
    errors = response.json().get("errors") or [{}]
    return all((e.get("field"), e.get("message")) in STATE_REFUSALS or _precis_refusal(e)
               for e in errors)


def _precis_refusal(error: dict) -> bool:
    """A chat name refused by RFC 8265 (a code point PRECIS disallows, such as an unassigned one):
    documented in the name's schema description, beyond what a JSON Schema pattern can say."""
    return error.get("field") == "name" and "RFC 8265" in str(error.get("message", ""))


def _number_refusal(response) -> bool:
    """A lab-wide rule beyond a schema's types: an integer of more than MAX_JSON_INT_DIGITS digits,
    anywhere in a body (free-form note fields included), is 400 (labkit/server/validate.py)."""
    from labkit.server.validate import MAX_JSON_INT_DIGITS

    return (response.status_code == 400
            and f"integers may have at most {MAX_JSON_INT_DIGITS}" in response.text)


def valid_data_accepted(ctx, response, case):
    """positive_data_acceptance, except for the documented state refusals (`_since_ahead`,
    `STATE_REFUSALS`, a PRECIS name) and the lab-wide number bound (`_number_refusal`)."""
    if _since_ahead(case, response) or _state_refusal(response) or _number_refusal(response):
        return True
    return positive_data_acceptance(ctx, response, case)


def _seed_topic(lab, path: str) -> None:
    """Give a poll route's topic a few events (once per lab), so small `since` values get a 200."""
    name = POLLS.get(path)
    if name is None or name in lab.app[HUB].topics:
        return
    for i in range(SEEDED_EVENTS):
        if name == "chat":  # through the route: the room creates its topic with its own limits
            body = json.dumps({"name": "seed", "text": f"message {i}"}).encode()
            assert answer(lab, json_post("/api/chat/messages", body))[0] == 201
        else:
            lab.app[HUB].publish(name, {"seed": i})


def _no_long_polls(case) -> None:
    """A valid `wait` becomes 0 (a long poll would hold each example for up to 30 s); invalid ones stay."""
    if not isinstance(case.query, dict) or "wait" not in case.query:
        return
    try:
        wait = float(case.query["wait"])
    except (TypeError, ValueError):
        return
    if 0 < wait <= 30:
        case.query["wait"] = 0


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_every_operation_keeps_its_contract(case, lab):
    _seed_topic(lab, case.operation.path)
    _no_long_polls(case)
    checks = [*CHECKS, negative_data_rejection, valid_data_accepted]
    if case.operation.path == "/sse/feed":
        _feed_ticking(lab)
        with BoundedStreamSession() as session:
            case.call_and_validate(base_url=lab.url, session=session, checks=checks,
                                   timeout=(5, SSE_READ_TIMEOUT_S))
        return
    case.call_and_validate(base_url=lab.url, timeout=10, checks=checks)


def _feed_ticking(lab) -> None:
    """Start the feed ticker once per lab, so a fuzzed stream has live events to read."""
    body = json.dumps({"rate_hz": FEED_TICK_HZ}).encode()
    status, _, _ = answer(lab, json_post("/api/feed/source", body))
    assert status == 200


def test_fuzzed_document_is_the_served_one(lab):
    import urllib.request

    with urllib.request.urlopen(f"{lab.url}/openapi.json", timeout=5) as response:
        served = json.load(response)
    assert served["paths"] == json.loads(json.dumps(openapi_document(make_app())["paths"]))
    fuzzed = {(op.method.upper(), op.path) for op in (r.ok() for r in schema.get_all_operations())}
    assert ("POST", "/api/notes") in fuzzed and ("PATCH", "/api/notes/{id}") in fuzzed
    assert {("POST", "/api/chat/messages"), ("POST", "/api/feed/source"), ("GET", "/sse/feed")} <= fuzzed
    assert len(fuzzed) >= 15


# -- hostile inputs schemathesis does not build ---------------------------------------------------------
def exchange(lab, data: bytes, *, half_close: bool = False, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection; return everything the server sent until it closed."""
    with socket.create_connection(("127.0.0.1", lab.port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def request(method: str, target: str, headers=(), body: bytes = b"", *, close: bool = True) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"] + (["Connection: close"] if close else [])
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def responses(raw: bytes) -> list[tuple[int, dict, bytes]]:
    """Split what came back into (status, headers, body) answers (Content-Length framed)."""
    answers = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        length = int(headers.get("content-length", len(rest)))
        answers.append((int(status_line.split()[1]), headers, rest[:length]))
        raw = rest[length:]
    return answers


def answer(lab, data: bytes, **options) -> tuple[int, dict, bytes]:
    (only,) = responses(exchange(lab, data, **options))
    return only


def problem_of(headers: dict, body: bytes, status: int) -> dict:
    assert headers["content-type"].startswith("application/problem+json")
    doc = json.loads(body)
    assert doc["status"] == status and doc["detail"]
    return doc


def assert_healthy(lab) -> None:
    status, _, body = answer(lab, request("GET", "/healthz"))
    assert (status, json.loads(body)) == (200, {"status": "ok"})


def json_post(path: str, body: bytes, content_type: str = "application/json", method: str = "POST"):
    return request(method, path, [("Content-Type", content_type), ("Content-Length", len(body))], body)


# Broken HTTP framing never reaches the app: aiohttp's parser answers 400 (text/plain, not
# problem+json: there is no request to hand to a middleware yet) and closes the connection.
@pytest.mark.parametrize("name, data", [
    ("header line over 8190 bytes", request("GET", "/healthz", [("X-Big", "a" * 20_000)])),
    ("request line over 8190 bytes", request("GET", "/api/echo?pad=" + "a" * 20_000)),
    ("300 header fields", request("GET", "/healthz", [(f"X-H{i}", "v") for i in range(300)])),
    ("control character in a header", request("GET", "/api/notes/1", [("If-Match", '"\x7f')])),
    ("Content-Length and Transfer-Encoding", request(
        "POST", "/api/echo", [("Content-Length", 5), ("Transfer-Encoding", "chunked")], b"0\r\n\r\n")),
    ("negative Content-Length", request("POST", "/api/echo", [("Content-Length", -1)])),
    ("chunk size not hex", request(
        "POST", "/api/echo", [("Transfer-Encoding", "chunked")], b"zz\r\nhello\r\n0\r\n\r\n")),
    ("NUL in the method", b"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n"),
])
def test_broken_framing_gets_400_and_the_server_carries_on(lab, name, data):
    status, headers, _ = answer(lab, data)
    assert status == 400, name
    assert headers.get("connection", "close").lower() == "close"
    assert_healthy(lab)


@pytest.mark.parametrize("target, status", [
    ("/api/notes/%ZZ", 404),
    ("/api/notes/%C0%AF", 404),  # percent-encoded bytes that are not UTF-8
    ("/api/notes/1%00", 404),
    ("/api/echo?size=%ZZ", 422),
    ("/api/echo?size=%FF", 422),
    ("/api/notes?page=%G1", 422),
    ("/api/notes?per_page=1%00", 422),
])
def test_invalid_percent_encoding_is_a_clear_4xx(lab, target, status):
    got, headers, body = answer(lab, request("GET", target))
    assert got == status
    problem_of(headers, body, status)


def test_nul_bytes_in_json_strings_round_trip(lab):
    note = {"title": "a\u0000b", "body": "\u0000", "tags": ["\u0000t"]}
    status, headers, body = answer(lab, json_post("/api/notes", json.dumps(note).encode()))
    assert status == 201
    created = json.loads(body)
    status, _, body = answer(lab, request("GET", headers["location"]))
    assert status == 200
    assert {k: json.loads(body)[k] for k in note} == note == {k: created[k] for k in note}


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize("method, path, content_type, body", [
    ("POST", "/api/notes", "application/json", b"[" * 200_000 + b"]" * 200_000),
    ("POST", "/api/notes", "application/json", ('{"title": "t", "x": ' + _nested(5000) + "}").encode()),
    ("PUT", "/api/notes/1", "application/json", ('{"title": ' + _nested(2000) + "}").encode()),
    ("PATCH", "/api/notes/1", "application/merge-patch+json", ('{"body": ' + _nested(5000) + "}").encode()),
])
def test_deeply_nested_json_is_400_not_a_crash(lab, method, path, content_type, body):
    answer(lab, json_post("/api/notes", b'{"title": "target"}'))
    status, headers, reply = answer(lab, json_post(path, body, content_type, method))
    assert status == 400
    assert "nested deeper than" in problem_of(headers, reply, 400)["detail"]
    assert_healthy(lab)


@pytest.mark.parametrize("content_type, body, status", [
    ("application/json; charset=latin-1", '{"title": "é"}'.encode("latin-1"), 415),
    ("application/json; charset=utf-16", '{"title": "é"}'.encode("utf-16"), 415),
    ("application/json; charset=utf-8", '{"title": "é"}'.encode("latin-1"), 400),
    ("application/json", '{"title": "é"}'.encode("utf-16"), 400),
    ("text/plain; charset=utf-8", b'{"title": "t"}', 415),
    ('application/json; charset="UTF-8"', '{"title": "é"}'.encode(), 201),
])
def test_wrong_charset_or_encoding(lab, content_type, body, status):
    got, headers, reply = answer(lab, json_post("/api/notes", body, content_type))
    assert got == status
    if status >= 400:
        problem_of(headers, reply, status)


def _chunked(body: bytes, size: int = 65536) -> bytes:
    chunks = b"".join(f"{len(body[i:i + size]):x}\r\n".encode() + body[i:i + size] + b"\r\n"
                      for i in range(0, len(body), size))
    return chunks + b"0\r\n\r\n"


@pytest.mark.parametrize("path, headers", [
    ("/api/echo", []),
    ("/api/notes", [("Content-Type", "application/json")]),
])
def test_chunked_body_over_the_limit_is_413(make_lab, path, headers):
    lab = make_lab(max_body=4096)
    headers = [*headers, ("Transfer-Encoding", "chunked")]
    status, hdrs, reply = answer(lab, request("POST", path, headers, _chunked(b"x" * 5000, size=1000)))
    assert status == 413
    problem_of(hdrs, reply, 413)
    status, _, reply = answer(lab, request("POST", "/api/echo", [("Transfer-Encoding", "chunked")],
                                           _chunked(b"y" * 4096, size=1000)))
    assert (status, reply) == (200, b"y" * 4096)


def test_content_length_shorter_than_the_body(lab):
    # The bytes after the declared 5 are parsed as a second request, which is malformed. aiohttp
    # parses the whole buffer first, so it answers one 400 for both and closes; nothing is echoed.
    data = request("POST", "/api/echo", [("Content-Length", 5)], b"hello world", close=False)
    status, headers, body = answer(lab, data)
    assert status == 400 and b"hello" not in body.split(b"\n")[0]
    assert headers.get("connection", "close").lower() == "close"
    assert_healthy(lab)


def test_content_length_longer_than_the_body_drops_quietly(lab, caplog):
    data = request("POST", "/api/echo", [("Content-Length", 100)], b"hello")
    with caplog.at_level(logging.ERROR):
        assert exchange(lab, data, half_close=True) == b""  # nothing to answer: the client left
        assert_healthy(lab)
    assert not [r for r in caplog.records if r.name.startswith(("labkit", "aiohttp"))]


@pytest.mark.parametrize("headers, status, missing", [
    ([], 426, "Upgrade"),
    ([("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "8"),
      ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")], 426, "version"),
    ([("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13")], 400, "Key"),
    ([("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"),
      ("Sec-WebSocket-Key", "c2hvcnQ=")], 400, "Key"),
])
@pytest.mark.parametrize("path", ["/ws/echo", "/ws/session"])
def test_broken_websocket_handshake_says_what_is_missing(lab, path, headers, status, missing):
    got, hdrs, body = answer(lab, request("GET", path, headers))
    assert got == status
    assert missing in problem_of(hdrs, body, status)["detail"]
    if status == 426:  # RFC 9110 15.5.22 and RFC 6455 4.2.2
        assert hdrs["upgrade"].lower() == "websocket"
        assert hdrs["sec-websocket-version"] == "13"


# -- life cycle under concurrency and failure ----------------------------------------------------------
def test_concurrent_start_and_stop_run_one_server(tmp_path):
    import threading

    from labkit.server.config import LabConfig
    from labkit.server.runner import LabServer

    lab = LabServer(LabConfig(db=str(tmp_path / "lab.db")))
    try:
        starters = [threading.Thread(target=lab.start) for _ in range(4)]
        for t in starters:
            t.start()
        for t in starters:
            t.join(15)
        assert sum(t.name == "labkit-server" for t in threading.enumerate()) == 1
        assert_healthy(lab)
        assert lab.status()["open_websockets"] == 0
    finally:
        stoppers = [threading.Thread(target=lab.stop) for _ in range(4)]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(15)
    assert not lab.running
    assert not [t for t in threading.enumerate() if t.name == "labkit-server"]


def test_proxy_that_cannot_bind_leaves_no_thread_behind(lab):
    import threading

    from labkit.net.proxy import TcpProxy

    with TcpProxy("127.0.0.1", lab.port) as first:
        before = threading.active_count()
        with pytest.raises(OSError):
            TcpProxy("127.0.0.1", lab.port, port=first.port).start()
        assert threading.active_count() == before
