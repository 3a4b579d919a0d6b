"""Figures for the push lessons: staleness, cost per event, the polling trade-off, chat delays."""

from __future__ import annotations

from .base import color_map, finish


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


def poll_tradeoff(frame):
    """Median staleness against requests per second, one point per poll interval."""
    import plotly.express as px

    fig = px.scatter(frame, x="requests_per_s", y="staleness_p50_ms", color="transport",
                     text="transport", log_x=True, log_y=True,
                     error_y=frame["staleness_p90_ms"] - frame["staleness_p50_ms"],
                     error_y_minus=[0] * len(frame),
                     color_discrete_map=color_map(frame["transport"].unique()))
    fig.update_traces(textposition="top center", marker={"size": 12})
    fig.update_xaxes(dtick=1)  # log axes labelled at powers of ten only
    fig.update_yaxes(dtick=1)
    return finish(fig, "Polling trades requests for freshness (bar: up to p90)",
                  "requests per second (1/s, log scale)",
                  "median staleness (ms, log scale)", legend="client")


def chat_delay(frame):
    """Delivery delay of chat messages per kind of member (frame: receiver_kind, delay_ms)."""
    import plotly.express as px

    fig = px.box(frame, x="receiver_kind", y="delay_ms", color="receiver_kind", points="all",
                 color_discrete_map=color_map(frame["receiver_kind"].unique()))
    return finish(fig, "Chat delivery delay by kind of member", "member (kind)",
                  "delay from stored to received (ms)", legend="member")
