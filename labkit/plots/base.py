"""Shared finishing touches for every labkit figure, and the one colour per transport that every
plot and widget uses (so "WebSocket" is the same blue in lesson 00 as in lesson 05)."""

from __future__ import annotations

TRANSPORT_COLORS = {
    "REST, new connection": "#d62728",
    "REST, keep-alive": "#ff7f0e",
    "WebSocket": "#1f77b4",
    "SSE": "#2ca02c",
    "long poll": "#9467bd",
    "short poll": "#8c564b",
}
"""One colour per transport, by the name the lessons show."""

DIRECTION_COLORS = {"up": "#3182bd", "down": "#e6550d"}
"""Client → server is blue, server → client is orange, in every byte plot (as in the request log)."""

PART_COLORS = {"headers": "#bdbdbd", "payload": "#3182bd"}
"""Overhead (start lines, headers, frame headers) is grey; the payload is coloured."""

TRANSPORT_NAMES = {
    "rest-new": "REST, new connection", "rest-keepalive": "REST, keep-alive",
    "websocket": "WebSocket", "ws": "WebSocket", "sse": "SSE", "long_poll": "long poll",
    "short_poll": "short poll", "REST poll": "short poll",
}
"""Keys used in the data frames, mapped to the names the lessons show."""


def transport_name(key: str) -> str:
    """The name the lessons show for a transport key ("rest-new" → "REST, new connection")."""
    return TRANSPORT_NAMES.get(key, key)


def transport_color(key: str) -> str | None:
    """The colour of a transport, by key or shown name; pollers at any interval ("poll 0.5 s")
    share the short-poll colour. None for names that are not transports."""
    name = transport_name(key)
    if name not in TRANSPORT_COLORS and str(name).startswith("poll "):
        name = "short poll"
    return TRANSPORT_COLORS.get(name)


def color_map(keys) -> dict:
    """`color_discrete_map` for plotly express: each transport key that has a colour."""
    return {k: c for k in keys if (c := transport_color(k)) is not None}


def finish(fig, title: str, x: str, y: str, *, legend: str | None = None):
    """Set title, axis titles (with units, e.g. "round trip (ms)") and show the legend."""
    fig.update_layout(
        title={"text": title},
        xaxis_title=x,
        yaxis_title=y,
        showlegend=True,
        legend_title_text=legend or "",
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
    )
    return fig
