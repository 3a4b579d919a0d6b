"""Lesson 04 and 05 checkers accept a right answer and refuse a wrong one; lesson 04 helpers."""

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


def test_staleness_vs_link_counts_events_the_link_alone_cannot_explain():
    from labkit.clients import feed
    from labkit.netem import Toxics

    def client(label, staleness_ms):
        c = feed.WsFeedClient("http://127.0.0.1:1", label=label)
        c.events = [feed.Received(i, 100.0, 100.0 + s / 1000, 1.0)
                    for i, s in enumerate(staleness_ms, 1)]
        return c

    net = feed.FeedRun([client("WebSocket", [30, 40, 50]), client("long poll", [40, 90, 130, 45])],
                       1, 4)
    loop = feed.FeedRun([client("WebSocket", [1, 2, 3]), client("long poll", [2, 3, 4, 5])], 1, 4)
    table = feed.staleness_vs_link(net, Toxics(latency=40, jitter=10), reference=loop)
    assert list(table.index) == ["WebSocket", "long poll"]
    assert table.loc["long poll", "events"] == 4
    assert table.loc["WebSocket", "above_link"] == 0.0       # all within 40 + 10 ms
    assert table.loc["long poll", "above_link"] == 0.5       # 90 and 130 ms are not
    assert round(table.loc["long poll", "max_ms"]) == 130
    assert round(table.loc["WebSocket", "p50_reference_ms"]) == 2
