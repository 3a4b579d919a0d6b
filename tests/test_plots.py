"""Plot helpers: one colour per transport across modules, titles and units, readable byte plots."""

from __future__ import annotations

import pandas as pd

from labkit.plots import base, latency, push, rest, wire


def _colors(fig) -> dict:
    """Trace name -> colour, whichever attribute the trace uses."""
    out = {}
    for trace in fig.data:
        color = getattr(getattr(trace, "line", None), "color", None)
        color = color or getattr(getattr(trace, "marker", None), "color", None)
        out[trace.name] = color
    return out


def test_palette_maps_keys_and_names_to_the_same_colour():
    assert base.transport_color("websocket") == base.transport_color("WebSocket")
    assert base.transport_color("ws") == base.TRANSPORT_COLORS["WebSocket"]
    assert base.transport_color("rest-new") == base.TRANSPORT_COLORS["REST, new connection"]
    assert base.transport_color("poll 0.5 s") == base.TRANSPORT_COLORS["short poll"]
    assert base.transport_color("REST poll") == base.TRANSPORT_COLORS["short poll"]
    assert base.transport_color("headers") is None
    assert len(set(base.TRANSPORT_COLORS.values())) == len(base.TRANSPORT_COLORS)


def test_websocket_is_the_same_colour_in_the_latency_and_push_plots():
    rtt = pd.DataFrame({"transport": ["websocket", "rest-new"] * 3, "profile": "loopback",
                        "rtt_ms": [1.0, 2.0, 1.5, 2.5, 1.2, 2.2]})
    events = pd.DataFrame({"transport": ["WebSocket", "short poll", "SSE", "long poll"] * 2,
                           "staleness_ms": [1, 200, 2, 3, 1.5, 250, 2.5, 3.5]})
    lat, pushed = _colors(latency.ecdf(rtt)), _colors(push.staleness_ecdf(events))
    ws = base.TRANSPORT_COLORS["WebSocket"]
    assert lat["WebSocket"] == pushed["WebSocket"] == ws
    assert pushed["short poll"] == base.TRANSPORT_COLORS["short poll"]
    assert lat["REST, new connection"] == base.TRANSPORT_COLORS["REST, new connection"]


def _log(n: int, big: int) -> pd.DataFrame:
    rows = [{"method": "GET", "path": f"/api/notes/{i}", "status": 200, "elapsed_ms": 1.0,
             "request_header_bytes": 150, "request_body_bytes": 0, "response_header_bytes": 250,
             "response_body_bytes": big if i == n - 1 else 100} for i in range(n)]
    return pd.DataFrame(rows)


def test_request_log_labels_the_bottom_axis_and_cuts_a_giant_bar():
    fig = rest.request_log(_log(6, 25_000))
    assert fig.layout.xaxis2.title.text.startswith("exchange")
    assert not fig.layout.xaxis.title.text
    assert fig.layout.yaxis.range[1] < 25_000
    assert any("25,400 B" in a.text for a in fig.layout.annotations)


def test_request_log_keeps_the_full_axis_without_a_giant_bar():
    fig = rest.request_log(_log(6, 300))
    assert fig.layout.yaxis.range is None
    assert not fig.layout.annotations


def test_bytes_breakdown_writes_each_total_with_its_unit():
    table = pd.DataFrame({"case": ["REST", "REST", "WebSocket", "WebSocket"],
                          "part": ["headers", "payload"] * 2, "bytes": [347, 32, 8, 32]})
    fig = wire.bytes_breakdown(table)
    assert [a.text for a in fig.layout.annotations] == ["total 379 B", "total 40 B"]
    assert "(B)" in fig.layout.yaxis.title.text
    assert _colors(fig)["headers"] == base.PART_COLORS["headers"]


