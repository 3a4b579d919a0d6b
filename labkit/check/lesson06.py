"""Checkers for lesson 06 (scaling out: workers, the front door, the Redis backplane)."""

from __future__ import annotations

import statistics

from ._core import Feedback, as_number, close_to, exercise, verdict

__all__ = ["idle_connection_kib", "keepalive_worker", "missed_on_worker_2"]


@exercise("messages missed without a backplane", how="Look at the rows of `alone` for worker 2.")
def missed_on_worker_2(answer, frame) -> Feedback:
    """How many chat messages the member on worker 2 missed without a backplane (from `frame`)."""
    name = "messages missed without a backplane"
    rows = frame[frame["worker"] == 2]
    if rows.empty:
        return verdict(False, "", "Pass the frame of chat_across run WITHOUT a backplane.", name)
    expected = int(rows["missed"].sum())
    value = as_number(answer)
    if value is None:
        return verdict(False, "", "Give a number of messages.", name)
    return verdict(value == expected,
                   f"Yes: {expected} of {int(rows['sent_by_all'].iloc[0])}: worker 2's hub only "
                   "ever saw the messages sent by members connected to worker 2.",
                   "Take the row whose worker is 2: the messages it should have seen minus those it "
                   "received.", name,
                   then="It is sent_by_all minus received, for the member on worker 2.")


@exercise("KiB per idle WebSocket", how="Fit RSS against connections in `memory_off`.")
def idle_connection_kib(answer, frame) -> Feedback:
    """KiB of worker RSS per idle WebSocket without compression: the slope of `frame` (±15 %)."""
    name = "KiB per idle WebSocket"
    off = frame[frame["compression"] == "off"] if "compression" in frame else frame
    if off["connections"].nunique() < 2:
        return verdict(False, "", "Pass the idle_memory frame (compression off).", name)
    slope = statistics.linear_regression(off["connections"], off["rss_kib"]).slope
    value = as_number(answer)
    if value is None:
        return verdict(False, "", "Give KiB per connection as a number.", name)
    return verdict(close_to(value, slope, rel=0.15),
                   f"Yes: about {slope:.1f} KiB per idle connection on this worker.",
                   "Take the change in rss_kib between the first and last row and divide by the "
                   "change in connections (not the total RSS divided by connections: the empty "
                   "worker already uses memory).", name)


@exercise("the worker behind a keep-alive series", how="Look at `series` for one keep-alive.")
def keepalive_worker(answer, frame) -> Feedback:
    """Which worker answered every request of the keep-alive series in `frame`."""
    name = "the worker behind a keep-alive series"
    kept = frame[frame["connection"] == "one keep-alive"]["worker"]
    if kept.empty:
        return verdict(False, "", "Pass the frame of keepalive_series.", name)
    value = as_number(answer)
    if value is None:
        return verdict(False, "", "Give the worker's number.", name)
    expected = int(kept.iloc[0])
    ok = value == expected and kept.nunique() == 1
    return verdict(ok, f"Yes: worker {expected} answered all {len(kept)} requests: the front "
                   "door chose it once, when the connection opened.",
                   "Only the rows of the one keep-alive connection count; which worker do they "
                   "name?", name)
