"""labkit.measure: pure statistics, checked against hand-computed values and numpy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from labkit import measure


def test_percentile_matches_numpy_linear_interpolation():
    values = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0]
    for q in (0, 10, 25, 50, 90, 99, 100):
        assert measure.percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_percentile_ignores_missing_values_and_rejects_bad_q():
    assert measure.percentile([1, None, float("nan"), 3], 50) == 2
    assert math.isnan(measure.percentile([], 50))
    with pytest.raises(ValueError):
        measure.percentile([1, 2], 101)


def test_summarize_gives_median_tails_and_spread_never_a_mean_alone():
    s = measure.summarize(range(1, 101))
    assert list(s) == list(measure.SUMMARY_COLUMNS)
    assert "mean" not in s
    assert s["n"] == 100
    assert s["median"] == 50.5
    assert s["p90"] == pytest.approx(90.1)
    assert s["p99"] == pytest.approx(99.01)
    assert s["iqr"] == pytest.approx(s["q3"] - s["q1"]) == pytest.approx(49.5)
    assert (s["min"], s["max"]) == (1, 100)
    empty = measure.summarize([])
    assert empty["n"] == 0 and math.isnan(empty["median"])


def test_ecdf_is_sorted_and_ends_at_one():
    xs, ps = measure.ecdf([3, 1, 2, 2])
    assert xs == [1, 2, 2, 3]
    assert ps == [0.25, 0.5, 0.75, 1.0]


def _frame():
    return pd.DataFrame({
        "transport": ["a"] * 4 + ["b"] * 2,
        "profile": ["x"] * 6,
        "rtt_ms": [1, 2, 3, 4, 10, 20],
    })


def test_summary_has_one_row_per_group():
    table = measure.summary(_frame(), "rtt_ms", ["transport"])
    assert list(table["transport"]) == ["a", "b"]
    assert list(table["n"]) == [4, 2]
    assert list(table["median"]) == [2.5, 15.0]
    assert list(table.columns) == ["transport", *measure.SUMMARY_COLUMNS]


def test_ecdf_frame_is_tidy():
    curves = measure.ecdf_frame(_frame(), "rtt_ms", ["transport"])
    assert list(curves.columns) == ["transport", "rtt_ms", "ecdf"]
    assert len(curves) == 6
    b = curves[curves.transport == "b"]
    assert list(b["ecdf"]) == [0.5, 1.0]


def test_tidy_orders_columns_and_ratio_guards_zero():
    frame = measure.tidy([{"b": 1, "a": 2}], ["a", "b", "c"])
    assert list(frame.columns) == ["a", "b", "c"]
    assert math.isnan(frame.loc[0, "c"])
    assert measure.ratio(6, 3) == 2
    assert math.isnan(measure.ratio(1, 0))


def test_measure_imports_nothing_of_labkit():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(measure))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.startswith(("labkit", "."))], imported
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
