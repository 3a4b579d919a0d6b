"""Lesson 03 checkers: right answers accepted, the wrong answers a student would plausibly give
refused, and an untouched exercise (answer = None) told it is not answered yet."""

from __future__ import annotations

import pandas as pd
import pytest

import labkit as lk


def run_frame(rtt: dict, bytes_total: dict | None = None, ws_setup_ms: float = 100.0,
              keepalive_first_ms: float = 100.0, n: int = 9):
    """A frame shaped like lk.compare_transports' answer: n round trips per transport, each
    transport's round trips spread evenly around its median, bytes split half up, half down."""
    rows = []
    for transport, median in rtt.items():
        for i in range(n):
            total = (bytes_total or {}).get(transport, 0)
            rows.append({"transport": transport, "payload_bytes": 64, "trial": i,
                         "rtt_ms": median + (i - n // 2) * 0.5, "bytes_up": total // 2,
                         "bytes_down": total - total // 2,
                         "new_connection": transport == "rest-new", "tls": False})
    frame = pd.DataFrame(rows)
    frame.attrs["setup_ms"] = {"websocket": {64: [ws_setup_ms]},
                               "rest-keepalive": {64: [keepalive_first_ms]}}
    return frame


G4 = run_frame({"rest-new": 102.0, "rest-keepalive": 51.0, "websocket": 50.0},
               {"rest-new": 520, "rest-keepalive": 500, "websocket": 150})


def test_unanswered_exercises_say_so():
    for feedback in (lk.check.new_connection_round_trips(None, G4),
                     lk.check.websocket_break_even(None, G4),
                     lk.check.header_bytes_saved(None, G4)):
        assert not feedback
        assert "not answered yet" in repr(feedback).lower()


def test_new_connection_round_trips():
    assert lk.check.new_connection_round_trips(2, G4)
    assert lk.check.new_connection_round_trips(2.0, G4)
    for wrong in (1, 3, 4, "two"):          # forgot the handshake, counted TLS, ...
        assert not lk.check.new_connection_round_trips(wrong, G4)
    assert not lk.check.new_connection_round_trips(2, None)   # no frame passed


def test_break_even_is_the_first_n_of_the_runs_own_model():
    # websocket: 100 ms set-up + 50 ms per message; rest-new: 102 ms per message
    # N = 1: 150 vs 102 (WebSocket loses), N = 2: 200 vs 204 (wins): the answer is 2
    assert lk.check.websocket_break_even(2, G4)
    first_wrong = lk.check.websocket_break_even(1, G4)
    assert not first_wrong and "not ahead yet" in first_wrong.message
    assert not lk.check.websocket_break_even(3, G4)
    for wrong in (0, 2.5, 10, "2 messages"):
        assert not lk.check.websocket_break_even(wrong, G4)
    # the same checker follows another run: a bigger set-up moves the break-even
    slow_setup = run_frame({"rest-new": 102.0, "rest-keepalive": 51.0, "websocket": 50.0},
                           ws_setup_ms=400.0)
    assert lk.check.websocket_break_even(8, slow_setup)      # 400 + 8 x 50 = 800 < 816
    assert not lk.check.websocket_break_even(2, slow_setup)


def test_a_hint_does_not_give_the_value_away():
    hint = lk.check.websocket_break_even(5, G4).message
    assert "2" not in hint.replace("lk.latency", "")
    hint = lk.check.header_bytes_saved(100, G4).message
    assert "350" not in hint


def test_header_bytes_saved():
    assert lk.check.header_bytes_saved(350, G4)               # 500 - 150
    for wrong in (500, 150, 650, 370, -350):                  # total REST, total WS, sum, ...
        assert not lk.check.header_bytes_saved(wrong, G4)
    uncounted = G4.assign(bytes_up=None, bytes_down=None)
    assert not lk.check.header_bytes_saved(350, uncounted)


@pytest.mark.timeout(60)
def test_parallel_prediction_measures_and_refuses_the_lock_step_answers(lab):
    rtt = lk.netem.profile("4g").rtt_ms
    assert lk.check.parallel_prediction(10 * rtt, lab, messages=30, connections=3)
    assert not lk.check.parallel_prediction(None, lab)
    for wrong in (30 * rtt, 5 * rtt, rtt, 10 * rtt / 1000):   # lock-step, 6 connections, one, seconds
        assert not lk.check.parallel_prediction(wrong, lab, messages=30, connections=3)


@pytest.mark.timeout(60)
def test_new_connection_prediction_measures_and_refuses_one_or_three_round_trips(lab):
    rtt = lk.netem.profile("intercontinental").rtt_ms
    assert lk.check.new_connection_prediction(2 * rtt, lab)
    assert not lk.check.new_connection_prediction(None, lab)
    for wrong in (rtt, 3 * rtt, 2 * rtt / 1000):       # no handshake, with TLS, seconds
        assert not lk.check.new_connection_prediction(wrong, lab)
    assert "seconds" in lk.check.new_connection_prediction(0.3, lab).message


def test_websocket_bytes_saved_counts_the_handshake_measured_now(lab):
    """100 echoes: 100 x (500 - 150) B saved per echo minus the handshake the checker measures
    through its own tap (the same for every client of compare_transports)."""
    from labkit.check.lesson03 import _handshake_bytes

    handshake = _handshake_bytes(lab)
    assert 300 < handshake < 700    # a GET with Upgrade headers and a 101 answer
    right = 100 * 350 - handshake
    assert lk.check.websocket_bytes_saved(right, G4, lab)
    assert lk.check.websocket_bytes_saved(right + 10, G4, lab)           # a byte count or two apart
    for wrong in (100 * 350, 100 * 350 + handshake, 350, -right,   # no handshake, added, one echo
                  100 * 500 - handshake, right - handshake, "many"):
        feedback = lk.check.websocket_bytes_saved(wrong, G4, lab)
        assert not feedback
        assert f"{right:,}" not in feedback.message and str(right) not in feedback.message
    assert not lk.check.websocket_bytes_saved(None, G4, lab)
    assert not lk.check.websocket_bytes_saved(right, G4.assign(bytes_up=None, bytes_down=None), lab)
    assert lk.check.websocket_bytes_saved(10 * 350 - handshake, G4, lab, messages=10)


@pytest.mark.timeout(90)
def test_timing_checkers_on_a_class_server_measure_on_the_students_own_lab(make_lab, capsys):
    """Joined to a class server, the prediction checkers measure where the lesson's timing cells
    do: the kernel's own lab behind the emulator (said in one printed line), not across the real
    network to the class server, whose delay the profile does not contain."""
    from labkit.course.classroom import join_url

    room = make_lab(student_tokens=("student-token",), instructor_token="instructor-token")
    joined = lk.join(join_url("127.0.0.1", room.port, "student-token"), sync_clock=False,
                     personal=False)
    try:
        assert lk.check.parallel_prediction(10 * lk.netem.profile("4g").rtt_ms, joined,
                                            messages=30, connections=3)
        assert not lk.check.parallel_prediction(30 * lk.netem.profile("4g").rtt_ms, joined,
                                                messages=30, connections=3)
        rtt = lk.netem.profile("intercontinental").rtt_ms
        assert lk.check.new_connection_prediction(2 * rtt, joined)
        assert not lk.check.new_connection_prediction(3 * rtt, joined)
        own = lk.current()
        assert own is not None and own.port != room.port
        printed = capsys.readouterr().out
        assert printed.count(f"this part runs on your own lab at {own.url}") == 1  # said once
    finally:
        lk.stop()
