"""Backoff delays follow the formula: ceiling(n) = min(cap, base * 2**n); full jitter draws
uniform(0, ceiling), equal jitter ceiling/2 + uniform(0, ceiling/2), none is the ceiling."""

from __future__ import annotations

import itertools
import random

import pytest

from labkit.clients.reconnect import backoff_delays


def take(gen, n):
    return list(itertools.islice(gen, n))


def test_no_jitter_is_the_capped_exponential():
    assert take(backoff_delays(0.1, 1.0, jitter="none"), 6) == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_full_jitter_is_a_seeded_uniform_draw_below_the_ceiling():
    delays = take(backoff_delays(0.1, 1.0, jitter="full", rng=random.Random(42)), 8)
    expected_rng = random.Random(42)
    ceilings = [min(1.0, 0.1 * 2**n) for n in range(8)]
    assert delays == pytest.approx([expected_rng.uniform(0, c) for c in ceilings])
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert take(backoff_delays(0.1, 1.0, rng=random.Random(42)), 8) == delays  # same seed, same


def test_equal_jitter_keeps_half_of_the_ceiling():
    rng, check = random.Random(7), random.Random(7)
    delays = take(backoff_delays(0.2, 2.0, jitter="equal", rng=rng), 6)
    ceilings = [min(2.0, 0.2 * 2**n) for n in range(6)]
    assert delays == pytest.approx([c / 2 + check.uniform(0, c / 2) for c in ceilings])


def test_full_jitter_spreads_many_clients_where_none_keeps_them_together():
    firsts = {next(backoff_delays(0.5, 5.0, rng=random.Random(i))) for i in range(300)}
    together = {next(backoff_delays(0.5, 5.0, jitter="none")) for _ in range(300)}
    assert len(firsts) == 300 and together == {0.5}


def test_an_unknown_jitter_is_refused():
    with pytest.raises(ValueError, match="jitter"):
        next(backoff_delays(jitter="random"))


def test_a_reconnect_storm_comes_in_waves_without_jitter_and_spread_with_it(lab):
    from labkit.lessons import reliability

    none = reliability.herd_run(lab, clients=40, jitter="none", down_s=0.7, base_s=0.2,
                                after_s=4.0)
    full = reliability.herd_run(lab, clients=40, jitter="full", down_s=0.7, base_s=0.2,
                                after_s=4.0)
    assert none.attrs["reconnected"] == full.attrs["reconnected"] == 40
    for frame in (none, full):
        assert set(frame["what"]) == {"started", "finished"}
        # every client started at least one attempt after the stop, and each attempt it started
        # also finished (connected or refused)
        started = frame[frame["what"] == "started"].groupby("client").size()
        finished = frame[frame["what"] == "finished"].groupby("client").size()
        assert len(started) == 40 and (started == finished.reindex(started.index)).all()
    # without jitter every client starts its attempts at the same instants: few distinct 10 ms
    # slots
    slots = {jitter: frame[frame["what"] == "started"]["t_s"].round(2).nunique()
             for jitter, frame in (("none", none), ("full", full))}
    assert slots["full"] > 2 * slots["none"]


def test_the_storm_summary_and_its_words_come_from_the_frame():
    import pandas as pd

    from labkit.lessons import reliability

    rows = []
    for run, (none_times, full_times) in enumerate((([0.51] * 6 + [1.52] * 6, [0.05, 0.21, 0.33,
                                                      0.48, 0.6, 0.75, 0.9, 1.1, 1.3, 1.7]),
                                                     ([0.55] * 4, [0.1, 0.3, 0.5, 0.7, 0.9]))):
        for jitter, times in (("none", none_times), ("full", full_times)):
            rows += [{"t_s": t, "client": f"c{i % 4}", "jitter": jitter, "what": what, "run": run}
                     for i, t in enumerate(times) for what in ("started", "finished")]
    summary = reliability.herd_summary(pd.DataFrame(rows), 0.1).set_index(["run", "jitter"])
    assert summary.loc[(0, "none"), "attempts"] == 12
    assert summary.loc[(0, "none"), "peak_started"] == 6
    assert summary.loc[(0, "full"), "peak_started"] == 1
    assert summary.loc[(1, "none"), "peak_started"] == 4
    assert summary.loc[(1, "full"), "attempts"] == 5
    text = reliability.herd_text(summary.reset_index(), 4)
    # peaks 6 and 4 without jitter, 1 with it: ratios 6.0 and 4.0; attempts 12 and 4 vs 10 and 5
    assert "4 to 6 without jitter, 1 with full jitter" in text
    assert "4.0 to 6.0×" in text
    assert "-17 to +25 % attempts in all" in text
