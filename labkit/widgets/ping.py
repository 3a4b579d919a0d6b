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

    The meter redraws every REFRESH_S seconds (at most ~10 times a second) and stops by itself.
    Columns of the result: trial, t_s (time since start), rtt_ms.
    """
    import ipywidgets as w
    import pandas as pd
    import plotly.graph_objects as go
    from IPython.display import display

    from ..plots.base import finish

    readout = w.HTML("<b>ping meter</b>: connecting…")
    clock = w.FloatProgress(value=0, min=0, max=seconds, description="time", bar_style="info")
    figure = go.FigureWidget(go.Scatter(x=[], y=[], mode="lines", name="WebSocket echo"))
    finish(figure, "WebSocket echo round trips, live", "time since start (s)", "round trip (ms)")
    figure.update_layout(height=280)
    box = w.VBox([readout, clock, figure], layout=w.Layout(width="100%"))
    box.add_class("labkit-ping-meter")
    display(box)

    samples: list[tuple[float, float]] = []
    with WsClient(target, path) as ws:
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            slice_s = min(REFRESH_S, seconds - elapsed)
            batch = _loop.run(_echo_for(ws.connection, slice_s, payload))
            offset = elapsed
            samples.extend((offset + t, rtt) for t, rtt in batch)
            last = samples[-1][1] if samples else float("nan")
            readout.value = (
                f"<b>ping meter</b>: {len(samples):,} echoes · last {last:.3f} ms"
            )
            clock.value = min(seconds, time.perf_counter() - started)
            with figure.batch_update():
                figure.data[0].x = [s[0] for s in samples[-2000:]]
                figure.data[0].y = [s[1] for s in samples[-2000:]]
    clock.bar_style = "success"
    frame = pd.DataFrame(samples, columns=["t_s", "rtt_ms"])
    frame.insert(0, "trial", range(len(frame)))
    readout.value = (
        f"<b>ping meter</b>: done, {len(frame):,} echoes in {seconds:g} s · median "
        f"{frame.rtt_ms.median():.3f} ms · p99 {frame.rtt_ms.quantile(0.99):.3f} ms"
    )
    return frame
