"""Checkers for lesson 05 (a chat room over REST and WebSocket)."""

from __future__ import annotations

import math

from ._core import Feedback, close_to, exercise, verdict

__all__ = ["chat_delay_difference", "empty_message_status", "poller_median_delay"]


@exercise("how much later pollers see a message", answer="answer_ms",
          how="Answer with a number of milliseconds.")
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


@exercise("an empty chat message", answer="answer", how="Answer with the status code you expect.")
def empty_message_status(answer, target) -> Feedback:
    """The HTTP status the room answers to an empty message: checked by sending one."""
    from labkit.clients.rest import RestClient

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


MODEL_TOLERANCE = 0.25
"""The least relative distance from the model an answer may have and still count (lesson 04's
tolerance for the same idea)."""
RUN_MESSAGES = 24
"""Messages of the lesson's simulated room in normal mode (and of the run the exercise suggests)."""


def accepted_ms(interval_s: float) -> tuple[float, float]:
    """The answers `poller_median_delay` accepts: the model ± the larger of MODEL_TOLERANCE and
    the 95 % margin within which a run of RUN_MESSAGES messages measures the median (at 2 s:
    1,001 ± 400 ms). So a student who measures instead of predicting is refused only when the run
    itself lands outside its margin (1 run in 20); ±10 % refused the 1,168-1,172 ms the lab
    measured at 2 s. The plausible wrong answers stay outside: half of the 1 s room (500 ms), the
    whole interval (2,000 ms), three quarters of it (1,500 ms), seconds for milliseconds."""
    model = poller_model_ms(interval_s)
    tolerance = max(MODEL_TOLERANCE * model, poller_margin_ms(interval_s, RUN_MESSAGES))
    return model - tolerance, model + tolerance


def poller_model_ms(interval_s: float, request_ms: float = 1.0) -> float:
    """The model the exercise asks for (labkit.clients.chat.poll_model_ms)."""
    from labkit.clients.chat import poll_model_ms

    return poll_model_ms(interval_s, request_ms)


def poller_margin_ms(interval_s: float, messages: int) -> float:
    """The 95 % margin of a measured median around the model (labkit.clients.chat.poll_margin_ms)."""
    from labkit.clients.chat import poll_margin_ms

    return poll_margin_ms(interval_s, messages)


@exercise("median delay of a poller", answer="answer_ms", how="Answer with your prediction in milliseconds.")
def poller_median_delay(answer_ms, interval_s: float) -> Feedback:
    """Predict the median delay (ms) of a REST member polling every `interval_s` s, for messages
    sent at random moments, on loopback (a request takes about a millisecond). Accepted: the model
    (`poller_model_ms`) within `accepted_ms`, where the lab's runs of the lesson's size land."""
    exercise = f"median delay of a poller every {interval_s:g} s"
    try:
        value = float(answer_ms)
    except (TypeError, ValueError):
        return verdict(False, "", "Give a number of milliseconds.", exercise)
    expected = poller_model_ms(interval_s)
    low, high = accepted_ms(interval_s)
    if low <= value <= high:
        return verdict(True, f"Yes: the model says about {expected:.0f} ms. A message lands at a "
                       "random moment of the interval and waits for the next poll: half an "
                       "interval is the median, plus a request of about a millisecond. A run of a "
                       "few dozen messages measures it only to within a margin (the lesson "
                       "computed it): run simulate_room with poll_interval_s="
                       f"{interval_s:g} to see where yours lands.", "", exercise)
    if close_to(value, interval_s, rel=0.5):
        hint = "That looks like seconds; answer in milliseconds."
    elif close_to(value, 2 * expected, rel=0.1):
        hint = "That is the longest wait (a message just after a poll), not the typical one."
    elif interval_s != 1.0 and close_to(value, poller_model_ms(1.0), rel=0.1):
        hint = "That is the median of the room polled every second; the interval is longer now."
    else:
        hint = ("Where does a message land between two polls, and how long does it then wait "
                "for the next one? Take the middle of that range.")
    return verdict(False, "", hint, exercise)
