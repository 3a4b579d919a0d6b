"""Figures for the latency lab: each takes the tidy frame of `labkit.lessons.latency` and returns a
plotly figure.

ecdf: the whole distribution per transport; by_profile: box or violin per network; rtt_vs_payload:
median (and p10-p90) against message size; waterfall: where an HTTP request's time goes;
bytes_per_message: HTTP/WebSocket bytes per round trip; tcp_ip_bytes: the same with the TCP/IP
packets under them (a model); exchange_curve: total time for N messages; patterns: N messages sent
lock-step, streamed, or over parallel connections.
"""

from __future__ import annotations

from .base import DIRECTION_COLORS, finish, transport_color, transport_name

PHASE_COLORS = {"tcp_ms": "#17becf", "tls_ms": "#bcbd22", "send_ms": "#e377c2",
                "wait_ms": "#c7c7c7", "receive_ms": "#7f7f7f"}
"""Phase colours stay clear of the transport colours in plots.base."""
DECADES = {"type": "log", "dtick": 1}
"""Log axes labelled at powers of ten only (minor labels like "2" and "5" read as wrong values)."""
PHASE_NAMES = {"tcp_ms": "TCP handshake", "tls_ms": "TLS handshake", "send_ms": "request sent",
               "wait_ms": "waiting (server + network)", "receive_ms": "response body"}


def _go():
    import plotly.graph_objects as go

    return go


_name = transport_name
_color = transport_color


def ecdf(frame, *, value: str = "rtt_ms", log_x: bool = False, title: str | None = None):
    """One ECDF line per transport (and per profile, dashed, when there are several)."""
    from labkit.measure import ecdf_frame

    go = _go()
    profiles = list(dict.fromkeys(frame["profile"])) if "profile" in frame else [None]
    by = ["transport", "profile"] if len(profiles) > 1 else ["transport"]
    curves = ecdf_frame(frame, value, by)
    fig = go.Figure()
    dashes = ["solid", "dash", "dot", "dashdot", "longdash"]
    for key, group in curves.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        transport = key[0]
        label = _name(transport) + (f" ({key[1]})" if len(key) > 1 else "")
        dash = dashes[profiles.index(key[1]) % len(dashes)] if len(key) > 1 else "solid"
        fig.add_trace(go.Scatter(x=group[value], y=group["ecdf"], mode="lines", name=label,
                                 line={"shape": "hv", "color": _color(transport), "dash": dash}))
    if log_x:
        fig.update_xaxes(type="log")
    fig.update_yaxes(range=[0, 1.02])
    return finish(fig, title or "Round trips, whole distribution (ECDF)", "round trip (ms)",
                  "fraction of round trips ≤ x (0-1)", legend="transport")


def by_profile(frame, *, kind: str = "box", value: str = "rtt_ms", log_y: bool = True,
               title: str | None = None):
    """Box (or violin) plots of round trips per network profile, one colour per transport."""
    go = _go()
    if kind not in ("box", "violin"):
        raise ValueError("kind is 'box' or 'violin'")
    fig = go.Figure()
    for transport, group in frame.groupby("transport", sort=False):
        common = {"x": group["profile"], "y": group[value], "name": _name(transport),
                  "marker_color": _color(transport), "legendgroup": transport}
        if kind == "box":
            fig.add_trace(go.Box(boxpoints="outliers", **common))
        else:
            fig.add_trace(go.Violin(box_visible=True, meanline_visible=False, points=False,
                                    **common))
    fig.update_layout(boxmode="group", violinmode="group")
    if log_y:
        fig.update_yaxes(**DECADES)
    return finish(fig, title or "Round trip by network and transport", "network profile",
                  "round trip (ms)" + (", log scale" if log_y else ""), legend="transport")


def rtt_vs_payload(frame, *, value: str = "rtt_ms", title: str | None = None):
    """Median round trip against payload size per transport; the bars span p10 to p90."""
    from labkit.measure import percentile

    go = _go()
    fig = go.Figure()
    for transport, group in frame.groupby("transport", sort=False):
        sizes, med, lo, hi = [], [], [], []
        for size, cell in group.groupby("payload_bytes"):
            m = percentile(cell[value], 50)
            sizes.append(size)
            med.append(m)
            lo.append(m - percentile(cell[value], 10))
            hi.append(percentile(cell[value], 90) - m)
        fig.add_trace(go.Scatter(
            x=sizes, y=med, mode="lines+markers", name=_name(transport),
            line={"color": _color(transport)},
            error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
        ))
    fig.update_xaxes(**DECADES)
    return finish(fig, title or "Round trip against message size (median, p10-p90)",
                  "payload each way (bytes, log scale)", "round trip (ms)", legend="transport")


def waterfall(frame, *, title: str | None = None):
    """A browser-style waterfall: the median of each HTTP phase, per REST transport, end to end."""
    from labkit.lessons.latency import PHASES
    from labkit.measure import median

    go = _go()
    rest = frame[frame["transport"].isin(["rest-new", "rest-keepalive"])]
    if rest.empty:
        raise ValueError("the waterfall needs REST rows (rest-new or rest-keepalive)")
    transports = list(dict.fromkeys(rest["transport"]))
    medians = {t: {p: median(rest.loc[rest["transport"] == t, p]) for p in PHASES}
               for t in transports}
    fig = go.Figure()
    for phase in PHASES:
        bases, widths, labels = [], [], []
        for t in transports:
            before = sum(medians[t][p] for p in PHASES[: PHASES.index(phase)])
            bases.append(before)
            widths.append(medians[t][phase])
            labels.append(_name(t))
        fig.add_trace(go.Bar(
            y=labels, x=widths, base=bases, orientation="h", name=PHASE_NAMES[phase],
            marker_color=PHASE_COLORS[phase],
            hovertemplate="%{y}: " + PHASE_NAMES[phase] + " %{x:.2f} ms<extra></extra>",
        ))
    fig.update_layout(barmode="overlay")
    fig.update_yaxes(autorange="reversed")
    return finish(fig, title or "Where a request's time goes (median of each phase)",
                  "time since the request started (ms)", "transport", legend="phase")


