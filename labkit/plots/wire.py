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


def bytes_breakdown(table, *, title: str = "HTTP/WebSocket bytes for the same message (TCP/IP not counted)",
                    y: str = "HTTP/WebSocket bytes, up + down (B)"):
    """Stacked bars: `table` has columns `case`, `part` (e.g. headers, payload) and `bytes`.
    For `wire.packet_table` pass a title and `y` that say the TCP/IP parts are a model."""
    import plotly.express as px

    fig = px.bar(table, x="case", y="bytes", color="part", text="bytes",
                 color_discrete_map=PART_COLORS)
    fig.update_traces(textangle=0, textposition="inside", texttemplate="%{y:,} B")
    fig.update_layout(barmode="stack", uniformtext={"minsize": 10, "mode": "hide"})
    for case, total in table.groupby("case", sort=False)["bytes"].sum().items():
        fig.add_annotation(x=case, y=total, text=f"total {total:,} B", showarrow=False, yshift=12)
    return finish(fig, title, "exchange", y, legend="part")


def upload_during_push(run, *, title: str | None = None):
    """One timeline per run (WebSocket; HTTP/1.1 to the lab's echo; HTTP/1.1 to a streaming
    handler), each with its two directions: spans for the uploads and HTTP messages (from their
    first to their last byte at the server), a marker for each tick and ack. `run` is what
    `labkit.lessons.duplex.upload_during_push` returns."""
    from plotly.subplots import make_subplots

    events = run.events
    protocols = list(dict.fromkeys(events["protocol"]))
    captions = {"WebSocket": "one WebSocket: upload and pushed ticks at once",
                "HTTP/1.1, echo after the body": "HTTP/1.1, the lab's echo: it answers after the "
                                                 "request ends",
                "HTTP/1.1, streaming handler": "HTTP/1.1, a streaming handler: it answers while "
                                               "the request arrives"}
    fig = make_subplots(rows=len(protocols), cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=[captions.get(p, p) for p in protocols])
    styles = {"upload chunk": ("#56B4E9", None, 0), "POST request (upload)": ("#56B4E9", None, 0),
              "response (echo)": ("#E69F00", None, 0), "tick": ("#0072B2", "line-ns", 14),
              "ack": ("#009E73", "circle-open", 7)}
    import plotly.graph_objects as go

    shown: set[str] = set()
    for row, protocol in enumerate(protocols, 1):
        for what, group in events[events["protocol"] == protocol].groupby("what", sort=False):
            color, symbol, size = styles.get(what, ("#7f7f7f", "circle", 10))
            lane = group["direction"].map(LANES)
            if symbol is None:  # a span of bytes: one segment per message
                xs, ys = [], []
                for (_, r), name in zip(group.iterrows(), lane, strict=True):
                    xs += [r["t_ms"] / 1000, max(r["t_end_ms"], r["t_ms"] + 1) / 1000, None]
                    ys += [name, name, None]
                trace = go.Scatter(x=xs, y=ys, mode="lines", name=what, legendgroup=what,
                                   showlegend=what not in shown,
                                   line={"color": color, "width": 14})
            else:
                trace = go.Scatter(x=group["t_ms"] / 1000, y=lane, mode="markers", name=what,
                                   legendgroup=what, showlegend=what not in shown,
                                   marker={"symbol": symbol, "size": size, "color": color,
                                           "line": {"width": 2, "color": color}})
            shown.add(what)
            fig.add_trace(trace, row=row, col=1)
        fig.update_yaxes(categoryorder="array", categoryarray=list(LANES.values()), row=row, col=1)
    fig.update_layout(height=170 + 150 * len(protocols))
    fig.update_xaxes(title_text="time since the first uploaded byte reached the server (s)",
                     row=len(protocols), col=1)
    return finish(fig, title or f"Uploading over the '{run.profile}' profile while the server talks",
                  "", "direction (lane)", legend="message")
