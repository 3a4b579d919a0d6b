"""Lesson 10 checkers: right answers accepted, the wrong answers a student would plausibly give
refused, and an untouched exercise (answer = None) told it is not answered yet."""

from __future__ import annotations

import pandas as pd

import labkit as lk


def grid_frame() -> pd.DataFrame:
    """A frame shaped like h.measure's answer: 4g, 0 % loss, N = 1 and 10."""
    totals = {"h1 sequential": 800.0, "h1 six connections": 700.0, "h1 pipelined": 270.0,
              "h2 multiplexed": 400.0, "h3 multiplexed": 650.0, "ws lock-step": 810.0,
              "ws streamed": 360.0}
    rows = []
    for n, scale in ((1, 0.2), (10, 1.0)):
        for key, total in totals.items():
            rows.append({"profile": "4g", "loss": 0.0, "key": key, "n": n, "total_ms": total * scale})
    return pd.DataFrame(rows)


def timeline_frame() -> pd.DataFrame:
    """HTTP/2: streams 5..12 held 150-200 ms over the fastest; HTTP/3: three streams held."""
    rows = []
    for stream in range(20):
        rows.append({"protocol": "HTTP/2", "stream": stream,
                     "extra_ms": 180.0 if 5 <= stream <= 12 else 10.0})
    for stream in range(20):
        rows.append({"protocol": "HTTP/3", "stream": stream,
                     "extra_ms": 120.0 if stream in (3, 9, 15) else 5.0})
    frame = pd.DataFrame(rows)
    frame.attrs["rtt_ms"] = 50.0
    return frame


def headers_frame() -> pd.DataFrame:
    rows = []
    for request in range(1, 11):
        rows.append({"request": request, "protocol": "HTTP/1.1", "total": 414})
        rows.append({"request": request, "protocol": "HTTP/2 (HPACK)",
                     "total": 238 if request == 1 else 31})
        rows.append({"request": request, "protocol": "HTTP/3 (QPACK)",
                     "total": 221 if request <= 2 else 21})
        rows.append({"request": request, "protocol": "WebSocket frame", "total": 8})
    return pd.DataFrame(rows)


GRID, TIMELINE, HEADERS = grid_frame(), timeline_frame(), headers_frame()


def test_unanswered_exercises_say_so():
    for feedback in (lk.check.h1_vs_h2_ratio(None, GRID), lk.check.h2_streams_held(None, TIMELINE),
                     lk.check.hpack_bytes_saved(None, HEADERS)):
        assert not feedback
        assert "not answered yet" in repr(feedback).lower()


def test_h1_vs_h2_ratio_accepts_the_runs_ratio_and_refuses_the_plausible_wrong_ones():
    assert lk.check.h1_vs_h2_ratio(2.0, GRID)
    assert lk.check.h1_vs_h2_ratio(2.1, GRID)  # within 10 %
    for wrong in (0.5,   # the other way round
                  1.75,  # six connections / HTTP/2
                  3.0,   # no such ratio in the run
                  10,    # N
                  800 / 360):  # HTTP/1.1 against streamed WebSocket (2.22)
        assert not lk.check.h1_vs_h2_ratio(wrong, GRID), wrong
    assert "other way round" in repr(lk.check.h1_vs_h2_ratio(0.5, GRID))
    assert not lk.check.h1_vs_h2_ratio(2.0, None)
    assert not lk.check.h1_vs_h2_ratio(2.0, GRID, profile="wifi")


def test_h2_streams_held_is_exact():
    assert lk.check.h2_streams_held(8, TIMELINE)
    for wrong in (0, 3, 7, 9, 20, 1.5):  # none; HTTP/3's; one off; every stream; not whole
        assert not lk.check.h2_streams_held(wrong, TIMELINE), wrong
    assert "HTTP/3's count" in repr(lk.check.h2_streams_held(3, TIMELINE))
    assert not lk.check.h2_streams_held(8, TIMELINE[TIMELINE.protocol == "HTTP/3"])


def test_hpack_bytes_saved_sums_every_request():
    saved = 10 * 414 - (238 + 9 * 31)
    assert lk.check.hpack_bytes_saved(saved, HEADERS)
    first_only = 414 - 238
    qpack = 10 * 414 - (2 * 221 + 8 * 21)
    for wrong in (first_only, first_only * 10, qpack, 414 - 31, 0):
        assert not lk.check.hpack_bytes_saved(wrong, HEADERS), wrong
    assert "first request alone" in repr(lk.check.hpack_bytes_saved(first_only, HEADERS))
    assert "QPACK" in repr(lk.check.hpack_bytes_saved(qpack, HEADERS))
