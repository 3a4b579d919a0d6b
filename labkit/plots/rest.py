"""Figures for the REST lesson: the request log as bytes and time per exchange, and what a 304 saves.

request_log: takes `RestClient.log_frame()`; conditional_savings: takes the frame of
`labkit.lessons.rest.conditional_savings`.
"""

from __future__ import annotations

from .base import DIRECTION_COLORS, OKABE_ITO, finish

PARTS = {
    "request_header_bytes": ("request headers", DIRECTION_COLORS["up"], "/"),
    "request_body_bytes": ("request body", DIRECTION_COLORS["up"], ""),
    "response_header_bytes": ("response headers", DIRECTION_COLORS["down"], "/"),
    "response_body_bytes": ("response body", DIRECTION_COLORS["down"], ""),
}
"""Direction by colour (as in every byte plot), headers hatched and bodies solid."""
STATUS_COLORS = {2: OKABE_ITO["bluish green"], 3: OKABE_ITO["blue"], 4: OKABE_ITO["vermillion"],
                 5: OKABE_ITO["black"]}
STATUS_SYMBOLS = {2: "circle", 3: "square", 4: "x", 5: "diamond"}
"""Status classes differ by marker as well as by colour."""


def _label(frame):
    return [f"{i} {m} {p} → {s}" for i, m, p, s in
            zip(range(len(frame)), frame["method"], frame["path"], frame["status"], strict=True)]


def request_log(frame, *, title: str = "Request log: bytes on the wire and time per exchange"):
    """Stacked bytes per exchange (headers vs bodies, both directions) and elapsed ms as dots."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    labels = _label(frame)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35],
                        vertical_spacing=0.06)
    for column, (name, color, pattern) in PARTS.items():
        fig.add_trace(go.Bar(x=labels, y=frame[column], name=name, legendgroup="bytes",
                             marker={"color": color, "pattern": {"shape": pattern}}), row=1, col=1)
    for status_class, color in STATUS_COLORS.items():
        rows = frame["status"] // 100 == status_class
        if rows.any():
            fig.add_trace(go.Scatter(
                x=[lab for lab, keep in zip(labels, rows, strict=True) if keep],
                y=frame.loc[rows, "elapsed_ms"], mode="markers",
                marker={"color": color, "size": 9, "symbol": STATUS_SYMBOLS[status_class]},
                name=f"{status_class}xx: elapsed", legendgroup="time",
            ), row=2, col=1)
    fig.update_layout(barmode="stack", height=600)
    fig.update_yaxes(title_text="time (ms)", row=2, col=1, rangemode="tozero")
    _clip_outliers(fig, labels, frame[list(PARTS)].sum(axis=1))
    finish(fig, title, "", "bytes (B)", legend="part / status")
    fig.update_xaxes(title_text="exchange (order, method, path, status)", tickangle=-45,
                     tickfont={"size": 10}, row=2, col=1)
    return fig


def _clip_outliers(fig, labels, totals) -> None:
    """When one exchange dwarfs the others (e.g. a big document), cut the bytes axis above the
    rest and write that bar's total on it, so the headers of the small ones stay visible."""
    ordered = sorted(totals)
    if len(ordered) < 4 or ordered[-1] <= 4 * ordered[-2]:
        return
    top = 1.3 * ordered[-2]
    fig.update_yaxes(range=[0, top], row=1, col=1)
    for label, total in zip(labels, totals, strict=True):
        if total > top:
            fig.add_annotation(x=label, y=top, text=f"{total:,} B ↑", showarrow=False,
                               xanchor="right", xshift=-14, yshift=-8, font={"size": 10},
                               row=1, col=1)


def conditional_savings(frame, *, title: str = "The same note: plain GET vs conditional GET"):
    """Bytes received and elapsed ms per request, one box per kind (200 vs 304)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.14,
                        subplot_titles=("bytes received per request", "time per request"))
    colors = {"plain GET (200)": OKABE_ITO["vermillion"], "conditional GET (304)": OKABE_ITO["blue"]}
    for kind, group in frame.groupby("kind", sort=False):
        color = colors.get(kind)
        fig.add_trace(go.Box(y=group["bytes_down"], name=kind, marker_color=color,
                             boxpoints="all", legendgroup=kind), row=1, col=1)
        fig.add_trace(go.Box(y=group["elapsed_ms"], name=kind, marker_color=color,
                             boxpoints="all", legendgroup=kind, showlegend=False), row=1, col=2)
    fig.update_yaxes(title_text="time (ms)", row=1, col=2, rangemode="tozero")
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    return finish(fig, title, "request kind", "bytes received (B)", legend="request")
