"""The chaos run: subscribers on all three transports while the lab restarts and connections are
cut at random. Every subscriber must get every event of every epoch exactly once, in order; and
the same run without the client's de-duplication must fail that check (so the check can fail)."""

from __future__ import annotations

from labkit.lessons import reliability


def test_chaos_run_is_gapless_in_order_without_duplicates(lab):
    result = reliability.chaos_run(lab, subscribers=200, restarts=3, seconds=10.0, rate_hz=40.0)
    frame = result.frame
    assert len(result.published) == 4 and result.cuts > 0  # four epochs, connections were cut
    assert len(frame) == 200 and set(frame["transport"]) == {"ws", "sse", "long_poll"}
    assert (frame["delivered"] == frame["published"]).all()
    assert frame["in_order"].all() and (frame["duplicates_delivered"] == 0).all()
    assert (frame["resyncs"] == 3).all()  # one re-sync per restart, counted
    assert frame["duplicates_dropped"].sum() > 0  # the wire did repeat events; the client dropped them
    assert result.all_ok


def test_the_same_run_without_deduplication_fails_the_check(lab):
    result = reliability.chaos_run(lab, subscribers=30, restarts=1, seconds=4.0, rate_hz=40.0,
                                   cut_share=0.2, dedup=False)
    frame = result.frame
    assert frame["duplicates_delivered"].sum() > 0
    assert not result.all_ok
