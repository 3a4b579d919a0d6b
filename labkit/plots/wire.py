"""Figures of what the wire tap recorded: a two-lane full-duplex timeline and byte breakdowns."""

from __future__ import annotations

from .base import finish

LANES = {"up": "client → server", "down": "server → client"}


def duplex_timeline(frames, *, title: str = "Both directions at once (full duplex)",
                    label: str = "opcode"):
    """Two lanes (up, down), one marker per frame at the time the tap read it.

    `frames` is `tap.frames()` (or any frame with `t_ms`, `direction`, `wire_bytes` and `label`).
    Overlapping markers in both lanes are the point: each side sends whenever it likes.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, group in frames.groupby(label, sort=True):
        fig.add_trace(go.Scatter(
            x=group["t_ms"],
            y=group["direction"].map(LANES),
            mode="markers",
            name=str(name),
            marker={"size": 9, "symbol": "line-ns", "line": {"width": 2}},
            customdata=group[["wire_bytes"]],
            hovertemplate="%{y}<br>t = %{x:.1f} ms<br>%{customdata[0]} B on the wire"
                          "<extra>%{fullData.name}</extra>",
        ))
    fig.update_yaxes(categoryorder="array", categoryarray=list(LANES.values()))
    return finish(fig, title, "time since the tap started (ms)", "direction (lane)", legend=label)


def header_overhead(anatomy, *, title: str = "WebSocket frame header size by payload size"):
    """Bars of header bytes per payload size, client→server (masked) next to server→client.

    `anatomy` has `payload_bytes`, `direction`, `header_bytes` (e.g. rows of `tap.frames()`).
    """
    import plotly.express as px

    df = anatomy.assign(lane=anatomy["direction"].map(LANES),
                        payload=anatomy["payload_bytes"].map("{:,} B".format))
    fig = px.bar(df, x="payload", y="header_bytes", color="lane", barmode="group", text="header_bytes")
    return finish(fig, title, "payload size (bytes)", "header (bytes)", legend="direction")


def bytes_breakdown(table, *, title: str = "Bytes on the wire for the same message"):
    """Stacked bars: `table` has columns `case`, `part` (e.g. headers, payload) and `bytes`."""
    import plotly.express as px

    fig = px.bar(table, x="case", y="bytes", color="part", text="bytes")
    fig.update_layout(barmode="stack")
    return finish(fig, title, "exchange", "bytes (up + down)", legend="part")
