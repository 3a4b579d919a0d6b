"""Lesson 08 checkers: right answers accepted, plausible wrong ones refused with a hint, not the value."""

from __future__ import annotations

import pytest

from labkit.check import _core
from labkit.check.lesson08 import cursor_messages_per_second, move_out_of_turn_status, optimistic_wrong_seat


@pytest.fixture(autouse=True)
def fresh_attempts():
    _core.forget_attempts()


def test_move_out_of_turn_status_is_checked_against_the_server(lab):
    assert move_out_of_turn_status(409, lab)
    assert move_out_of_turn_status("409", lab)
    for wrong in (400, 403, 422, 200, "conflict"):
        feedback = move_out_of_turn_status(wrong, lab)
        assert not feedback and "409" not in feedback.message
    assert "not 400" in move_out_of_turn_status(400, lab).message  # the stronger second hint


def test_cursor_messages_per_second_counts_the_others_only():
    assert cursor_messages_per_second(60)
    assert cursor_messages_per_second(58.5)
    assert cursor_messages_per_second(40, participants=5, tick_hz=10)
    for wrong in (30, 90, 10, True, "sixty"):
        feedback = cursor_messages_per_second(wrong)
        assert not feedback and "60" not in feedback.message


def test_optimistic_wrong_seat():
    assert optimistic_wrong_seat("O") and optimistic_wrong_seat(" o ")
    for wrong in ("X", "both", "neither", "the second"):
        feedback = optimistic_wrong_seat(wrong)
        assert not feedback and "Right" not in feedback.message


def test_unanswered_says_so():
    for feedback in (move_out_of_turn_status(None, None), cursor_messages_per_second(None),
                     optimistic_wrong_seat(None)):
        assert not feedback and "not answered yet" in repr(feedback).lower()
