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
    assert cursor_messages_per_second(80)  # 5 participants at 20 Hz: 4 others × 20
    assert cursor_messages_per_second(78)
    assert cursor_messages_per_second(60, participants=3, tick_hz=30)
    for wrong in (100, 20, 40, 60, True, "eighty"):  # all five, yourself, the table's 2×, 3 × 20
        feedback = cursor_messages_per_second(wrong)
        assert not feedback and "80" not in feedback.message


def test_cursor_messages_per_second_accepts_what_the_lab_measures(lab):
    from labkit.clients.game import cursor_bandwidth

    measured = cursor_bandwidth(lab, (20,), participants=5, seconds=1.0).iloc[0]
    assert measured["messages_nominal_per_s"] == 80
    assert cursor_messages_per_second(round(float(measured["messages_in_per_s"]), 1), target=lab)
    for wrong in (100, 40, 20):
        assert not cursor_messages_per_second(wrong, target=lab)


def test_optimistic_wrong_seat():
    assert optimistic_wrong_seat("O") and optimistic_wrong_seat(" o ")
    for wrong in ("X", "both", "neither", "the second"):
        feedback = optimistic_wrong_seat(wrong)
        assert not feedback and "Right" not in feedback.message


def test_optimistic_wrong_seat_races_on_the_lab(lab):
    right = optimistic_wrong_seat("O", lab, trials=3)
    assert right and "raced 3 times" in right.message
    for wrong in ("X", "both", "neither"):
        assert not optimistic_wrong_seat(wrong, lab, trials=2)


def test_unanswered_says_so():
    for feedback in (move_out_of_turn_status(None, None), cursor_messages_per_second(None),
                     optimistic_wrong_seat(None)):
        assert not feedback and "not answered yet" in repr(feedback).lower()
