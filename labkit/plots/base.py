"""Shared finishing touches for every labkit figure, and the one look per transport that every plot
and widget uses (so "WebSocket" is the same blue, solid, round marker in lesson 00 as in lesson 05).

Colours come from the Okabe-Ito palette, chosen to stay apart for deuteranopes and protanopes, and
each transport has a second channel (a dash pattern and a marker symbol; a fill pattern on bars) so
no figure relies on colour alone. `finish` applies that second channel to every trace named after a
transport, gives log axes readable 1-2-5 ticks, and drops legend entries for traces with nothing
drawn. `present()` enlarges every later figure's fonts for a projector.
"""

from __future__ import annotations

import math
from typing import Any

OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7",
}
"""Okabe & Ito (2008), 'Color Universal Design': distinguishable with the common colour-vision
deficiencies."""

TRANSPORT_COLORS = {
    "REST, new connection": OKABE_ITO["orange"],
    "REST, keep-alive": OKABE_ITO["black"],
    "WebSocket": OKABE_ITO["blue"],
    "SSE": OKABE_ITO["bluish green"],
    "long poll": OKABE_ITO["reddish purple"],
    "short poll": OKABE_ITO["vermillion"],
}
"""One colour per transport, by the name the lessons show."""

TRANSPORT_DASHES = {
    "REST, new connection": "longdash",
    "REST, keep-alive": "dashdot",
    "WebSocket": "solid",
    "SSE": "dash",
    "long poll": "dot",
    "short poll": "longdashdot",
}
"""The second channel for lines: one dash pattern per transport."""

TRANSPORT_SYMBOLS = {
    "REST, new connection": "x",
    "REST, keep-alive": "square",
    "WebSocket": "circle",
    "SSE": "diamond",
    "long poll": "triangle-up",
    "short poll": "cross",
}
"""The second channel for markers: one symbol per transport."""

TRANSPORT_PATTERNS = {
    "REST, new connection": "x",
    "REST, keep-alive": "/",
    "WebSocket": "",
    "SSE": ".",
    "long poll": "\\",
    "short poll": "+",
}
"""The second channel for bars: one fill pattern per transport (WebSocket is solid)."""

DIRECTION_COLORS = {"up": OKABE_ITO["sky blue"], "down": OKABE_ITO["orange"]}
"""Client → server is sky blue, server → client is orange, in every byte plot (as in the request log)."""

PART_COLORS = {"headers": "#bdbdbd", "payload": OKABE_ITO["blue"],
               "HTTP/WebSocket bytes (measured)": OKABE_ITO["blue"],
               "TCP/IP headers, 52 B per packet (model)": "#bdbdbd",
               "ACK packets (model)": "#888888",
               "handshake + teardown (model)": OKABE_ITO["vermillion"]}
"""Overhead (start lines, headers, frame headers) is grey; the payload is coloured. Below HTTP,
the modelled TCP/IP parts are greys, and a new connection's handshake stands out."""

TRANSPORT_NAMES = {
    "rest-new": "REST, new connection", "rest-keepalive": "REST, keep-alive",
    "websocket": "WebSocket", "ws": "WebSocket", "sse": "SSE", "long_poll": "long poll",
    "short_poll": "short poll", "REST poll": "short poll",
}
"""Keys used in the data frames, mapped to the names the lessons show."""

BASE_FONT = 13
"""Font size (px) of ordinary figures; `present()` multiplies it."""
_presenting = {"scale": 1.0}


def transport_name(key: str) -> str:
    """The name the lessons show for a transport key ("rest-new" → "REST, new connection")."""
    return TRANSPORT_NAMES.get(key, key)


def _canonical(key) -> str | None:
    name = transport_name(key)
    if name not in TRANSPORT_COLORS and str(name).startswith("poll "):
        name = "short poll"
    return name if name in TRANSPORT_COLORS else None


def transport_color(key: str) -> str | None:
    """The colour of a transport, by key or shown name; pollers at any interval ("poll 0.5 s")
    share the short-poll colour. None for names that are not transports."""
    name = _canonical(key)
    return TRANSPORT_COLORS[name] if name else None


