"""Figures for lesson 08: move delays per transport and network, cursor tick rate vs bandwidth."""

from __future__ import annotations

from .base import finish, log_axis


def move_delays(frame):
    """Box per transport, one panel colour per network label (frame: label, transport, delay_ms)."""
    import plotly.express as px

    fig = px.box(frame, x="transport", y="delay_ms", color="label", points="all",
                 category_orders={"transport": list(dict.fromkeys(frame["transport"]))})
    log_axis(fig, "y")
    return finish(fig, "From one player's move to the other player's screen", "transport (name)",
                  "delay (ms, log scale)", legend="network")


def tick_bandwidth(frame):
    """Bytes per second per participant against the cursor tick rate (frame: tick_hz, bytes_per_s,
    participants)."""
    import plotly.express as px

    shown = frame.assign(kB_per_s=frame["bytes_per_s"] / 1000,
                         participants=frame["participants"].astype(str))
    fig = px.line(shown, x="tick_hz", y="kB_per_s", color="participants", markers=True)
    return finish(fig, "Cursor updates: tick rate vs bandwidth per participant",
                  "cursor updates sent per participant (per s)", "bytes on the wire (kB/s)",
                  legend="participants (count)")
