"""Lesson 04 and 05 checkers accept a right answer and refuse a wrong one."""

from __future__ import annotations

import pandas as pd

import labkit as lk


def test_poll_staleness():
    assert lk.check.poll_staleness(250, interval_s=0.5)
    assert not lk.check.poll_staleness(500, interval_s=0.5)
    assert not lk.check.poll_staleness(None, interval_s=0.5)


def test_requests_per_event_uses_the_summary():
    summary = pd.DataFrame([{"transport": "short poll", "requests": 30, "events": 20}])
    assert lk.check.requests_per_event(1.5, summary)
    assert not lk.check.requests_per_event(1.0, summary)
    assert not lk.check.requests_per_event(1.5, summary, "WebSocket")


def test_long_poll_empty_answers():
    assert lk.check.long_poll_empty_answers(4, wait_s=2, quiet_s=9)
    assert not lk.check.long_poll_empty_answers(5, wait_s=2, quiet_s=9)
    assert not lk.check.long_poll_empty_answers("many", wait_s=2, quiet_s=9)


def test_chat_delay_difference():
    frame = pd.DataFrame({"receiver_kind": ["REST poll"] * 3 + ["WebSocket"] * 3,
                          "delay_ms": [400, 500, 600, 1, 2, 3]})
    assert lk.check.chat_delay_difference(498, frame)
    assert not lk.check.chat_delay_difference(250, frame)


def test_empty_message_status_asks_the_room(lab):
    assert lk.check.empty_message_status(422, lab)
    assert not lk.check.empty_message_status(400, lab)
    assert not lk.check.empty_message_status(None, lab)
    with lk.rest(lab) as api:
        assert api.get("/api/chat/messages").json() == []
