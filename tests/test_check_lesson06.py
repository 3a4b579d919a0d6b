"""Lesson 06 checkers accept the right answer, refuse plausible wrong ones (with a hint, not the
value) and say "not answered yet" to an untouched exercise."""

from __future__ import annotations

import pandas as pd

import labkit as lk
from labkit.check._core import forget_attempts

ALONE = pd.DataFrame({"member": [1, 2, 3], "worker": [2, 3, 1], "sent_by_all": [12, 12, 12],
                      "received": [4, 4, 4], "missed": [8, 8, 8]})
MEMORY = pd.DataFrame({"connections": [0, 1000, 2000, 5000],
                       "rss_kib": [50_000.0, 63_500.0, 77_000.0, 117_500.0],
                       "compression": ["off"] * 4})  # 13.5 KiB per connection
SERIES = pd.DataFrame({"connection": ["one keep-alive"] * 3 + ["new each time"] * 3,
                       "request": [1, 2, 3, 1, 2, 3], "worker": [3, 3, 3, 1, 2, 3]})


def test_unanswered_exercises_say_so():
    for feedback in (lk.check.missed_on_worker_2(None, ALONE),
                     lk.check.idle_connection_kib(None, MEMORY),
                     lk.check.keepalive_worker(None, SERIES)):
        assert not feedback and not feedback.answered and "not answered yet" in repr(feedback).lower()


def test_missed_on_worker_2():
    forget_attempts()
    assert lk.check.missed_on_worker_2(8, ALONE)
    for wrong in (4, 12, 0, 24, "eight", True):  # received, sent by all, none, everyone's...
        feedback = lk.check.missed_on_worker_2(wrong, ALONE)
        assert not feedback and "8" not in feedback.message
    with_backplane = ALONE.assign(received=12, missed=0)
    assert lk.check.missed_on_worker_2(0, with_backplane)
    assert not lk.check.missed_on_worker_2(8, with_backplane)


def test_idle_connection_kib():
    assert lk.check.idle_connection_kib(13.5, MEMORY)
    assert lk.check.idle_connection_kib(14, MEMORY)  # within 15 %
    for wrong in (23.5, 117_500 / 5000, 64, 1.35, 135, None):  # total RSS / n, the deflate anchor
        assert not lk.check.idle_connection_kib(wrong, MEMORY)
    feedback = lk.check.idle_connection_kib(23.5, MEMORY)
    assert "13.5" not in feedback.message and "change" in feedback.message


def test_keepalive_worker():
    assert lk.check.keepalive_worker(3, SERIES)
    for wrong in (1, 2, 0, "3 workers"):
        assert not lk.check.keepalive_worker(wrong, SERIES)
    moved = SERIES.assign(worker=[1, 2, 3, 1, 2, 3])  # a series that did not stay: nothing right
    assert not lk.check.keepalive_worker(1, moved)
