"""The live subscriber widget shows each subscriber's state and counters and stops by itself."""

from __future__ import annotations

import time

from labkit.clients.reconnect import Subscriber
from labkit.widgets.subscriber import SubscriberView, table_html


def test_the_table_shows_state_last_seq_gaps_and_duplicates():
    html = table_html([{"name": "a", "transport": "ws", "state": "resumed", "last_seq": 42,
                        "gaps": 3, "duplicates_delivered": 0, "resyncs": 1}], "subs")
    assert "resumed" in html and ">42<" in html and ">3<" in html and "subs" in html


def test_the_view_stops_by_itself_when_its_subscribers_stop(lab):
    subs = [Subscriber(lab, t, name=t, heartbeat_s=1.0).start(1.0) for t in ("ws", "sse")]
    view = SubscriberView(subs, seconds=30).start()
    deadline = time.monotonic() + 20
    while view._thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not view._thread.is_alive()  # ended with its subscribers, long before 30 s
    assert view.updates >= 1 and "(stopped)" in view.box.value
    assert all(s.state == "stopped" for s in subs) and ">ws<" in view.box.value


def test_the_view_stops_after_its_time_even_if_subscribers_go_on(lab):
    sub = Subscriber(lab, "ws", heartbeat_s=1.0).start(30)
    view = SubscriberView([sub], seconds=0.5).start()
    view._thread.join(10)
    assert not view._thread.is_alive() and not sub.done
    sub.stop()
