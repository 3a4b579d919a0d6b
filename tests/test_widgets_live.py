"""Live widgets of lessons 00 and 05: the chat box sends on Enter; an interrupted ping meter says
"stopped" and its stale table is not presented as new."""

from __future__ import annotations

import time

import pytest

from labkit.widgets import ping
from labkit.widgets.chat import ChatBox


def test_running_the_chat_box_cell_again_replaces_the_box_instead_of_409(lab):
    """Lesson 05's cell `box = lk.chat_widget(lab, "you", ...)` run twice: the second box joins
    under the same name (the first leaves first), where it used to get HTTP 409."""
    from labkit.widgets.chat import chat_widget

    first = chat_widget(lab, "you", seconds=30)
    second = chat_widget(lab, "you", seconds=30)
    try:
        assert not first.client.is_open and "replaced" in first.feedback.value
        assert second.client.is_open and second.client.errors == []
        second.send("still me")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not second.client.messages:
            time.sleep(0.05)
        assert [m["data"]["name"] for m in second.client.messages] == ["you"]
    finally:
        second.close()


def test_enter_in_the_chat_box_sends_like_the_button(lab):
    box = ChatBox(lab, "ada", seconds=10)
    try:
        box.text.value = "sent with Enter"
        box.text._handle_custom_msg({"event": "submit"}, [])  # what the browser sends on Enter
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
                m["data"]["text"] == "sent with Enter" for m in box.client.messages):
            time.sleep(0.05)
        assert [m["data"]["text"] for m in box.client.messages] == ["sent with Enter"]
        assert box.text.value == ""
        box.text._handle_custom_msg({"event": "other"}, [])  # anything else sends nothing
    finally:
        box._refresher.cancel()
        box.client.close()


class _Interrupted:
    """A pending echo slice whose wait is interrupted (the kernel's ■ raises KeyboardInterrupt)."""

    cancelled = False

    def result(self, timeout=None):
        raise KeyboardInterrupt

    def cancel(self):
        _Interrupted.cancelled = True


def test_an_interrupted_ping_meter_stops_and_its_old_table_is_not_new(lab, monkeypatch):
    finished = ping.ping_meter(lab, seconds=0.3)
    assert "echoes" in ping.summary(finished) and "earlier run" not in ping.summary(finished)

    def interrupted(coro):
        coro.close()
        return _Interrupted()

    monkeypatch.setattr(ping, "_start_slice", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ping.ping_meter(lab, seconds=5)
    assert _Interrupted.cancelled
    assert "earlier run" in ping.summary(finished)  # the variable still holds the old table
    monkeypatch.undo()
    again = ping.ping_meter(lab, seconds=0.2)
    assert "earlier run" not in ping.summary(again)


def test_ping_summary_names_the_tail_the_count_supports():
    import pandas as pd

    few = pd.DataFrame({"trial": range(10), "t_s": 0.0, "rtt_ms": [1.0] * 9 + [5.0]})
    few.attrs["run"] = ping._last["run"]
    many = pd.DataFrame({"trial": range(200), "t_s": 0.0, "rtt_ms": [1.0] * 200})
    many.attrs["run"] = ping._last["run"]
    assert "slowest 5.000 ms" in ping.summary(few) and "p99 " not in ping.summary(few)
    assert "p99" in ping.summary(many)
