"""Checkers for lesson 05 (a chat room over REST and WebSocket)."""

from __future__ import annotations

import math

from ._core import Feedback, close_to, verdict

__all__ = ["chat_delay_difference", "empty_message_status"]


def chat_delay_difference(answer_ms, frame) -> Feedback:
    """Median delay of REST pollers minus median delay of WebSocket members (ms), from `frame`."""
    exercise = "how much later pollers see a message"
    try:
        value = float(answer_ms)
    except (TypeError, ValueError):
        value = math.nan
    medians = frame.groupby("receiver_kind")["delay_ms"].median()
    if not {"REST poll", "WebSocket"} <= set(medians.index):
        return verdict(False, "", "Pass the frame from simulate_room (it needs both kinds).",
                       exercise)
    expected = medians["REST poll"] - medians["WebSocket"]
    if math.isnan(value):
        return verdict(False, "", "Give a number of milliseconds.", exercise)
    return verdict(close_to(value, expected, rel=0.05, abs_=2.0),
                   f"Yes: pollers see messages {expected:.0f} ms later (median): a message "
                   "waits in the room until their next poll.",
                   "Take the median delay_ms of each receiver_kind and subtract.", exercise)


def empty_message_status(answer, target) -> Feedback:
    """The HTTP status the room answers to an empty message: checked by sending one."""
    from ..clients.rest import RestClient

    exercise = "an empty chat message"
    with RestClient(target) as api:
        status = api.post("/api/chat/messages", json={"name": "checker", "text": ""}).status
    try:
        value = int(answer)
    except (TypeError, ValueError):
        return verdict(False, "", "Give the status code as a number (send one and look).",
                       exercise)
    return verdict(value == status,
                   f"Right: {status}: the request is well-formed JSON, but its content is "
                   "invalid (Unprocessable Content), and nothing was stored.",
                   "POST {\"name\": \"me\", \"text\": \"\"} to /api/chat/messages and read "
                   "the status.", exercise)
