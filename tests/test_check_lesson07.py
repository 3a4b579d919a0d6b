"""Lesson 07 checkers: right answers accepted, plausible wrong ones rejected, placeholders kind."""

from __future__ import annotations

import pandas as pd
import pytest

from labkit.check import _core, lesson07


@pytest.fixture(autouse=True)
def fresh_attempts():
    _core.forget_attempts()


def test_backoff_ceiling():
    assert lesson07.backoff_ceiling(3.2, base_s=0.2, cap_s=5.0, attempt=5)
    assert lesson07.backoff_ceiling(5.0, base_s=0.2, cap_s=5.0, attempt=9)  # capped
    for wrong in (1.6, 6.4, 5.0, 0.2, "3.2 s", True):
        assert not lesson07.backoff_ceiling(wrong, base_s=0.2, cap_s=5.0, attempt=5)


def test_backoff_ceiling_hints_first_then_says_more_without_the_value():
    first = lesson07.backoff_ceiling(1.6, base_s=0.2, cap_s=5.0, attempt=5)
    second = lesson07.backoff_ceiling(6.4, base_s=0.2, cap_s=5.0, attempt=5)
    assert "3.2" not in first.message and "3.2" not in second.message
    assert first.message != second.message


def test_notes_after_retries():
    assert lesson07.notes_after_retries(1, posts=3, with_key=True)
    assert lesson07.notes_after_retries(3, posts=3, with_key=False)
    assert not lesson07.notes_after_retries(3, posts=3, with_key=True)
    assert not lesson07.notes_after_retries(1, posts=3, with_key=False)
    assert not lesson07.notes_after_retries(2, posts=3, with_key=False)


def test_lost_at_most_once_reads_the_frame():
    frame = pd.DataFrame([
        {"mode": "at_most_once", "published": 200, "delivered": 150, "unique": 150, "lost": 50,
         "duplicates_delivered": 0},
        {"mode": "at_least_once", "published": 200, "delivered": 230, "unique": 200, "lost": 0,
         "duplicates_delivered": 30},
    ])
    assert lesson07.lost_at_most_once(50, frame)
    for wrong in (150, 30, 0, 200, None):
        assert not lesson07.lost_at_most_once(wrong, frame)
    assert not lesson07.lost_at_most_once(50, frame.drop(columns="mode"))


def test_placeholders_are_not_answered_yet():
    for feedback in (lesson07.backoff_ceiling(None, base_s=0.2, cap_s=5.0, attempt=5),
                     lesson07.notes_after_retries(None, posts=3, with_key=True),
                     lesson07.lost_at_most_once(None, None)):
        assert not feedback and "not answered yet" in repr(feedback).lower()
