"""Figures of what the wire tap recorded: a two-lane full-duplex timeline and byte breakdowns."""

from __future__ import annotations

from .base import DIRECTION_COLORS, PART_COLORS, finish

LANES = {"up": "client → server", "down": "server → client"}


def duplex_timeline(frames, *, title: str = "Both directions at once (full duplex)",
                    label: str = "opcode"):
    """Two lanes (up, down), one marker per frame at the time the tap read it.

    `frames` is `tap.frames()` (or any frame with `t_ms`, `direction`, `wire_bytes` and `label`).
    Overlapping markers in both lanes are the point: each side sends whenever it likes.
    """
    import plotly.express as px
    import plotly.graph_objects as go

    fig = go.Figure()
    colors = px.colors.qualitative.Dark2  # kinds of message, not transports
    for i, (name, group) in enumerate(frames.groupby(label, sort=True)):
        color = colors[i % len(colors)]
        fig.add_trace(go.Scatter(
            x=group["t_ms"],
            y=group["direction"].map(LANES),
            mode="markers",
            name=str(name),
            marker={"size": 14, "symbol": "line-ns", "color": color,
                    "line": {"width": 2, "color": color}},
            customdata=group[["wire_bytes"]],
            hovertemplate="%{y}<br>t = %{x:.1f} ms<br>%{customdata[0]} B on the wire"
                          "<extra>%{fullData.name}</extra>",
        ))
    fig.update_yaxes(categoryorder="array", categoryarray=list(LANES.values()))
    fig.update_layout(height=300)
    return finish(fig, title, "time since the tap started (ms)", "direction (lane)", legend=label)


def header_overhead(anatomy, *, title: str = "WebSocket frame header size by payload size"):
    """Bars of header bytes per payload size, client→server (masked) next to server→client.

    `anatomy` has `payload_bytes`, `direction`, `header_bytes` (e.g. rows of `tap.frames()`).
    """
    import plotly.express as px

    df = anatomy.assign(lane=anatomy["direction"].map(LANES),
                        payload=anatomy["payload_bytes"].map("{:,} B".format))
    fig = px.bar(df, x="payload", y="header_bytes", color="lane", barmode="group",
                 text="header_bytes", color_discrete_map={LANES[d]: c for d, c in
                                                           DIRECTION_COLORS.items()})
    fig.update_traces(textangle=0)
    return finish(fig, title, "payload size (bytes)", "frame header (bytes)", legend="direction")


def bytes_breakdown(table, *, title: str = "Bytes on the wire for the same message"):
    """Stacked bars: `table` has columns `case`, `part` (e.g. headers, payload) and `bytes`."""
    import plotly.express as px

    fig = px.bar(table, x="case", y="bytes", color="part", text="bytes",
                 color_discrete_map=PART_COLORS)
    fig.update_traces(textangle=0, textposition="inside", texttemplate="%{y:,} B")
    fig.update_layout(barmode="stack", uniformtext={"minsize": 10, "mode": "hide"})
    for case, total in table.groupby("case", sort=False)["bytes"].sum().items():
        fig.add_annotation(x=case, y=total, text=f"total {total:,} B", showarrow=False, yshift=12)
    return finish(fig, title, "exchange", "bytes on the wire, up + down (B)", legend="part")
