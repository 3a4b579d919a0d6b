"""Figures for the push lessons: staleness, cost per event, the polling trade-off, chat delays."""

from __future__ import annotations

from typing import TypedDict

from .base import color_map, finish


class LineStyle(TypedDict, total=False):
    width: float
    dash: str


def staleness_ecdf(events):
    """ECDF of staleness per transport (events: transport, staleness_ms)."""
    import plotly.express as px

    fig = px.ecdf(events, x="staleness_ms", color="transport", log_x=True,
                   color_discrete_map=color_map(events["transport"].unique()))
    fig.update_xaxes(dtick=1)
    return finish(fig, "How stale is each event when it arrives?", "staleness (ms, log scale)",
                  "share of events (fraction)", legend="transport")


def cost_per_event(summary, column: str = "requests_per_event"):
    """Bars of one per-event cost (requests_per_event or bytes_per_event) per transport."""
    import plotly.express as px

    unit = {"requests_per_event": "requests", "bytes_per_event": "bytes"}.get(column, column)
    fig = px.bar(summary, x="transport", y=column, color="transport", text_auto=".2f",
                 color_discrete_map=color_map(summary["transport"].unique()))
    return finish(fig, f"{unit.capitalize()} per delivered event", "transport (name)",
                  f"{unit} per event (count)" if unit == "requests" else f"{unit} per event (B)",
                  legend="transport")


def server_cpu(costs):
    """Bars of the server thread's CPU per delivered event, above the idle run
    (costs: transport, clients, cpu_us_per_event, as `clients.feed.server_costs` returns)."""
    import plotly.express as px

    busy = costs[costs["clients"] > 0]
    fig = px.bar(busy, x="transport", y="cpu_us_per_event", color="transport", text_auto=".0f",
                 color_discrete_map=color_map(busy["transport"].unique()))
    return finish(fig, "Server CPU per delivered event (idle cost subtracted)", "transport (name)",
                  "server thread CPU per event (µs)", legend="transport")


def cost_model(model):
    """Server CPU against the feed's event rate for many clients, per transport (log-log), from
    `clients.feed.cost_model`: polling is flat (it pays per client per poll), push grows with
    the events. A dashed line marks one CPU core; a dotted line (named "at most") is an upper
    bound, for a transport whose measured cost was within the noise (`cost_model(upper=True)`)."""
    import plotly.graph_objects as go

    from .base import transport_color

    fig = go.Figure()
    symbols = {"short poll": "square", "long poll": "diamond", "SSE": "triangle-up",
               "WebSocket": "circle"}
    for transport, rows in model.groupby("transport", sort=False):
        bound = "measured" in rows and not rows["measured"].all()  # an upper bound: within noise
        fig.add_scatter(x=rows["event_rate_hz"], y=rows["cpu_ms_per_s"],
                        name=f"{transport} (at most: within noise)" if bound else transport,
                        mode="lines+markers",
                        line={"color": transport_color(transport), "dash": "dot" if bound else None},
                        marker={"symbol": symbols.get(transport, "circle"), "size": 9})
    fig.add_hline(y=1000, line={"dash": "dash", "color": "#666"},
                  annotation_text="one CPU core busy (1000 ms per s)")
    fig.update_xaxes(type="log", dtick=1)
    fig.update_yaxes(type="log", dtick=1)
    clients = int(model["clients"].iloc[0])
    return finish(fig, f"Server CPU for {clients:,} clients (model from the measured unit costs)",
                  "events published per second (1/s, log scale)",
                  "server CPU (ms per second, log scale)", legend="transport")


LIVE_LINE_STYLES: dict[str, LineStyle] = {
    "short poll": {"width": 2.5, "dash": "solid"},
    "long poll": {"width": 9.0, "dash": "solid"},
    "SSE": {"width": 5.0, "dash": "solid"},
    "WebSocket": {"width": 1.5, "dash": "solid"},
}
"""Line widths for one live feed drawn per transport: the pushed ones change at the same moments
and would hide each other, so they are drawn widest first (long poll, SSE, then WebSocket on top)
and each stays visible as a band around the next."""


def poll_tradeoff(frame):
    """Median staleness against requests per second: one line through the short pollers (each
    point labelled with its interval) and one point for the WebSocket; bars reach up to p90.

    frame: as `clients.feed.poll_tradeoff` returns (interval_s 0 marks the WebSocket)."""
    import plotly.graph_objects as go

    from .base import transport_color

    fig = go.Figure()
    polls = frame[frame["interval_s"] > 0].sort_values("interval_s")
    others = frame[frame["interval_s"] <= 0]
    for name, rows, labels in (
        ("short poll", polls, [f"every {i:g} s" for i in polls["interval_s"]]),
        *((t, others[others["transport"] == t], [t]) for t in others["transport"].unique()),
    ):
        if rows.empty:
            continue
        fig.add_scatter(
            x=rows["requests_per_s"], y=rows["staleness_p50_ms"], name=name, text=labels,
            mode="lines+markers+text" if len(rows) > 1 else "markers+text",
            textposition="bottom center", marker={"size": 12, "color": transport_color(name)},
            line={"color": transport_color(name), "dash": "dot"},
            error_y={"type": "data", "symmetric": False,
                     "array": rows["staleness_p90_ms"] - rows["staleness_p50_ms"],
                     "arrayminus": [0] * len(rows)})
    fig.update_xaxes(type="log", dtick=1)  # log axes labelled at powers of ten only
    fig.update_yaxes(type="log", dtick=1)
    return finish(fig, "Polling trades requests for freshness (bar: up to p90)",
                  "requests per second (1/s, log scale)",
                  "median staleness (ms, log scale)", legend="client")


def chat_delay(frame):
    """Delivery delay of chat messages per kind of member (frame: receiver_kind, delay_ms), on a
    log axis (push delays are a thousand times shorter than poll delays), median written on top."""
    import plotly.express as px

    fig = px.box(frame, x="receiver_kind", y="delay_ms", color="receiver_kind", points="all",
                 log_y=True, color_discrete_map=color_map(frame["receiver_kind"].unique()))
    fig.update_yaxes(dtick=1)  # labelled at powers of ten only
    for kind, median in frame.groupby("receiver_kind", sort=False)["delay_ms"].median().items():
        fig.add_annotation(x=kind, y=1, yref="paper", yanchor="bottom", showarrow=False,
                           text=f"median {median:,.3g} ms")
    return finish(fig, "Chat delivery delay by kind of member", "member (kind)",
                  "delay from stored to received (ms, log scale)", legend="member")
