"""Checkers for lesson 04 (live updates: polling, long polling, SSE, WebSocket)."""

from __future__ import annotations

import math

from ._core import Feedback, close_to, verdict

__all__ = ["poll_staleness", "requests_per_event", "long_poll_empty_answers"]


def _number(answer) -> float | None:
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def poll_staleness(answer_ms, interval_s: float) -> Feedback:
    """Median staleness (ms) of a short poller every `interval_s` s, for events at random times.

    Derivable: an event waits for the next poll, on average half an interval.
    """
    exercise = "median staleness of a short poller"
    value = _number(answer_ms)
    if value is None:
        return verdict(False, "", "Give a number of milliseconds (replace the placeholder).",
                       exercise)
    expected = interval_s * 1000.0 / 2
    return verdict(close_to(value, expected, rel=0.25),
                   f"Yes: events land at random between polls, so they wait half an interval "
                   f"on average, about {expected:.0f} ms.",
                   "Think of where an event falls between two polls, and how long it then waits "
                   "for the next one. Your answer is in milliseconds.", exercise)


def requests_per_event(answer, summary, transport: str = "short poll") -> Feedback:
    """Requests per delivered event of `transport` in the run's summary frame."""
    exercise = f"requests per event ({transport})"
    value = _number(answer)
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
                   "Divide the requests this client made by the events it delivered "
                   "(both columns of run.summary).", exercise)


def long_poll_empty_answers(answer, *, wait_s: float, quiet_s: float) -> Feedback:
    """How many empty answers a long poller with wait=`wait_s` gets during `quiet_s` s of
    silence (it asks again at once after each one)."""
    exercise = "empty answers of a long poller"
    value = _number(answer)
    if value is None:
        return verdict(False, "", "Give a whole number of answers.", exercise)
    expected = math.floor(quiet_s / wait_s)
    return verdict(abs(value - expected) <= 0.5,
                   f"Yes: each held request ends empty after {wait_s:g} s, so {expected} of "
                   f"them fit in {quiet_s:g} s.",
                   "Each request is held up to wait seconds and, if nothing happens, comes back "
                   "empty; how many whole waits fit in the quiet period?", exercise)
