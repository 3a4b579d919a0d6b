"""The chaos run: subscribers on all three transports while the lab restarts and connections are
cut at random. Every subscriber must get every event of every epoch exactly once, in order; and
the same run without the client's de-duplication must fail that check (so the check can fail)."""

from __future__ import annotations

import labkit as lk
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


def _feed_subscribers(lab) -> int:
    from labkit.clients.feed import hub_stats

    return sum(hub_stats(lab)["topics"].get("feed", {}).get("subscribers", {}).values())


def test_stop_all_closes_every_subscriber_at_once(lab):
    import time

    from labkit.clients.reconnect import Subscriber, stop_all

    subs = [Subscriber(lab, t, heartbeat_s=1.0, seed=i, name=f"s{i}").start(120)
            for i, t in enumerate(("ws", "sse") * 30)]
    assert reliability._wait(lambda: _feed_subscribers(lab) == 60, 20)
    stop_all(subs)
    assert all(s.done and s.state == "stopped" for s in subs)
    # the lab notices a closed SSE stream only when it next writes to it (an idle stream's
    # handler is not cancelled when its client goes): one event makes it write
    lk.feed_source(lab, 10, ticks=1)
    assert reliability._wait(lambda: _feed_subscribers(lab) == 0, 10)
    time.sleep(1.0)  # nothing reconnects afterwards
    assert _feed_subscribers(lab) == 0


def test_an_interrupted_chaos_run_leaves_no_subscriber_and_the_lab_running(lab, monkeypatch):
    calls = {"n": 0}
    real = reliability._cut_randomly

    def cut_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        real(*args, **kwargs)
        raise KeyboardInterrupt  # the kernel's stop button, in the middle of the first phase

    monkeypatch.setattr(reliability, "_cut_randomly", cut_then_interrupt)
    try:
        reliability.chaos_run(lab, subscribers=30, restarts=2, seconds=3.0, rate_hz=40.0)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the interrupt did not reach the caller")
    assert calls["n"] == 1
    lk.feed_source(lab, 10, ticks=1)  # lets the lab notice closed idle SSE streams (see above)
    assert reliability._wait(lambda: _feed_subscribers(lab) == 0, 10)
    assert lab.running