def test_duplex_timeline_gives_each_kind_its_own_colour():
    frames = pd.DataFrame({"t_ms": [1.0, 2.0, 3.0], "direction": ["up", "down", "down"],
                           "wire_bytes": [10, 12, 12], "what": ["message", "ack", "tick"]})
    fig = wire.duplex_timeline(frames, label="what")
    assert len({t.marker.color for t in fig.data}) == 3
    assert fig.layout.title.text and fig.layout.xaxis.title.text.endswith("(ms)")


def test_poll_tradeoff_has_one_legend_entry_per_client_kind_and_labels_each_interval():
    trade = pd.DataFrame({"transport": ["poll 0.1 s", "poll 0.5 s", "poll 1 s", "WebSocket"],
                          "interval_s": [0.1, 0.5, 1.0, 0.0],
                          "requests_per_s": [10.0, 2.0, 1.0, 0.2],
                          "staleness_p50_ms": [50.0, 250.0, 500.0, 1.0],
                          "staleness_p90_ms": [90.0, 450.0, 900.0, 2.0]})
    fig = push.poll_tradeoff(trade)
    assert [t.name for t in fig.data] == ["short poll", "WebSocket"]
    assert list(fig.data[0].text) == ["every 0.1 s", "every 0.5 s", "every 1 s"]
    assert _colors(fig) == {"short poll": base.TRANSPORT_COLORS["short poll"],
                            "WebSocket": base.TRANSPORT_COLORS["WebSocket"]}
    assert list(fig.data[0].error_y.array) == [40.0, 200.0, 400.0]
    assert fig.layout.yaxis.type == fig.layout.xaxis.type == "log"


def test_chat_delay_uses_a_log_axis_and_writes_each_measured_median():
    frame = pd.DataFrame({"receiver_kind": ["WebSocket"] * 3 + ["REST poll"] * 3,
                          "delay_ms": [0.2, 0.4, 0.3, 300.0, 700.0, 500.0]})
    fig = push.chat_delay(frame)
    assert fig.layout.yaxis.type == "log" and "log" in fig.layout.yaxis.title.text
    assert sorted(a.text for a in fig.layout.annotations) == ["median 0.3 ms", "median 500 ms"]


def test_live_feed_lines_that_coincide_get_distinct_widths_widest_first():
    from labkit.clients.feed import LABELS, TRANSPORTS

    widths = [push.LIVE_LINE_STYLES[LABELS[t]]["width"] for t in TRANSPORTS]
    pushed = widths[1:]  # long poll, SSE, WebSocket change at the same moments
    assert pushed == sorted(pushed, reverse=True) and len(set(pushed)) == len(pushed)


# -- palette, second channel, log ticks, legend, presentation ---------------------------------------
def _srgb_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _simulate(hex_color: str, kind: str) -> tuple[float, float, float]:
    """The colour as a deuteranope or protanope sees it (Viénot, Brettel & Mollon 1999)."""
    r, g, b = (_srgb_to_linear(int(hex_color[i:i + 2], 16) / 255) for i in (1, 3, 5))
    if kind == "protan":
        return (0.11238 * r + 0.88762 * g, 0.11238 * r + 0.88762 * g, 0.00401 * r - 0.00401 * g + b)
    return (0.29275 * r + 0.70725 * g, 0.29275 * r + 0.70725 * g, -0.02234 * r + 0.02234 * g + b)


def test_transports_stay_apart_for_deuteranopes_and_protanopes_and_have_a_second_channel():
    names = list(base.TRANSPORT_COLORS)
    for kind in ("deutan", "protan"):
        seen = {n: _simulate(base.TRANSPORT_COLORS[n], kind) for n in names}
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                distance = sum((x - y) ** 2 for x, y in zip(seen[a], seen[b], strict=True)) ** 0.5
                assert distance > 0.05, f"{a} and {b} look alike to a {kind}"
    for channel in (base.TRANSPORT_DASHES, base.TRANSPORT_SYMBOLS, base.TRANSPORT_PATTERNS):
        assert set(channel) == set(names) and len(set(channel.values())) == len(names)