def transport_style(key: str) -> dict | None:
    """Colour, dash, marker symbol and bar pattern of a transport (None for other names)."""
    name = _canonical(key)
    if name is None:
        return None
    return {"color": TRANSPORT_COLORS[name], "dash": TRANSPORT_DASHES[name],
            "symbol": TRANSPORT_SYMBOLS[name], "pattern": TRANSPORT_PATTERNS[name]}


def color_map(keys) -> dict:
    """`color_discrete_map` for plotly express: each transport key that has a colour."""
    return {k: c for k in keys if (c := transport_color(k)) is not None}


# -- presentation ----------------------------------------------------------------------------------
PRESENT_CSS = """<style class="labkit-present">
.jp-OutputArea-output {{ --labkit-k: {k:g}; --jp-widgets-font-size: calc(13px * var(--labkit-k)); }}
.jp-OutputArea-output table.dataframe, .jp-OutputArea-output table.labkit-counters {{
  font-size: calc(12px * var(--labkit-k)) !important; }}
.jp-OutputArea-output .labkit-browser {{ font-size: calc(13px * var(--labkit-k)) !important; }}
.jp-OutputArea-output .labkit-browser .lk-log-table, .jp-OutputArea-output .labkit-browser .lk-log-title {{
  font-size: calc(11px * var(--labkit-k)) !important; }}
</style>"""
"""Page CSS of presentation mode: tables (pandas' HTML, the dashboards' counters) and widgets
(ipywidgets through their font-size variable; the kit's browser widgets) at their usual sizes times
--labkit-k. The last style element in the page wins, so `present(False)` shows one with k = 1."""


def present(on: bool = True, *, scale: float = 1.6) -> str:
    """Presentation mode for a projector: enlarge the fonts (and markers) of every figure made from
    now on, and of every table and widget on the page (dashboards included) through a style sheet
    the cell displays; `present(False)` goes back. Returns a one-line note of the state."""
    _presenting["scale"] = scale if on else 1.0
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:  # no IPython: figures only
        pass
    else:
        if get_ipython() is not None:
            display(HTML(PRESENT_CSS.format(k=_presenting["scale"])))
    return (f"presentation mode: fonts × {scale:g} in figures made from now on, tables and widgets "
            "on the page now" if on else "presentation mode off")


def font_size() -> float:
    """The base font size (px) figures use now."""
    return BASE_FONT * _presenting["scale"]


# -- log axes --------------------------------------------------------------------------------------
def _label(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:g}"


def log_ticks(lo: float, hi: float, *, most: int = 12) -> list[float]:
    """Tick values for a log axis from `lo` to `hi`, written in full: the finest of 1-1.5-2-3-4-5-6-8,
    1-2-5, 1-3 or 1 per decade that gives at most `most` ticks; always at least two ticks."""
    if not (lo > 0 and hi > 0) or math.isnan(lo) or math.isnan(hi):
        return []
    lo, hi = min(lo, hi), max(lo, hi)
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    for steps in ((1, 1.5, 2, 3, 4, 5, 6, 8), (1, 2, 5), (1, 3), (1,)):
        ticks = [round(s * 10.0 ** d, 12) for d in range(first, last + 1) for s in steps]
        inside = [t for t in ticks if lo / 1.001 <= t <= hi * 1.001]
        if len(inside) <= most:
            break
    if len(inside) < 2:  # a narrow range: the 1-2-5 ticks just around it
        around = [round(s * 10.0 ** d, 12) for d in range(first - 1, last + 2) for s in (1, 2, 5)]
        below = [t for t in around if t <= lo] or around[:1]
        above = [t for t in around if t >= hi] or around[-1:]
        inside = sorted({below[-1], *inside, above[0]})
    return inside