def bytes_per_message(frame, *, title: str | None = None):
    """Median bytes on the wire per round trip, up and down stacked, per transport and payload."""
    from labkit.measure import median

    go = _go()
    rows = []
    for (transport, size), group in frame.groupby(["transport", "payload_bytes"], sort=False):
        rows.append((f"{_name(transport)}, {size} B", median(group["bytes_up"]),
                     median(group["bytes_down"])))
    fig = go.Figure([
        go.Bar(x=[r[0] for r in rows], y=[r[1] for r in rows], name="client → server (up)",
               marker_color=DIRECTION_COLORS["up"]),
        go.Bar(x=[r[0] for r in rows], y=[r[2] for r in rows], name="server → client (down)",
               marker_color=DIRECTION_COLORS["down"]),
    ])
    fig.update_layout(barmode="stack")
    return finish(fig, title or "HTTP/WebSocket bytes per round trip (median; TCP/IP not included)",
                  "transport, payload each way", "HTTP/WebSocket bytes per round trip (B)",
                  legend="direction")


def tcp_ip_bytes(frame, *, title: str | None = None):
    """Median bytes per round trip in two layers: the HTTP/WebSocket bytes the proxy counted, and
    the TCP/IP headers of the packets that carry them (`labkit.lessons.latency.tcp_ip_bytes`, a model)."""
    from labkit.lessons.latency import tcp_ip_bytes as model
    from labkit.measure import median

    go = _go()
    data = model(frame)
    labels, app, tcp = [], [], []
    for (transport, size), group in data.groupby(["transport", "payload_bytes"], sort=False):
        labels.append(f"{_name(transport)}, {size} B")
        app.append(median(group["bytes_up"] + group["bytes_down"]))
        tcp.append(median(group["tcp_ip_bytes"]))
    fig = go.Figure([
        go.Bar(x=labels, y=app, name="HTTP/WebSocket bytes (measured)",
               marker_color=DIRECTION_COLORS["up"]),
        go.Bar(x=labels, y=tcp, name="TCP/IP headers, 52 B per packet (model)",
               marker_color="#bdbdbd", marker_pattern_shape="/"),
    ])
    fig.update_layout(barmode="stack")
    return finish(fig, title or "Bytes per round trip including TCP/IP packets (median; model)",
                  "transport, payload each way", "bytes per round trip (B)", legend="layer")


PATTERN_STYLES = {
    "websocket lock-step": ("websocket", ""), "websocket streamed": ("websocket", "/"),
    "rest keep-alive": ("rest-keepalive", ""), "rest pipelined": ("rest-keepalive", "/"),
    "rest parallel": ("rest-keepalive", "x"),
}
"""Pattern -> (transport whose colour it takes, bar hatching), so colour is not the only cue."""


def patterns(frame, *, title: str | None = None):
    """Median time to send N messages with each pattern (`labkit.lessons.latency.compare_patterns`), as
    horizontal bars on a log axis, each labelled with its time and its round trips."""
    from labkit.measure import median

    go = _go()
    fig = go.Figure()
    for pattern, group in frame.groupby("pattern", sort=False):
        transport, hatch = PATTERN_STYLES.get(pattern, (pattern, ""))
        lanes = int(group["connections"].iloc[0])
        label = pattern + (f" ({lanes} connections)" if lanes > 1 else "")
        total, trips = median(group["total_ms"]), median(group["round_trips"])
        fig.add_trace(go.Bar(
            y=[label], x=[total / 1000], orientation="h", name=label,
            marker={"color": _color(transport), "pattern": {"shape": hatch}},
            text=[f"{total / 1000:.2f} s ≈ {trips:.0f} round trips"], textposition="outside"))
    n = int(frame["messages"].iloc[0])
    fig.update_xaxes(**DECADES)
    fig.update_yaxes(autorange="reversed")
    return finish(fig, title or f"{n} messages on open connections: how they are sent matters",
                  "total time for the messages (s, log scale)", "pattern", legend="pattern")


def exchange_curve(totals, *, title: str | None = None):
    """Total time to exchange N messages per transport (log-log): lines for the model, markers
    for measured points, so the amortised set-up shows as lines converging to a slope."""
    go = _go()
    fig = go.Figure()
    for (transport, source), group in totals.groupby(["transport", "source"], sort=False):
        measured = source == "measured"
        fig.add_trace(go.Scatter(
            x=group["messages"], y=group["total_ms"] / 1000,
            mode="markers" if measured else "lines+markers",
            name=f"{_name(transport)} ({source})",
            line={"color": _color(transport), "dash": "solid"},
            marker={"size": 11 if measured else 6, "symbol": "x" if measured else "circle",
                    "color": _color(transport)},
        ))
    fig.update_xaxes(**DECADES)
    fig.update_yaxes(**DECADES)
    return finish(fig, title or "Time to exchange N messages, one after another",
                  "messages exchanged (N, log scale)", "total time (s, log scale)",
                  legend="transport")


__all__ = ["by_profile", "bytes_per_message", "ecdf", "exchange_curve", "patterns",
           "rtt_vs_payload", "tcp_ip_bytes", "waterfall"]
