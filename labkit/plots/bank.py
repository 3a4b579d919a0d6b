"""Figures for lesson 09: bytes per reading of device telemetry, and the delay of commands to
devices (polled vs pushed), in the kit's look (`base.finish`, the transports' colours)."""

from __future__ import annotations

from .base import OKABE_ITO, PART_COLORS, finish, log_axis

MODE_NAMES = {"rest": "one POST per reading", "batch": "a POST per batch", "ws": "WebSocket",
              "poll": "short poll", "WebSocket": "WebSocket"}
"""The lesson's names for the ways a device sends or learns."""


def telemetry_bytes(frame, devices: int, readings: int):
    """Grouped bars per way of sending: the bytes per reading the wire tap measured (HTTP/WebSocket)
    and the same with lesson 03's TCP/IP model added (frame: mode, bytes_per_reading,
    bytes_with_tcp_ip_per_reading)."""
    import plotly.express as px

    measured = "HTTP/WebSocket bytes (measured)"
    modelled = "with TCP/IP headers, ACKs, set-up (model)"
    long = frame.assign(way=frame["mode"].map(MODE_NAMES)).melt(
        id_vars="way", value_vars=["bytes_per_reading", "bytes_with_tcp_ip_per_reading"],
        var_name="counted", value_name="bytes")
    long["counted"] = long["counted"].map({"bytes_per_reading": measured,
                                           "bytes_with_tcp_ip_per_reading": modelled})
    fig = px.bar(long, x="way", y="bytes", color="counted", barmode="group",
                 color_discrete_map={measured: PART_COLORS[measured], modelled: OKABE_ITO["orange"]})
    return finish(fig, f"Bytes per reading ({devices} devices × {readings} readings)",
                  "how readings are sent", "bytes per reading (B)", legend="bytes counted")


def command_delays(frame, poll_s: float):
    """Box per way a device learns of a command, log scale (frame: mode "poll"/"ws", delay_ms)."""
    import plotly.express as px

    shown = frame.assign(way=frame["mode"].map({"poll": f"polls every {poll_s:g} s",
                                                "ws": "WebSocket (pushed)"}))
    colors = {f"polls every {poll_s:g} s": OKABE_ITO["vermillion"], "WebSocket (pushed)": OKABE_ITO["blue"]}
    fig = px.box(shown, x="way", y="delay_ms", color="way", points="all", color_discrete_map=colors)
    log_axis(fig, "y")
    return finish(fig, f"Command delay to a device: polled every {poll_s:g} s vs pushed",
                  "how the device learns", "delay (ms, log scale)", legend="how the device learns")
