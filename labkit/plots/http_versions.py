"""Figures for lesson 10 (beyond HTTP/1.1), from the frames of `labkit.lessons.beyond_http1`.

totals: total time per pattern, per link and loss rate; timeline: each stream's request and answer
on one HTTP/2 and one HTTP/3 connection under loss (head-of-line blocking); header_bytes: header
bytes per request as HPACK and QPACK learn the headers.
"""

from __future__ import annotations

from .base import OKABE_ITO, finish

PATTERN_LOOK = {
    "h1 sequential": (OKABE_ITO["black"], "/"),
    "h1 six connections": (OKABE_ITO["vermillion"], "x"),
    "h1 pipelined": (OKABE_ITO["reddish purple"], "\\"),
    "h2 multiplexed": (OKABE_ITO["orange"], "."),
    "h3 multiplexed": (OKABE_ITO["bluish green"], "+"),
    "ws lock-step": (OKABE_ITO["sky blue"], "-"),
    "ws streamed": (OKABE_ITO["blue"], ""),
}
"""Colour and bar pattern per pattern key (WebSocket blue, as in every lesson; HTTP/1.1 dark)."""
PROTOCOL_LOOK = {
    "HTTP/1.1": (OKABE_ITO["black"], "dashdot", "square"),
    "HTTP/2": (OKABE_ITO["orange"], "dash", "diamond"),
    "HTTP/2 (HPACK)": (OKABE_ITO["orange"], "dash", "diamond"),
    "HTTP/3": (OKABE_ITO["bluish green"], "dot", "triangle-up"),
    "HTTP/3 (QPACK)": (OKABE_ITO["bluish green"], "dot", "triangle-up"),
    "WebSocket frame": (OKABE_ITO["blue"], "solid", "circle"),
}


def _go():
    import plotly.graph_objects as go

    return go


def totals(frame, *, n: int | None = None, title: str | None = None):
    """Total time for n requests (the largest N of the run by default) per pattern: one panel per
    link, the loss rates side by side, log scale."""
    from plotly.subplots import make_subplots

    go = _go()
    n = int(frame["n"].max()) if n is None else n
    part = frame[frame["n"] == n]
    profiles = list(dict.fromkeys(part["profile"]))
    fig = make_subplots(rows=1, cols=len(profiles), subplot_titles=profiles, shared_yaxes=True)
    for col, profile in enumerate(profiles, 1):
        here = part[part["profile"] == profile]
        for key, group in here.groupby("key", sort=False):
            color, hatch = PATTERN_LOOK.get(str(key), (None, ""))
            fig.add_trace(go.Bar(
                x=[f"{loss:.0%} loss" for loss in group["loss"]], y=group["total_ms"], name=str(key),
                legendgroup=str(key), showlegend=col == 1,
                marker={"color": color, "pattern": {"shape": hatch}}), row=1, col=col)
    fig.update_yaxes(type="log", dtick=1)
    fig.update_layout(barmode="group")
    finish(fig, title or f"{n} small requests or messages: total time per pattern",
           "loss rate on the link", "total time (ms, log scale)", legend="pattern")
    return fig.update_xaxes(title_text="loss rate on the link")  # every panel, not the first only


def timeline(frame, *, title: str | None = None):
    """One line per stream, from request sent to answer complete, HTTP/2 and HTTP/3 side by side.
    A stream overtaken by a later one is drawn thick."""
    from plotly.subplots import make_subplots

    go = _go()
    protocols = list(dict.fromkeys(frame["protocol"]))
    fig = make_subplots(rows=1, cols=len(protocols), subplot_titles=protocols, shared_yaxes=True)
    for col, protocol in enumerate(protocols, 1):
        part = frame[frame["protocol"] == protocol]
        color, dash, symbol = PROTOCOL_LOOK[protocol]
        for overtaken in (False, True):
            rows = part[(part["overtaken_by"] > 0) == overtaken]
            xs: list = []
            ys: list = []
            for _, row in rows.iterrows():
                xs += [row["sent_ms"], row["done_ms"], None]
                ys += [row["stream"], row["stream"], None]
            name = f"{protocol}: " + ("overtaken by a later stream" if overtaken else "in order")
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines+markers", name=name,
                line={"color": color, "dash": "solid" if overtaken else dash,
                      "width": 5 if overtaken else 2},
                marker={"symbol": symbol, "size": 6}), row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    attrs = frame.attrs
    title = title or (f"Each stream from request to answer, {attrs.get('profile')} link, "
                      f"{attrs.get('loss', 0):.0%} loss")
    finish(fig, title, "time since the first request (ms)", "stream (in request order)",
           legend="stream")
    return fig.update_xaxes(title_text="time since the first request (ms)")


def header_bytes(frame, *, title: str | None = None):
    """Header bytes (request + response) of each request in order, per protocol (log scale)."""
    go = _go()
    fig = go.Figure()
    for protocol, part in frame.groupby("protocol", sort=False):
        color, dash, symbol = PROTOCOL_LOOK.get(str(protocol), (None, "solid", "circle"))
        fig.add_trace(go.Scatter(x=part["request"], y=part["total"], name=str(protocol),
                                 mode="lines+markers", line={"color": color, "dash": dash},
                                 marker={"symbol": symbol, "size": 8}))
    fig.update_yaxes(type="log", dtick=1)
    return finish(fig, title or "Header bytes per request, request + response",
                  "request on the connection (1 = first)", "header bytes (B, log scale)",
                  legend="protocol")
