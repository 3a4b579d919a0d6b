"""The wire tap over real sockets: handshake, frame anatomy, HTTP messages, counters, reset."""

from __future__ import annotations

import base64
import hashlib

import pandas as pd
import pytest

from labkit.clients.rest import RestClient
from labkit.clients.ws import WsClient
from labkit.net.wire import WEBSOCKET_GUID, WireTap, accept_key, tap


@pytest.fixture
def wiretap(lab):
    t = tap(lab)
    yield t
    t.stop()


def test_accept_key_matches_rfc_6455_example():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    key = "x3JJHMbDL1EzLkh9GBhXDw=="
    by_hand = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()
    assert accept_key(key) == by_hand


def test_handshake_is_recorded_and_accept_is_right(wiretap):
    ws = WsClient(wiretap.url("ws"), "/ws/echo")
    ws.close()
    request, response = wiretap.handshake()
    assert request.startswith("GET /ws/echo HTTP/1.1\r\n")
    assert response.startswith("HTTP/1.1 101 ")
    headers = dict(line.split(": ", 1) for line in request.strip().split("\r\n")[1:])
    answer = dict(line.split(": ", 1) for line in response.strip().split("\r\n")[1:])
    assert headers["Upgrade"].lower() == "websocket"
    assert answer["Sec-WebSocket-Accept"] == accept_key(headers["Sec-WebSocket-Key"])
    http = wiretap.http_messages()
    assert list(http["kind"]) == ["request", "response"]
    assert list(http["header_bytes"]) == [len(request), len(response)]
    assert list(http["body_bytes"]) == [0, 0]


@pytest.mark.parametrize(("size", "header"), [(0, 2), (1, 2), (125, 2), (126, 4), (65535, 4),
                                              (65536, 10)])
def test_frame_header_sizes_measured_from_real_frames(wiretap, size, header):
    ws = WsClient(wiretap.url("ws"), "/ws/echo")
    ws.echo(b"\x07" * size)
    ws.close()
    frames = wiretap.frames()
    data = frames[frames["opcode"] == "BINARY"]
    up = data[data["direction"] == "up"].iloc[0]
    down = data[data["direction"] == "down"].iloc[0]
    assert (up["header_bytes"], down["header_bytes"]) == (header + 4, header)
    assert (up["payload_bytes"], down["payload_bytes"]) == (size, size)
    assert up["wire_bytes"] == size + header + 4
    assert up["masked"] and not down["masked"]
    assert len(up["masking_key"]) == 8 and pd.isna(down["masking_key"])
    expected_field = size if size < 126 else (126 if size < 65536 else 127)
    assert (up["length_field"], down["length_field"]) == (expected_field, expected_field)
    assert up["fin"] and up["opcode_value"] == 2


def test_text_binary_close_and_ping_frames(wiretap):
    ws = WsClient(wiretap.url("ws"), "/ws/echo")
    ws.echo("héllo")
    ws.echo(b"\x00\x01")
    from labkit import _loop

    _loop.run(_ping(ws.connection))
    ws.close(1000, "bye")
    frames = wiretap.settle().frames()
    assert list(frames["opcode"]) == ["TEXT", "TEXT", "BINARY", "BINARY", "PING", "PONG",
                                      "CLOSE", "CLOSE"]
    text = frames.iloc[0]
    assert text["payload_bytes"] == len("héllo".encode()) == 6
    assert text["preview"] == "héllo"
    assert text["header_bits"].split()[0] == "10000001"  # FIN=1, RSV=000, opcode 0001
    closes = frames[frames["opcode"] == "CLOSE"]
    assert list(closes["close_code"]) == [1000, 1000]
    assert closes.iloc[0]["close_reason"] == "bye"
    assert wiretap.errors == []


async def _ping(conn):
    waiter = await conn.ping(b"hi")
    await waiter


def test_rest_messages_and_bytes_per_message(wiretap):
    api = RestClient(wiretap.url())
    api.get("/healthz")
    api.post("/api/echo", data=b"z" * 300)
    api.close()
    wiretap.settle()
    http = wiretap.http_messages()
    assert list(http["start_line"]) == ["GET /healthz HTTP/1.1", "HTTP/1.1 200 OK",
                                        "POST /api/echo HTTP/1.1", "HTTP/1.1 200 OK"]
    assert list(http["content_bytes"]) == [0, 16, 300, 300]
    assert http["conn"].nunique() == 1  # keep-alive: one connection for both
    total = int(http["wire_bytes"].sum())
    assert total == wiretap.bytes_up + wiretap.bytes_down
    messages = wiretap.messages()
    assert set(messages["protocol"]) == {"http"}
    assert int(messages["wire_bytes"].sum()) == total
    assert wiretap.totals()["connections"] == 1