def log_axis(fig, axis: str = "y", *, lo: float | None = None, hi: float | None = None, **where):
    """Make `axis` ("x" or "y") logarithmic with readable ticks (1-2-5, written in full, no minor
    labels). The range comes from the data unless `lo`/`hi` are given; `where` selects a subplot
    (row=, col=)."""
    update = fig.update_xaxes if axis == "x" else fig.update_yaxes
    if lo is None or hi is None:
        values = _positive_values(fig, axis)
        lo = min(values) if lo is None and values else lo
        hi = max(values) if hi is None and values else hi
    ticks = log_ticks(lo, hi) if lo and hi else []
    settings: dict[str, Any] = {"type": "log", "minor": {"showgrid": False, "ticks": ""}}
    if ticks:
        settings.update(tickmode="array", tickvals=ticks, ticktext=[_label(t) for t in ticks])
    update(**settings, **where)
    return fig


def _values(data) -> list[float]:
    out = []
    for v in data if data is not None else ():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if f > 0 and math.isfinite(f):
            out.append(f)
    return out


def _positive_values(fig, axis: str, axis_id: str | None = None) -> list[float]:
    """Positive numbers the traces on `axis` (optionally only on axis_id, e.g. "y2") draw."""
    values = []
    for trace in fig.data:
        ref = getattr(trace, f"{axis}axis", None) or axis
        if axis_id is not None and ref != axis_id:
            continue
        values += _values(getattr(trace, axis, None))
        error = getattr(trace, f"error_{axis}", None)
        if error is not None and error.array is not None:
            centre = _values(getattr(trace, axis, None))
            values += [c + e for c, e in zip(centre, _values(error.array), strict=False)]
    return values


def _fix_log_axes(fig) -> None:
    """Every log axis of `fig` gets 1-2-5 ticks over the range its traces draw."""
    layout = fig.layout
    for name in [k for k in layout.to_plotly_json() if k.startswith(("xaxis", "yaxis"))]:
        axis = layout[name]
        if axis.type != "log" or axis.tickvals is not None:
            continue
        letter, suffix = name[0], name[5:]
        values = _positive_values(fig, letter, f"{letter}{suffix}")
        ticks = log_ticks(min(values), max(values)) if values else []
        if ticks:
            axis.update(tickmode="array", tickvals=ticks, ticktext=[_label(t) for t in ticks],
                        dtick=None, minor={"showgrid": False, "ticks": ""})


# -- second channel and legend ---------------------------------------------------------------------
def _has_data(trace) -> bool:
    for attr in ("x", "y", "values", "z"):
        data = getattr(trace, attr, None)
        if data is not None and len(data) and any(v is not None and v == v for v in data):
            return True
    return False


def _second_channel(trace) -> None:
    style = transport_style(trace.name) if trace.name else None
    if style is None:
        return
    kind = trace.type
    if kind == "scatter":
        if trace.line is not None and trace.line.dash in (None, "solid"):
            trace.line.dash = style["dash"]
        if trace.marker is not None and trace.marker.symbol is None:
            trace.marker.symbol = style["symbol"]
    elif kind == "bar" and style["pattern"]:
        if trace.marker.pattern.shape is None:
            trace.marker.pattern.shape = style["pattern"]
    elif kind in ("box", "violin") and trace.marker.symbol is None:
        trace.marker.symbol = style["symbol"]


def finish(fig, title: str, x: str, y: str, *, legend: str | None = None, hide_empty: bool = True):
    """Set title, axis titles (with units, e.g. "round trip (ms)") and the legend; give transports
    their second channel, log axes readable ticks, and (unless `hide_empty` is False, for live
    figures that fill later) no legend entry to traces that draw nothing."""
    size = font_size()
    for trace in fig.data:
        _second_channel(trace)
        if hide_empty and not _has_data(trace):
            trace.showlegend = False
    _fix_log_axes(fig)
    fig.update_layout(
        title={"text": title, "font": {"size": size * 1.3}},
        xaxis_title=x,
        yaxis_title=y,
        showlegend=True,
        legend_title_text=legend or "",
        template="plotly_white",
        font={"size": size},
        margin={"l": 60, "r": 20, "t": 60 + int(size), "b": 50},
    )
    return fig
