"""Pure statistics on timings: percentiles, ECDF, summaries and tidy frames. No I/O, no labkit imports.

Latency distributions are skewed (a long tail of slow round trips), so a summary here always gives
the median and high percentiles with the spread, never a mean alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

SUMMARY_COLUMNS = ("n", "median", "p90", "p99", "q1", "q3", "iqr", "min", "max")


def _clean(values: Iterable) -> list[float]:
    """Floats, sorted, without None/NaN (a missing observation is not a zero)."""
    out = []
    for v in values:
        if v is None:
            continue
        f = float(v)
        if not math.isnan(f):
            out.append(f)
    out.sort()
    return out


def percentile(values: Iterable, q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks (numpy's default).

    NaN when there are no values.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, got {q}")
    xs = _clean(values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: Iterable) -> float:
    return percentile(values, 50)


def summarize(values: Iterable) -> dict:
    """n, median, p90, p99, quartiles q1/q3, IQR (q3 - q1, the spread), min and max."""
    xs = _clean(values)
    if not xs:
        return {"n": 0, **{k: math.nan for k in SUMMARY_COLUMNS[1:]}}
    q1, q3 = percentile(xs, 25), percentile(xs, 75)
    return {
        "n": len(xs),
        "median": percentile(xs, 50),
        "p90": percentile(xs, 90),
        "p99": percentile(xs, 99),
        "q1": q1,
        "q3": q3,
        "iqr": q3 - q1,
        "min": xs[0],
        "max": xs[-1],
    }


def ecdf(values: Iterable) -> tuple[list[float], list[float]]:
    """Empirical CDF: sorted values and, for each, the fraction of observations <= it."""
    xs = _clean(values)
    n = len(xs)
    return xs, [(i + 1) / n for i in range(n)]


def _groups(frame, by: Sequence[str]):
    by = list(by)
    if not by:
        yield (), frame
        return
    for key, group in frame.groupby(by, sort=False, dropna=False):
        yield (key if isinstance(key, tuple) else (key,)), group


def summary(frame, value: str = "rtt_ms", by: Sequence[str] = ("transport",)):
    """One row per group of `by` with the columns of `summarize` for `value` (a tidy frame in)."""
    import pandas as pd

    rows = [{**dict(zip(by, key, strict=True)), **summarize(group[value])}
            for key, group in _groups(frame, by)]
    return pd.DataFrame(rows, columns=[*by, *SUMMARY_COLUMNS])


def ecdf_frame(frame, value: str = "rtt_ms", by: Sequence[str] = ("transport",)):
    """Tidy ECDF: columns `*by`, `value`, `ecdf` (fraction <= value), one row per observation."""
    import pandas as pd

    rows: list[dict] = []
    for key, group in _groups(frame, by):
        labels = dict(zip(by, key, strict=True))
        xs, ps = ecdf(group[value])
        rows.extend({**labels, value: x, "ecdf": p} for x, p in zip(xs, ps, strict=True))
    return pd.DataFrame(rows, columns=[*by, value, "ecdf"])


def tidy(records: Iterable[dict], columns: Sequence[str] | None = None):
    """A DataFrame with one row per record; `columns` fixes the order (missing ones are NaN)."""
    import pandas as pd

    frame = pd.DataFrame(list(records))
    if columns is not None:
        frame = frame.reindex(columns=[*columns, *[c for c in frame.columns if c not in columns]])
    return frame


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is 0 or missing."""
    if denominator is None or denominator == 0 or math.isnan(denominator):
        return math.nan
    return numerator / denominator


def clock_offset(t0: float, t1: float, t2: float, t3: float) -> tuple[float, float]:
    """NTP's on-wire formulas for one round trip (RFC 5905): the client sent at t0 and got the answer
    at t3 (its clock); the server got the request at t1 and answered at t2 (its clock).

    offset = ((t1 - t0) + (t2 - t3)) / 2 (server clock minus client clock), exact when both legs take
    as long; delay = (t3 - t0) - (t2 - t1), the time spent on the network. Returns (offset, delay).
    """
    return ((t1 - t0) + (t2 - t3)) / 2.0, (t3 - t0) - (t2 - t1)


def estimate_clock_offset(samples: Iterable[Sequence[float]]) -> dict:
    """Clock offset from several (t0, t1, t2, t3) round trips: the offset of the one with the least
    delay (Cristian's idea, NTP's clock filter), since queueing only ever adds delay and an unequal
    split of a long delay is what makes an offset wrong. Its error is at most delay / 2.

    Returns {"offset_s", "delay_s", "error_s", "n"}; NaNs when there is no sample."""
    pairs = [clock_offset(*sample) for sample in samples]
    if not pairs:
        return {"offset_s": math.nan, "delay_s": math.nan, "error_s": math.nan, "n": 0}
    offset, delay = min(pairs, key=lambda pair: pair[1])
    return {"offset_s": offset, "delay_s": delay, "error_s": max(delay, 0.0) / 2.0, "n": len(pairs)}


__all__ = ["SUMMARY_COLUMNS", "clock_offset", "ecdf", "ecdf_frame", "estimate_clock_offset", "median",
           "percentile", "ratio", "summarize", "summary", "tidy"]