def test_reset_zeroes_counts_and_keeps_parsing_open_sockets(wiretap):
    ws = WsClient(wiretap.url("ws"), "/ws/echo")
    ws.echo("before")
    wiretap.reset()
    assert (wiretap.bytes_up, wiretap.bytes_down, len(wiretap.frames())) == (0, 0, 0)
    ws.echo("after")
    frames = wiretap.frames()
    assert list(frames["preview"]) == ["after", "after"]
    assert wiretap.bytes_up == 6 + 5 and wiretap.bytes_down == 2 + 5
    ws.close()


def test_permessage_deflate_frames_are_flagged_and_decoded(wiretap):
    ws = WsClient(wiretap.url("ws"), "/ws/echo", compression="deflate")
    message = "the same words again " * 40
    assert ws.echo(message)[0] == message
    assert ws.echo(message)[0] == message
    ws.close()
    data = wiretap.frames().query("opcode == 'TEXT'")
    assert len(data) == 4 and data["rsv1"].all()
    assert (data["data_bytes"] == len(message)).all()
    assert (data["payload_bytes"] < len(message) / 4).all()
    assert wiretap.errors == []


def test_tap_accepts_url_and_tuple_targets(lab):
    for target in (lab.url, ("127.0.0.1", lab.port)):
        with WireTap(target) as t:
            assert RestClient(t.url()).get("/healthz").status == 200
            assert t.bytes_down > 0


def test_garbage_after_upgrade_is_reported_not_raised(wiretap):
    import socket

    with socket.create_connection(("127.0.0.1", wiretap.port)) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        sock.settimeout(5)
        sock.recv(1000)
    wiretap.settle()
    wiretap.http_messages()
    assert any("HTTP parse stopped" in e for e in wiretap.errors)


# -- re-running a cell, browser headers, the TCP/IP model, hand-made frames -------------------------
def test_tap_twice_gives_back_the_same_running_proxy(lab):
    first = tap(lab)
    try:
        with RestClient(first.url()) as api:
            api.get("/healthz")
        second = tap(lab)
        assert second is first and second.running
        assert second.totals()["http_messages"] == 0  # reset: a re-run cell starts from zero
        first.stop()
        third = tap(lab)
        assert third is not first and third.running
        third.stop()
    finally:
        first.stop()


def test_a_browser_like_request_head_weighs_what_browsers_send(wiretap):
    from labkit.net.wire import BROWSER_HEADERS

    with RestClient(wiretap.url(), headers=BROWSER_HEADERS) as browser, \
            RestClient(wiretap.url()) as kit:
        browser.post("/api/echo", data=b"x" * 16)
        kit.post("/api/echo", data=b"x" * 16)
    requests = wiretap.settle().http_messages().query("kind == 'request'")
    browser_head, kit_head = requests["header_bytes"].max(), requests["header_bytes"].min()
    assert 400 <= browser_head <= 900, browser_head
    assert browser_head > 2 * kit_head


def test_packet_model_counts_packets_acks_and_the_handshake():
    from labkit.net.wire import CONNECTION_PACKETS, MSS, SYN_BYTES, TCP_IP_HEADER, packet_model

    warm = packet_model([200], [300])     # request, answer (carrying the request's ACK), ACK
    assert warm["packets"] == 3
    assert warm["tcp_ip_header_bytes"] == 2 * TCP_IP_HEADER and warm["ack_bytes"] == TCP_IP_HEADER
    assert warm["total_bytes"] == 500 + 3 * TCP_IP_HEADER and warm["handshake_bytes"] == 0
    cold = packet_model([200], [300], new_connection=True)
    assert cold["packets"] == 3 + CONNECTION_PACKETS == 10
    assert cold["handshake_bytes"] == 2 * SYN_BYTES + TCP_IP_HEADER
    assert cold["teardown_bytes"] == 4 * TCP_IP_HEADER
    big = packet_model([3 * MSS + 1], [])   # 4 segments: a delayed ACK after two, the last one's
    assert big["tcp_ip_header_bytes"] == 4 * TCP_IP_HEADER and big["packets"] == 4 + 1 + 1
    assert packet_model([], [])["packets"] == 0


