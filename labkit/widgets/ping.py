"""A live ping meter: WebSocket echoes for a few seconds, drawn as they happen, then it stops."""

from __future__ import annotations

import time

from .. import _loop
from ..clients.ws import WsClient
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


def ping_meter(target, seconds: float = 5.0, *, path: str = "/ws/echo", payload: str = "ping"):
    """Show a live meter of WebSocket echo round trips for `seconds`, then return them as a DataFrame.

    Echoes run in slices of REFRESH_S seconds; after each slice the meter adds one point for the
    slice's median and one for its slowest echo (so it redraws at most ~10 times a second, however
    many thousand echoes there are), and it stops by itself.
    Columns of the result: trial, t_s (time since start), rtt_ms.
    """
    import ipywidgets as w
    import pandas as pd
    import plotly.graph_objects as go
    from IPython.display import display

    from ..plots.base import finish, transport_color

    readout = w.HTML("<b>ping meter</b>: connecting…")
    clock = w.FloatProgress(value=0, min=0, max=seconds, description="time", bar_style="info")
    color = transport_color("websocket")
    figure = go.FigureWidget([
        go.Scatter(x=[], y=[], mode="lines+markers", name="median of each slice",
                   line={"color": color}, marker={"size": 5}),
        go.Scatter(x=[], y=[], mode="lines", name="slowest of each slice",
                   line={"color": color, "dash": "dot", "width": 1}),
    ])
    finish(figure, f"WebSocket echo round trips, live (one point per {REFRESH_S:g} s slice)",
           "time since start (s)", "round trip (ms, log scale)", legend="echoes")
    figure.update_xaxes(range=[0, seconds])
    figure.update_yaxes(type="log", dtick=1)  # labels at 0.1, 1, 10 ms only
    figure.update_layout(height=300)
    box = w.VBox([readout, clock, figure], layout=w.Layout(width="100%"))
    box.add_class("labkit-ping-meter")
    display(box)

    samples: list[tuple[float, float]] = []
    with WsClient(target, path) as ws:
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            slice_s = min(REFRESH_S, seconds - elapsed)
            # one slice, plus the client's timeout for an echo that never comes back
            batch = _loop.run(_echo_for(ws.connection, slice_s, payload),
                              timeout=slice_s + ws.timeout)
            samples.extend((elapsed + t, rtt) for t, rtt in batch)
            if batch:
                rtts = sorted(rtt for _, rtt in batch)
                with figure.batch_update():
                    for trace, value in zip(figure.data, (rtts[len(rtts) // 2], rtts[-1]),
                                            strict=True):
                        trace.x = (*trace.x, elapsed + slice_s / 2)
                        trace.y = (*trace.y, value)
            last = samples[-1][1] if samples else float("nan")
            readout.value = (
                f"<b>ping meter</b>: {len(samples):,} echoes · last {last:.3f} ms"
            )
            clock.value = min(seconds, time.perf_counter() - started)
    clock.bar_style = "success"
    frame = pd.DataFrame(samples, columns=["t_s", "rtt_ms"])
    frame.insert(0, "trial", range(len(frame)))
    readout.value = (
        f"<b>ping meter</b>: done, {len(frame):,} echoes in {seconds:g} s · median "
        f"{frame.rtt_ms.median():.3f} ms · p99 {frame.rtt_ms.quantile(0.99):.3f} ms"
    )
    return frame
