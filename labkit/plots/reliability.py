"""Figures of lesson 07: a reconnect storm (attempts per window, with and without jitter) and the
staleness of each fallback path. Colours come from the kit's palette (`base.OKABE_ITO`, and each
transport's own colour), with the template `base.finish` applies, as in lessons 00-05."""

from __future__ import annotations

from .base import OKABE_ITO, finish, transport_color, transport_name

STORM_COLOURS = {"none": OKABE_ITO["vermillion"], "full": OKABE_ITO["blue"],
                 "equal": OKABE_ITO["reddish purple"]}
"""One colour per jitter setting (Okabe-Ito: apart for the common colour-vision deficiencies)."""
STORM_PATTERNS = {"none": "/", "full": "", "equal": "."}
"""The second channel of the storm's bars, so the two storms differ without colour too."""


def reconnect_storm(bins, *, bin_s: float = 0.1, down_s: float | None = None):
    """Bars of connection attempts per `bin_s` window after a server stop, one colour per jitter
    setting (`bins`: labkit.lessons.reliability.attempts_per_bin). A dotted line marks the restart."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for jitter, rows in bins.groupby("jitter", sort=False):
        label = {"none": "no jitter", "full": "full jitter", "equal": "equal jitter"}.get(jitter,
                                                                                          jitter)
        fig.add_trace(go.Bar(x=rows["bin_s"] + bin_s / 2, y=rows["attempts"], width=bin_s * 0.9,
                             name=label, marker_color=STORM_COLOURS.get(jitter), opacity=0.75,
                             marker_pattern_shape=STORM_PATTERNS.get(jitter, "")))
    if down_s is not None:
        fig.add_vline(x=down_s, line_dash="dot", annotation_text="server back")
    fig.update_layout(barmode="overlay")
    return finish(fig, f"Reconnect storm: connection attempts started per {bin_s * 1000:.0f} ms "
                       "after a server stop", "time since the server stopped (s)",
                  f"attempts per {bin_s * 1000:.0f} ms (count)", legend="backoff")


def fallback_staleness(frame):
    """Box plot of staleness (ms) per client of labkit.lessons.reliability.fallback_run, each
    client in the colour of the transport it read with."""
    import plotly.express as px

    colours = {}
    for client, rows in frame.groupby("client", sort=False):
        via = rows["transport"].mode()
        colours[client] = transport_color(transport_name(via.iloc[0])) if len(via) else None
    fig = px.box(frame, x="client", y="staleness_ms", color="client", points="all",
                 color_discrete_map={k: v for k, v in colours.items() if v is not None},
                 color_discrete_sequence=list(OKABE_ITO.values())[1:])
    return finish(fig, "Staleness of each path to the feed (a refused WebSocket fell back to SSE)",
                  "client (path)", "staleness (ms, received - published)", legend="client")
