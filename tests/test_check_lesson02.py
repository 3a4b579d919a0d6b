"""Lesson 02 checkers accept a right answer, refuse a wrong one, and answer placeholders kindly."""

from __future__ import annotations

import labkit as lk
from labkit import check
from labkit.wire import accept_key


def test_websocket_accept():
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    assert check.websocket_accept(key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    assert check.websocket_accept(key, accept_key(key))
    assert not check.websocket_accept(key, "dGhlIHNhbXBsZSBub25jZQ==")
    assert not check.websocket_accept(key, None)


def test_frame_header_bytes():
    for size, masked, header in [(1, False, 2), (125, True, 6), (126, False, 4), (65535, True, 8),
                                 (65536, False, 10), (70000, True, 14)]:
        assert check.frame_header_bytes(size, masked, header)
        assert not check.frame_header_bytes(size, masked, header + 1)
    assert not check.frame_header_bytes(300, False, None)


def test_close_code():
    assert check.close_code("too_big", 1009)
    assert check.close_code("invalid_utf8", 1007)
    assert check.close_code("going_away", 1001)
    assert not check.close_code("too_big", 1000)
    assert not check.close_code("no such situation", 1000)


def test_rest_vs_websocket_bytes_remeasures(tmp_path):
    lab = lk.start(db=str(tmp_path / "lab.db"))
    try:
        assert not check.rest_vs_websocket_bytes(None)
        assert not check.rest_vs_websocket_bytes(1.0)
        feedback = check.rest_vs_websocket_bytes(1.0)
        measured = float(feedback.message.split(" B over REST")[0].split()[-1]) / float(
            feedback.message.split(" B over WebSocket")[0].split()[-1])
        assert check.rest_vs_websocket_bytes(measured)
        assert measured > 5  # a 16-byte echo: ~300+ B of HTTP vs ~40 B of frames
    finally:
        lab.stop()
        lk.stop()
    assert not check.rest_vs_websocket_bytes(10.0)  # no lab running: a kind "not yet"
