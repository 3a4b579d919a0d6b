"""Checkers for lesson 10 (beyond HTTP/1.1). Each takes the student's answer and the frame it came
from (the lesson's `grid`, `timeline` or `headers`) and compares with what that run measured."""

from __future__ import annotations

from ._core import Feedback, as_number, exercise, verdict

__all__ = ["h1_vs_h2_ratio", "h2_streams_held", "hpack_bytes_saved"]


def _has(frame, columns, name: str, example: str) -> Feedback | None:
    if frame is None or not hasattr(frame, "columns") or not set(columns) <= set(frame.columns):
        return verdict(False, "", f"Pass the frame your run returned as the second argument, "
                       f"e.g. {example}.", name)
    return None


@exercise("HTTP/1.1 against HTTP/2", answer="answer",
          how="Answer with a ratio (a number), from grid.")
def h1_vs_h2_ratio(answer, grid=None, *, profile: str = "4g", loss: float = 0.0) -> Feedback:
    """Exercise: on `profile` with `loss`, at the largest N of the run, how many times longer did
    HTTP/1.1 one request at a time take in total than HTTP/2 (many streams, one connection)?
    Accepted within 10 % of the run's own ratio."""
    name = "HTTP/1.1 against HTTP/2"
    problem = _has(grid, ["profile", "loss", "key", "n", "total_ms"], name, "check(answer, grid)")
    if problem is not None:
        return problem
    part = grid[(grid["profile"] == profile) & (grid["loss"] == loss)]
    part = part[part["n"] == part["n"].max()] if len(part) else part
    totals = part.set_index("key")["total_ms"] if len(part) else {}
    if "h1 sequential" not in totals or "h2 multiplexed" not in totals:
        return verdict(False, "", f"This grid has no {profile} run with {loss:.0%} loss for both "
                       "h1 sequential and h2 multiplexed; measure with that profile.", name)
    value = as_number(answer)
    if value is None or value <= 0:
        return verdict(False, "", "Answer with a positive number: one total divided by the other.",
                       name)
    expected = totals["h1 sequential"] / totals["h2 multiplexed"]
    n = int(part["n"].max())
    ok = abs(value - expected) <= 0.10 * expected
    if ok:
        return verdict(True, f"Right: {expected:.1f} times. HTTP/1.1 pays a round trip per request "
                       f"({n} in a row); HTTP/2 sends all {n} at once and pays about one.", "", name)
    if abs(value - 1 / expected) <= 0.10 / expected:
        hint = "That is the ratio the other way round: HTTP/1.1's total divided by HTTP/2's."
    else:
        hint = (f"{value:g} is not this run's ratio. Take the rows of grid for {profile}, "
                f"{loss:.0%} loss and the largest N, and divide the total_ms of 'h1 sequential' "
                "by that of 'h2 multiplexed'.")
    return verdict(False, "", hint, name)


@exercise("HTTP/2 streams delayed over a round trip", answer="answer",
          how="Answer with a whole number of streams, from timeline.")
def h2_streams_held(answer, timeline=None) -> Feedback:
    """Exercise: in the head-of-line run, how many HTTP/2 streams finished more than one round
    trip (the link's) later than the fastest HTTP/2 stream? Exact."""
    name = "HTTP/2 streams delayed over a round trip"
    problem = _has(timeline, ["protocol", "extra_ms"], name, "check(answer, timeline)")
    if problem is not None:
        return problem
    rtt = float(timeline.attrs.get("rtt_ms", 0.0))
    threshold = max(rtt, 1.0)
    counts = {p: int((part["extra_ms"] > threshold).sum())
              for p, part in timeline.groupby("protocol")}
    if "HTTP/2" not in counts:
        return verdict(False, "", "This timeline has no HTTP/2 streams; run h.hol_timeline again.",
                       name)
    value = as_number(answer)
    if value is None or value < 0 or value != int(value):
        return verdict(False, "", "Answer with a whole number of streams (0 or more).", name)
    expected = counts["HTTP/2"]
    streams = int((timeline["protocol"] == "HTTP/2").sum())
    if int(value) == expected:
        return verdict(True, f"Right: {expected} of {streams} HTTP/2 streams took more than a "
                       f"round trip ({rtt:g} ms) longer than the fastest: on one TCP connection "
                       "every stream waits for the bytes written before it, stalled or queued.",
                       "", name)
    if "HTTP/3" in counts and int(value) == counts["HTTP/3"] and counts["HTTP/3"] != expected:
        hint = "That is HTTP/3's count: filter the timeline to protocol == 'HTTP/2'."
    elif int(value) == streams:
        hint = "Not every stream: count only those whose extra_ms is over one round trip."
    else:
        hint = (f"{int(value)} is not what this run shows. Count the HTTP/2 rows of timeline whose "
                f"extra_ms (time over the fastest stream) is above the link's round trip "
                f"(timeline.attrs['rtt_ms']).")
    return verdict(False, "", hint, name)


@exercise("header bytes HPACK saves", answer="answer",
          how="Answer with a number of bytes, from headers.")
def hpack_bytes_saved(answer, headers=None) -> Feedback:
    """Exercise: over all the requests of `headers`, how many header bytes (up + down) did HTTP/2
    send fewer than HTTP/1.1? Accepted within 1 %."""
    name = "header bytes HPACK saves"
    problem = _has(headers, ["protocol", "total", "request"], name, "check(answer, headers)")
    if problem is not None:
        return problem
    sums = headers.groupby("protocol")["total"].sum()
    if "HTTP/1.1" not in sums or "HTTP/2 (HPACK)" not in sums:
        return verdict(False, "", "This frame has no HTTP/1.1 or HTTP/2 rows; make it with "
                       "h.header_bytes(servers).", name)
    value = as_number(answer)
    if value is None:
        return verdict(False, "", "Answer with a number of bytes.", name)
    expected = float(sums["HTTP/1.1"] - sums["HTTP/2 (HPACK)"])
    n = int(headers["request"].max())
    if abs(value - expected) <= max(2.0, 0.01 * expected):
        return verdict(True, f"Right: {expected:.0f} bytes over {n} requests. HPACK sends a header "
                       "in full once, then a one-byte index into the connection's table.", "", name)
    first = headers[headers["request"] == 1].set_index("protocol")["total"]
    one = float(first["HTTP/1.1"] - first["HTTP/2 (HPACK)"])
    if abs(value - one) <= 2:
        hint = f"That is the first request alone; the question asks for all {n}."
    elif abs(value - one * n) <= 2:
        hint = ("HPACK does not save the same on every request: the first sends each header in "
                "full. Add up each request's bytes.")
    elif "HTTP/3 (QPACK)" in sums and abs(value - (sums["HTTP/1.1"] - sums["HTTP/3 (QPACK)"])) <= 2:
        hint = "That is QPACK's saving (HTTP/3); the question asks for HTTP/2's."
    else:
        hint = (f"{value:g} is not this run's saving. Sum the total column per protocol over every "
                "request, then subtract HTTP/2's from HTTP/1.1's.")
    return verdict(False, "", hint, name)
