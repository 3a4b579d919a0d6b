"""Shared finishing touches for every labkit figure."""

from __future__ import annotations


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
