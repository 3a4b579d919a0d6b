"""A live ping meter: WebSocket echoes for a few seconds, drawn as they happen, then it stops.

Interrupting the kernel (■) stops it at once: the meter shows "stopped", the echo in flight is
cancelled and the socket closed. The interrupted cell raises, so the variable you assigned keeps
its *earlier* value; `summary(frame)` notices that and says so instead of presenting old echoes as
new ones.
"""

from __future__ import annotations

import asyncio
import itertools
import time

from labkit import _loop
from labkit.clients.ws import WsClient

from . import REFRESH_S


async def _echo_for(conn, seconds: float, payload: str) -> list[tuple[float, float]]:
    """Echo `payload` back to back for `seconds`; return (time since start s, round trip ms) pairs."""
    out = []
    start = time.perf_counter_ns()
    deadline = start + int(seconds * 1e9)
    while (now := time.perf_counter_ns()) < deadline:
        await conn.send(payload)
        await conn.recv()
        done = time.perf_counter_ns()
        out.append(((now - start) / 1e9, (done - now) / 1e6))
    return out


def _start_slice(coro):
    """Start one slice of echoes on the clients' loop; returns its concurrent future."""
    return asyncio.run_coroutine_threadsafe(coro, _loop.client_loop())


_runs = itertools.count(1)
_last = {"run": 0, "stopped": False}
"""The most recent meter: its run number, and whether it was stopped before the end."""


def summary(frame) -> str:
    """One sentence on `frame` (what ping_meter returned): count, median and the tail the count
    supports (p99 from 100 echoes on, else the slowest, named so). It refuses to present a table
    from an earlier run as the latest when the latest meter was stopped."""
    from labkit.measure import percentile

    run = frame.attrs.get("run")
    if _last["stopped"] and run != _last["run"]:
        return ("The last ping meter was stopped before it finished, so these echoes come from an "
                "earlier run. Run the meter cell again and let it finish.")
    n = len(frame)
    if n == 0:
        return "No echo came back: is the lab running (lab = lk.start())?"
    rtt = frame["rtt_ms"]
    tail = (f"p99 {percentile(rtt, 99):.3f} ms" if n >= 100
            else f"slowest {rtt.max():.3f} ms (too few echoes for a p99)")
    return (f"{n:,} echoes: median {percentile(rtt, 50):.3f} ms, {tail}, mean {rtt.mean():.3f} ms.")


def _pace(drawn: float) -> None:
    """Wait until REFRESH_S seconds have passed since the last redraw (at `drawn`)."""
    time.sleep(max(0.0, REFRESH_S - (time.perf_counter() - drawn)))


def ping_meter(target, seconds: float = 5.0, *, path: str = "/ws/echo", payload: str = "ping"):
    """Show a live meter of WebSocket echo round trips for `seconds`, then return them as a DataFrame.

    Echoes run in slices of REFRESH_S seconds; after each slice the meter adds one point for the
    slice's median and one for its slowest echo (so it redraws at most ~10 times a second, however
    many thousand echoes there are), and it stops by itself. The chart is SVG in an HTML widget
    (labkit/widgets/lines.py says why not a plotly FigureWidget).
    Columns of the result: trial, t_s (time since start), rtt_ms.
    """
    import ipywidgets as w
    import pandas as pd
    from IPython.display import display

    from labkit.plots.base import transport_color

    from .lines import Series, svg_chart

    color = transport_color("websocket") or "#0072B2"
    median = Series("median of each slice", color, markers=True)
    slowest = Series("slowest of each slice", color, width=1.2, dash="1 3")

    def chart() -> str:
        return svg_chart([median, slowest], title=f"WebSocket echo round trips, live (one point "
                         f"per {REFRESH_S:g} s slice)", x_title="time since start (s)",
                         y_title="round trip (ms, log scale)", x_range=(0, seconds),
                         y_range=(0.01, 10_000), log_y=True, legend_title="echoes", height=300)

    readout = w.HTML("<b>ping meter</b>: connecting…")
    clock = w.FloatProgress(value=0, min=0, max=seconds, description="time", bar_style="info")
    plot = w.HTML(chart())
    box = w.VBox([readout, clock, plot], layout=w.Layout(width="100%"))
    box.add_class("labkit-ping-meter")
    display(box)

    samples: list[tuple[float, float]] = []
    run = next(_runs)
    _last.update(run=run, stopped=True)  # until it finishes
    with WsClient(target, path) as ws:
        started = drawn = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            slice_s = min(REFRESH_S, seconds - elapsed)
            # one slice, plus the client's timeout for an echo that never comes back
            pending = _start_slice(_echo_for(ws.connection, slice_s, payload))
            try:
                batch = pending.result(slice_s + ws.timeout)
                _pace(drawn)  # a short last slice must not redraw sooner than REFRESH_S
            except BaseException:  # KeyboardInterrupt (kernel interrupt) or no answer: stop here
                pending.cancel()
                clock.bar_style = "danger"
                readout.value = (f"<b>ping meter</b>: stopped after {len(samples):,} echoes; "
                                 "its results were not kept. Run the cell again for a full run.")
                raise
            samples.extend((elapsed + t, rtt) for t, rtt in batch)
            if batch:
                rtts = sorted(rtt for _, rtt in batch)
                median.points.append((elapsed + slice_s / 2, rtts[len(rtts) // 2]))
                slowest.points.append((elapsed + slice_s / 2, rtts[-1]))
            # one redraw per slice (REFRESH_S): three small messages, whatever the echo count
            last = samples[-1][1] if samples else float("nan")
            readout.value = (
                f"<b>ping meter</b>: {len(samples):,} echoes · last {last:.3f} ms"
            )
            plot.value = chart()
            clock.value = min(seconds, time.perf_counter() - started)
            drawn = time.perf_counter()
    _pace(drawn)  # the closing words too: every widget at most one update per REFRESH_S
    clock.bar_style = "success"
    frame = pd.DataFrame(samples, columns=["t_s", "rtt_ms"])
    frame.insert(0, "trial", range(len(frame)))
    frame.attrs["run"] = run
    _last["stopped"] = False
    readout.value = f"<b>ping meter</b>: done. {summary(frame)}"
    return frame
