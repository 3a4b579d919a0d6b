"""Checkers for lesson 04 (live updates: polling, long polling, SSE, WebSocket)."""

from __future__ import annotations

import math

from ._core import Feedback, as_number, close_to, exercise, verdict

__all__ = ["poll_staleness", "requests_per_event", "poll_requests_per_event",
           "long_poll_empty_answers"]


@exercise("median staleness of a short poller", answer="answer_ms",
          how="Answer with your prediction in milliseconds.")
def poll_staleness(answer_ms, interval_s: float) -> Feedback:
    """Median staleness (ms) of a short poller every `interval_s` s, for events at random times.

    Derivable: an event waits for the next poll, on average half an interval. Accepted within
    ±10 %, as lesson 05's poller exercise: the lab measures 400–410 ms at 0.8 s on loopback
    (three 12 s runs of `feed.poll_tradeoff`, 240 events each).
    """
    exercise = "median staleness of a short poller"
    value = as_number(answer_ms)
    if value is None:
        return verdict(False, "", "Give a number of milliseconds (replace the placeholder).",
                       exercise)
    expected = interval_s * 1000.0 / 2
    return verdict(close_to(value, expected, rel=0.10),
                   f"Yes: events land at random between polls, so they wait half an interval "
                   f"on average, about {expected:.0f} ms.",
                   "Think of where an event falls between two polls, and how long it then waits "
                   "for the next one. Your answer is in milliseconds."
                   + (" (Is that the longest wait rather than the typical one?)"
                      if close_to(value, 2 * expected, rel=0.1) else ""), exercise)


@exercise("requests per event", answer="answer", how="Answer with a number of requests per event.")
def requests_per_event(answer, summary, transport: str = "short poll") -> Feedback:
    """Requests per delivered event of `transport` in the run's summary frame."""
    exercise = f"requests per event ({transport})"
    value = as_number(answer)
    rows = summary[summary["transport"] == transport]
    if rows.empty:
        return verdict(False, "", f"The summary has no {transport!r} row; pass run.summary.",
                       exercise)
    row = rows.iloc[0]
    expected = row["requests"] / row["events"] if row["events"] else float("nan")
    if value is None:
        return verdict(False, "", "Give a number: requests divided by delivered events.",
                       exercise)
    return verdict(close_to(value, expected, rel=0.02, abs_=0.01),
                   f"Right: {row['requests']} requests for {row['events']} events = "
                   f"{expected:.2f} per event.",
                   "Count what this client paid (requests) for what it got (events delivered), "
                   "both in run.summary; is your ratio the right way up?", exercise)


def _per_second(count: float, noun: str) -> str:
    """"1 event per second", "2 events per second", "0.5 events per second"."""
    return f"{count:g} {noun if count == 1 else noun + 's'} per second"


@exercise("requests per event of a short poller", answer="answer",
          how="Answer with a number of requests per event.")
def poll_requests_per_event(answer, *, interval_s: float, rate_hz: float) -> Feedback:
    """Predict: requests per delivered event of a short poller asking every `interval_s` s while
    the feed publishes `rate_hz` events per second on average. (1 / interval_s requests and
    rate_hz events per second: the poller pays for time, not for news.)"""
    exercise = "requests per event of a short poller"
    value = as_number(answer)
    if value is None:
        return verdict(False, "", "Give a number: requests per delivered event.", exercise)
    expected = 1.0 / (interval_s * rate_hz)
    if close_to(value, expected, rel=0.05):
        return verdict(True, f"Yes: {_per_second(1 / interval_s, 'request')} for "
                       f"{_per_second(rate_hz, 'event')} = {expected:.3g} requests per event. "
                       "Polling pays for time, not for news: a quieter feed makes every event "
                       "dearer.", "", exercise)
    hint = ("How many requests does the poller make per second, and how many events arrive per "
            "second? Requests per event is the first divided by the second.")
    if close_to(value, 1 / expected, rel=0.05):
        hint = "That is events per request: turn it the right way up."
    return verdict(False, "", hint, exercise)


@exercise("empty answers of a long poller", answer="answer", how="Answer with a whole number of answers.")
def long_poll_empty_answers(answer, *, wait_s: float, quiet_s: float) -> Feedback:
    """How many empty answers a long poller with wait=`wait_s` gets during `quiet_s` s of
    silence (it asks again at once after each one)."""
    exercise = "empty answers of a long poller"
    value = as_number(answer)
    if value is None or value != int(value):
        return verdict(False, "", "Give a whole number of answers: an answer either came back "
                       "or it did not.", exercise)
    expected = math.floor(quiet_s / wait_s)
    return verdict(value == expected,
                   f"Yes: each held request ends empty after {wait_s:g} s, so {expected} of "
                   f"them fit in {quiet_s:g} s.",
                   "Each request is held up to wait seconds and, if nothing happens, comes back "
                   "empty; how many whole waits fit in the quiet period?", exercise)
