"""Full duplex over an emulated link: ticks arrive while an upload is still going on one WebSocket;
over HTTP/1.1 the lab's echo answers only after the request has ended, while a streaming handler
answers while the request is still arriving. Order, never durations."""

from __future__ import annotations

import socket

from labkit.lessons.duplex import (
    HTTP_STREAMS,
    HTTP_WAITS,
    serve_streaming_echo,
    stop_streaming_echo,
    upload_during_push,
)


def test_the_server_pushes_during_a_websocket_upload_and_http_waits(lab):
    lines = []
    run = upload_during_push(lab, "4g", upload_bytes=200_000, progress=lines.append)
    events = run.events
    ws = events[events["protocol"] == "WebSocket"]
    chunks = ws[ws["what"] == "upload chunk"]
    assert chunks["bytes"].sum() > 200_000  # payload plus frame headers
    ticks = ws[ws["what"] == "tick"]
    inside = ticks["t_ms"].between(chunks["t_ms"].min(), chunks["t_end_ms"].max())
    assert inside.any(), "no tick was sent while the upload was arriving"
    assert run.summary["ticks_during_upload"] == int(inside.sum())
    waits = events[events["protocol"] == HTTP_WAITS].set_index("what")
    assert waits.loc["response (echo)", "t_ms"] >= waits.loc["POST request (upload)", "t_end_ms"]
    # the same HTTP/1.1 through the same link: a streaming handler's answer starts before the
    # request's last byte has arrived, and ends after it
    streams = events[events["protocol"] == HTTP_STREAMS].set_index("what")
    request, response = streams.loc["POST request (upload)"], streams.loc["response (echo)"]
    assert request["t_ms"] <= response["t_ms"] < request["t_end_ms"] <= response["t_end_ms"]
    assert run.summary["streamed_response_starts_after_request_ms"] < 0
    assert run.summary["http_response_starts_after_request_ms"] >= 0
    assert len(ws[ws["what"] == "ack"]) == len(chunks)
    assert len(lines) == 4 and lines[-1].startswith("done")


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_streaming_echo_answers_the_head_before_the_body_and_refuses_other_methods():
    listener = serve_streaming_echo()
    try:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as sock:
            sock.sendall(b"POST /s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nabcde")
            first = b""
            while b"abcde" not in first:  # the answer and the first half, before the rest is sent
                first += sock.recv(65536)
            assert first.startswith(b"HTTP/1.1 200 ") and b"transfer-encoding: chunked" in first.lower()
            sock.sendall(b"fghij")
            rest = b""
            while chunk := sock.recv(65536):
                rest += chunk
        assert rest == b"5\r\nfghij\r\n0\r\n\r\n"
        got = _exchange(listener.port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 405 ")
        assert _exchange(listener.port, b"NOT HTTP\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    finally:
        stop_streaming_echo(listener)


def test_the_heartbeat_sentence_is_the_labs_own_or_says_it_is_the_default(lab, make_lab):
    import labkit as lk
    from labkit.course.classroom import join_url
    from labkit.lessons.duplex import heartbeat_text
    from labkit.server.config import LabConfig

    interval = lab.config.ws_heartbeat
    assert heartbeat_text(lab) == (f"a ping after **{interval:g} to {2 * interval:g} s** of silence, "
                                   f"then one every **{interval:g} s** while the socket stays silent")
    tuned = make_lab(ws_heartbeat=7)  # the lab pings only a silent socket (MaskCheck)
    assert heartbeat_text(tuned).startswith("a ping after **7 to 14 s** of silence")
    room = make_lab(student_tokens=("student-token",), instructor_token="instructor-token")
    joined = lk.join(join_url("127.0.0.1", room.port, "student-token"), sync_clock=False,
                     personal=False)
    said = heartbeat_text(joined)
    assert f"every **{LabConfig().ws_heartbeat:g} s** while the socket stays silent by default" in said
    assert "ws_heartbeat" in said


def test_lesson_02s_lab_compression_memory_uses_the_window_the_lab_negotiates(lab):
    """The lab's side of a compressed socket, as lesson 02 prints it, is computed with the window
    the lab really answers in its handshake (`server_max_window_bits`), not a constant of its own."""
    import asyncio

    from websockets.asyncio.client import connect

    from labkit.lessons.duplex import lab_compression_memory
    from labkit.net.wire import deflate_memory

    async def negotiated() -> str:
        async with connect(f"{lab.ws_url}/ws/echo", compression="deflate") as ws:
            return ws.response.headers["Sec-WebSocket-Extensions"]

    extension = asyncio.run(negotiated())
    bits = int(extension.split("server_max_window_bits=")[1].split(";")[0])
    ours = lab_compression_memory()
    assert ours["window_bytes"] == 1 << bits
    assert ours["bytes"] < deflate_memory()["per_connection_bytes"]  # less than zlib's defaults
