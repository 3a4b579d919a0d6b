"""Lesson 09's checkers accept the right answers and refuse the plausible wrong ones."""

from __future__ import annotations

import pandas as pd

from labkit import check

TELEMETRY = pd.DataFrame({"mode": ["rest", "batch", "ws"], "bytes_per_reading": [343.0, 40.6, 70.6]})
READS = pd.DataFrame({"way": ["REST with cache (304)", "REST without cache", "REST over WebSocket"],
                      "bytes_per_read": [665.0, 2583.0, 2275.0]})


def test_none_is_not_answered_yet(lab):
    for feedback in (check.keyed_retries(None, lab), check.overdraft_status(None, lab),
                     check.telemetry_ratio(None, TELEMETRY), check.statement_transport(None, READS)):
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


def test_telemetry_ratio():
    right = 343.0 / 70.6
    assert check.telemetry_ratio(right, TELEMETRY)
    assert check.telemetry_ratio(round(right, 1), TELEMETRY)
    inverse = check.telemetry_ratio(70.6 / 343.0, TELEMETRY)
    assert not inverse and "other way" in inverse.message
    for wrong in (343.0 / 40.6, 343.0, 272.4, "five"):
        assert not check.telemetry_ratio(wrong, TELEMETRY), wrong


def test_statement_transport():
    assert check.statement_transport("REST", READS)
    assert check.statement_transport(" rest ", READS)
    for wrong in ("WebSocket", "websocket", "SSE", 1):
        assert not check.statement_transport(wrong, READS), wrong
    flipped = READS.assign(bytes_per_read=[3000.0, 2583.0, 2275.0])
    assert check.statement_transport("WebSocket", flipped)
