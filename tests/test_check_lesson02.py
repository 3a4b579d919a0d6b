"""Lesson 02 checkers accept a right answer, refuse the wrong ones a student would plausibly give
(naming the slip, not the value), and answer placeholders (None) with "not answered yet"."""

from __future__ import annotations

import base64
import hashlib

import pytest

import labkit as lk
from labkit import check
from labkit.net.wire import WEBSOCKET_GUID, accept_key

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RIGHT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.fixture(autouse=True)
def _first_attempt():
    """Each test starts as a student's first try (the second wrong answer gets a stronger hint)."""
    from labkit.check import _core

    _core.forget_attempts()


def test_placeholders_are_not_answered_yet():
    lk.stop()
    for feedback in (check.websocket_accept(KEY, None), check.frame_header_bytes(300, True, None),
                     check.close_code("invalid_utf8", None), check.rest_vs_websocket_bytes(None)):
        assert not feedback and not feedback.answered
        assert "not answered yet" in repr(feedback).lower()


def test_websocket_accept():
    assert check.websocket_accept(KEY, RIGHT)
    assert check.websocket_accept(KEY, accept_key(KEY))
    assert check.websocket_accept(KEY, RIGHT.encode())


@pytest.mark.parametrize(("wrong", "slip"), [
    (hashlib.sha1((KEY + WEBSOCKET_GUID).encode()).hexdigest(), "hex"),
    (base64.b64encode(hashlib.sha1(KEY.encode()).digest()).decode(), "GUID is missing"),
    (base64.b64encode(hashlib.sha1((KEY + " " + WEBSOCKET_GUID).encode()).digest()).decode(), "space"),
    (base64.b64encode(hashlib.sha256((KEY + WEBSOCKET_GUID).encode()).digest()).decode(), "SHA-256"),
    (KEY, "key itself"),
    (base64.b64encode((KEY + WEBSOCKET_GUID).encode()).decode(), "Hash before"),
    ("", "Not the value"),
])
def test_websocket_accept_names_the_slip(wrong, slip):
    feedback = check.websocket_accept(KEY, wrong)
    assert not feedback and slip in feedback.message
    assert RIGHT not in feedback.message


def test_frame_header_bytes():
    for size, masked, header in [(1, False, 2), (125, True, 6), (126, False, 4), (65535, True, 8),
                                 (65536, False, 10), (70000, True, 14)]:
        assert check.frame_header_bytes(size, masked, header)
        assert not check.frame_header_bytes(size, masked, header + 1)


@pytest.mark.parametrize(("wrong", "slip"), [
    (4, "masking key"),         # forgot the mask of a client frame
    (6, "length"),              # 300 does not fit the 7-bit field
    (14, "length"),             # used the 8-byte extension
    (2, "length"),
    (308, "leave the payload out"),
    (9, "Not quite"),
    (8.5, "whole number"),
    ("8", "whole number"),
    (float("nan"), "whole number"),
])
def test_frame_header_bytes_names_the_slip_for_300_masked(wrong, slip):
    feedback = check.frame_header_bytes(300, True, wrong)
    assert not feedback and slip in feedback.message


def test_close_code():
    assert check.close_code("too_big", 1009)
    assert check.close_code("invalid_utf8", 1007)
    assert check.close_code("going_away", 1001)
    for wrong in (1000, 1002, 1003, 1008, 1011, 1006, 1009, "1007", 1007.0):
        feedback = check.close_code("invalid_utf8", wrong)
        assert not feedback and "1007" not in feedback.message, wrong
    assert not check.close_code("no such situation", 1000)


def test_rest_vs_websocket_bytes_remeasures(tmp_path):
    lab = lk.start(db=str(tmp_path / "lab.db"))
    try:
        payload = b"x" * 64
        feedback = check.rest_vs_websocket_bytes(1.0, payload=payload)
        assert not feedback and feedback.answered
        again = check.rest_vs_websocket_bytes(1.0, payload=payload)  # second try: the numbers
        rest = float(again.message.split(" B over REST")[0].split()[-1])
        websocket = float(again.message.split(" B over WebSocket")[0].split()[-1])
        measured = rest / websocket
        assert check.rest_vs_websocket_bytes(measured, payload=payload)
        small = rest / websocket
        sixteen = check.rest_vs_websocket_bytes(99.0)  # the 16-byte payload costs more per byte
        assert not sixteen
        plausible_wrong = [websocket / rest, (rest / 2) / websocket, measured * 2, "3", None]
        for wrong in plausible_wrong[:-1]:
            assert not check.rest_vs_websocket_bytes(wrong, payload=payload), wrong
        assert "Upside down" in check.rest_vs_websocket_bytes(websocket / rest, payload=payload).message
        assert small > 2  # a 64-byte echo: ~300+ B of HTTP vs ~140 B of frames
    finally:
        lab.stop()
        lk.stop()
    assert not check.rest_vs_websocket_bytes(10.0)  # no lab running: a kind "not yet"


def test_rest_vs_websocket_bytes_on_a_class_server_measures_the_class_server(make_lab, lab,
                                                                              monkeypatch):
    """With `lab = lk.join(...)` in the notebook, the checker measures through a tap in front of
    the class server, where the student's REST requests carry the token (longer heads than on
    the kernel's own lab); it used to say "Start the lab first"."""
    import types

    import IPython

    from labkit.check.lesson02 import _measure_echo_bytes
    from labkit.course.classroom import join_url

    room = make_lab(student_tokens=("student-token",), instructor_token="instructor-token")
    joined = lk.join(join_url("127.0.0.1", room.port, "student-token"), sync_clock=False,
                     personal=False)
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace(user_ns={"lab": joined}))
    payload = b"x" * 64
    rest, websocket = _measure_echo_bytes(joined, payload)
    own_rest, own_websocket = _measure_echo_bytes(lab, payload)
    assert rest > own_rest and websocket == own_websocket   # the token rides on every request
    right = check.rest_vs_websocket_bytes(rest / websocket, payload=payload)
    assert right and f"({rest} B vs {websocket} B" in right.message