def test_count_packets_measures_what_the_model_says(lab):
    import sys

    from labkit.net.wire import count_packets

    counted = count_packets(lab, exchanges=3, pause_s=0.25)
    if sys.platform != "linux":
        assert counted is None
        return
    assert list(counted["transport"].unique()) == ["REST, keep-alive", "WebSocket"]
    assert len(counted) == 6 and set(counted["exchange"]) == {1, 2, 3}
    assert (counted["packets_model"] == 3).all()
    # the kernel's own counters: request, answer, and the ACK of the answer (delayed, not merged)
    assert (counted["packets_measured"] == counted["packets_model"]).all(), counted


def test_packet_table_keeps_the_measured_bytes_and_labels_the_model(wiretap):
    from labkit.net.wire import packet_table

    with WsClient(wiretap.url("ws"), "/ws/echo") as ws:
        wiretap.settle().reset()
        ws.echo(b"x" * 16)
        frames = wiretap.settle().frames()
    table = packet_table({"WebSocket": (frames, False), "new": (frames, True)})
    measured = table[table["part"].str.contains("measured")]
    assert list(measured["bytes"]) == [int(frames["wire_bytes"].sum())] * 2
    assert all("(model)" in p for p in table["part"] if "measured" not in p)
    assert "handshake + teardown (model)" in set(table.loc[table["case"] == "new", "part"])


def test_send_frames_fragments_a_text_message_utf8_is_checked_per_message(wiretap):
    from labkit.net.wire import send_frames

    word = "héllo".encode()
    split = send_frames(wiretap.url(), "/ws/echo", [("text", word[:2], False),
                                                    ("continuation", word[2:], True)])
    assert split == {"messages": ["héllo"], "close_code": 1000, "close_reason": ""}
    up = wiretap.settle().frames().query("direction == 'up' and opcode != 'CLOSE'")
    assert list(zip(up["opcode_value"], up["fin"], strict=True)) == [(1, False), (0, True)]
    broken = send_frames(wiretap.url(), "/ws/echo", [("text", b"\xff", True)])
    assert broken["messages"] == [] and broken["close_code"] == 1007


def test_deflate_memory_follows_zlibs_formulas():
    from labkit.net.wire import deflate_memory

    assert deflate_memory() == {"compressor_bytes": 2**17 + 2**17, "decompressor_bytes": 2**15,
                                "per_connection_bytes": 2**18 + 2**15}
    assert deflate_memory(10)["per_connection_bytes"] < deflate_memory(15)["per_connection_bytes"]


def test_a_class_servers_token_is_sent_but_never_shown(make_lab):
    """Through a tap in front of a class server the token goes along (the lab answers), and every
    head the tap shows has the credentials replaced by as many '*' (the byte counts stay true)."""
    import labkit as lk
    from labkit.course.classroom import join_url
    from labkit.net.wire import count_packets, redact

    room = make_lab(student_tokens=("student-token",), instructor_token="instructor-token")
    joined = lk.join(join_url("127.0.0.1", room.port, "student-token"), sync_clock=False,
                     personal=False)
    with WireTap(joined).start() as t:
        with RestClient(t.url()) as api:
            assert api.post("/api/echo", data=b"hi").status == 200
        with WsClient(t.url("ws"), "/ws/echo") as ws:
            assert ws.echo(b"x")[0] == b"x"
        request, _ = t.handshake()
        messages = t.settle().http_messages()
    secret = base64.b64encode(b"student:student-token").decode()
    shown = "".join(messages["head"]) + request + repr(list(messages["headers"]))
    assert "student-token" not in shown and secret not in shown
    assert "Authorization: Basic " + "*" * len(secret) in request
    assert all(len(head) == size for head, size in zip(messages["head"], messages["header_bytes"],
                                                        strict=True))
    assert redact(b"authorization: Bearer abc\r\n") == b"authorization: Bearer ***\r\n"
    counted = count_packets(joined, exchanges=1)
    if counted is not None:  # Linux
        assert list(counted["transport"]) == ["REST, keep-alive", "WebSocket"]
