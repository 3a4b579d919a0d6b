"""Lesson 09's checkers accept the right answers and refuse the plausible wrong ones."""

from __future__ import annotations

import pandas as pd

from labkit import check

TELEMETRY = pd.DataFrame({"mode": ["rest", "batch", "ws"], "bytes_per_reading": [343.0, 40.6, 70.6]})


def test_none_is_not_answered_yet(lab):
    for feedback in (check.keyed_retries(None, lab), check.overdraft_status(None, lab),
                     check.telemetry_ratio(None, lab), check.big_note_bytes(None, lab)):
        assert not feedback and not feedback.answered


def test_keyed_retries(lab):
    assert check.keyed_retries(1, lab)
    for wrong in (3, 2, 0, "1", 1.0, True):
        assert not check.keyed_retries(wrong, lab), wrong


def test_overdraft_status(lab):
    assert check.overdraft_status(409, lab)
    assert check.overdraft_status("409", lab)
    for wrong in (402, 422, 400, 403, "conflict"):
        assert not check.overdraft_status(wrong, lab), wrong


def test_telemetry_ratio_with_one_reading_per_device(lab):
    from labkit.clients import iot

    per = {m: iot.telemetry(lab, m, devices=10, readings=1)["bytes_per_reading"] for m in ("rest", "ws")}
    right = per["rest"] / per["ws"]
    assert right < 1  # one reading cannot pay for a handshake
    assert check.telemetry_ratio(right, lab)
    assert check.telemetry_ratio(round(right, 2), lab, TELEMETRY)
    inverse = check.telemetry_ratio(1 / right, lab)
    assert not inverse and "other way" in inverse.message
    table = check.telemetry_ratio(343.0 / 70.6, lab, TELEMETRY)  # the lesson's table: many readings
    assert not table and "many readings" in table.message
    for wrong in (1.0, 343.0 / 40.6, 343.0, "five", True):
        assert not check.telemetry_ratio(wrong, lab), wrong


def test_big_note_bytes(lab):
    from labkit.clients.rest_ws import compare_reads

    measured = compare_reads(lab, note_bytes=20_000, reads=3).set_index("way")["bytes_per_read"]
    right = measured["REST over WebSocket"]
    assert check.big_note_bytes(right, lab)
    assert check.big_note_bytes(round(right, -2), lab)
    small = measured["REST over WebSocket"] / 20_000 * 2_000 + 200  # the 2,000-character note's figure
    for wrong in (2275, small, right * 1.12, 20_000 * 10, "a lot", True):
        assert not check.big_note_bytes(wrong, lab), wrong