def test_finish_gives_transport_traces_their_dash_and_symbol():
    rtt = pd.DataFrame({"transport": ["websocket", "rest-new", "rest-keepalive"] * 2,
                        "profile": "loopback", "rtt_ms": [1.0, 2.0, 1.5, 1.1, 2.2, 1.6]})
    fig = latency.ecdf(rtt)
    dashes = {t.name: t.line.dash for t in fig.data}
    assert dashes == {"WebSocket": "solid", "REST, new connection": "longdash",
                      "REST, keep-alive": "dashdot"}


def test_log_axes_get_readable_ticks_written_in_full():
    assert base.log_ticks(0.2, 0.9) == [0.2, 0.3, 0.4, 0.5, 0.6, 0.8]
    assert base.log_ticks(0.05, 3) == [0.05, 0.1, 0.2, 0.5, 1, 2]
    assert len(base.log_ticks(0.01, 10_000)) >= 5
    assert len(base.log_ticks(3, 4)) >= 2
    frame = pd.DataFrame({"receiver_kind": ["WebSocket"] * 3 + ["REST poll"] * 3,
                          "delay_ms": [0.2, 0.4, 0.3, 300.0, 700.0, 500.0]})
    axis = push.chat_delay(frame).layout.yaxis
    assert axis.type == "log" and len(axis.tickvals) >= 4
    assert list(axis.ticktext) == [f"{v:g}" if v < 1000 else f"{v:,.0f}" for v in axis.tickvals]


def test_no_legend_entry_for_a_trace_that_draws_nothing():
    import plotly.graph_objects as go

    fig = go.Figure([go.Scatter(x=[1, 2], y=[1, 2], name="drawn"),
                     go.Scatter(x=[], y=[], name="empty")])
    base.finish(fig, "t", "x (s)", "y (ms)")
    assert [t.showlegend for t in fig.data] == [None, False]


def test_present_enlarges_fonts_of_later_figures():
    import plotly.graph_objects as go

    try:
        base.present()
        big = base.finish(go.Figure(), "t", "x (s)", "y (ms)").layout.font.size
        base.present(False)
        normal = base.finish(go.Figure(), "t", "x (s)", "y (ms)").layout.font.size
    finally:
        base.present(False)
    assert big > normal == base.BASE_FONT


def test_upload_timeline_draws_both_protocols_in_two_lanes():
    from labkit.lessons.duplex import DuplexRun

    events = pd.DataFrame([
        ("WebSocket", "up", "upload chunk", 0.0, 400.0, 16000),
        ("WebSocket", "down", "tick", 100.0, 100.0, 60),
        ("WebSocket", "down", "ack", 420.0, 420.0, 60),
        ("HTTP/1.1", "up", "POST request (upload)", 0.0, 400.0, 16200),
        ("HTTP/1.1", "down", "response (echo)", 401.0, 800.0, 16200)],
        columns=["protocol", "direction", "what", "t_ms", "t_end_ms", "bytes"])
    fig = wire.upload_during_push(DuplexRun(events, {}, "4g"))
    assert {t.name for t in fig.data} == {"upload chunk", "tick", "ack", "POST request (upload)",
                                          "response (echo)"}
    assert "4g" in fig.layout.title.text and fig.layout.xaxis2.title.text.endswith("(s)")


def test_present_scales_tables_and_widgets_on_the_page_and_back():
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    try:
        with capture_output() as on:
            shell.run_cell("import labkit.plots.base as b; b.present(scale=2)")
        with capture_output() as off:
            shell.run_cell("b.present(False)")
    finally:
        base.present(False)
        InteractiveShell.clear_instance()
    shown = [o.data.get("text/html", "") for o in on.outputs]
    assert len(shown) == 1 and "--labkit-k: 2;" in shown[0] and "table.dataframe" in shown[0]
    assert ".labkit-browser" in shown[0] and "--jp-widgets-font-size" in shown[0]
    assert ["--labkit-k: 1;" in o.data.get("text/html", "") for o in off.outputs] == [True]
