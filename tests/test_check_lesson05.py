"""Lesson 05 checkers accept a right answer, refuse the wrong answers a student would plausibly
give, and tell an untouched exercise (answer = None) that it is not answered yet."""

from __future__ import annotations

import pandas as pd

import labkit as lk


def test_unanswered_exercises_say_so(lab):
    frame = pd.DataFrame({"receiver_kind": ["REST poll", "WebSocket"], "delay_ms": [500, 1]})
    for feedback in (lk.check.poller_median_delay(None, interval_s=2.0),
                     lk.check.chat_delay_difference(None, frame),
                     lk.check.empty_message_status(None, lab)):
        assert not feedback and "not answered yet" in repr(feedback).lower()


def test_poller_median_delay():
    assert lk.check.poller_median_delay(1000, interval_s=2.0)
    assert lk.check.poller_median_delay(1001, interval_s=2.0)     # plus a request
    # what the lab measured at a 2 s interval (one schedule, three runs), and medians of 24
    # messages as far from the model as 1.96 standard errors (400 ms): accepted
    for measured in (1168, 1170, 1172, 605, 1395):
        assert lk.check.poller_median_delay(measured, interval_s=2.0)
    # the whole interval, the 1 s room, three quarters, seconds, nothing
    for wrong in (2000, 500, 501, 550, 1500, 2, 0, "soon"):
        assert not lk.check.poller_median_delay(wrong, interval_s=2.0)
    assert "longest" in lk.check.poller_median_delay(2000, interval_s=2.0).message
    assert "seconds" in lk.check.poller_median_delay(1, interval_s=2.0).message
    assert "every second" in lk.check.poller_median_delay(500, interval_s=2.0).message


def test_poller_model_and_margin():
    from labkit.check import lesson05

    assert lesson05.poller_model_ms(2.0) == 1001.0
    assert lesson05.poller_model_ms(1.0, request_ms=0.0) == 500.0
    # 24 messages polled every second: 1.96 * 1000 / (2 * sqrt(24)) = 200 ms
    assert round(lesson05.poller_margin_ms(1.0, 24)) == 200
    assert lesson05.poller_margin_ms(1.0, 96) == lesson05.poller_margin_ms(1.0, 24) / 2
    low, high = lesson05.accepted_ms(2.0)
    assert round(low) == 601 and round(high) == 1401


def test_chat_delay_difference():
    frame = pd.DataFrame({"receiver_kind": ["REST poll"] * 3 + ["WebSocket"] * 3,
                          "delay_ms": [400, 500, 600, 1, 2, 3]})
    assert lk.check.chat_delay_difference(498, frame)
    for wrong in (250, 1000, 2, -498):      # half of it, the whole interval, one side, reversed
        assert not lk.check.chat_delay_difference(wrong, frame)


def test_empty_message_status_asks_the_room(lab):
    assert lk.check.empty_message_status(422, lab)
    for wrong in (400, 200, 201, 204):
        assert not lk.check.empty_message_status(wrong, lab)
    with lk.rest(lab) as api:
        assert api.get("/api/chat/messages").json() == []
