"""A small line chart drawn as SVG, for live widgets (the ping meter, the feed dashboard).

Why not a plotly FigureWidget: every FigureWidget evaluates its own copy of plotly.js in the page
when it is displayed, which held JupyterLab's main thread for 1.1 s in a headless test and 5.3 s on
a student's laptop, and every update of one is four comm messages and a full re-plot. This chart is
one `ipywidgets.HTML` value: one small message per redraw, drawn by the browser without any script,
so a live widget can redraw ten times a second and the tab stays responsive
(tests/test_browser_start_here.py and tests/test_browser_dashboard.py measure it in Chromium).
It follows the kit's figure rules: a title, axis titles with units, a legend, the palette of
labkit/plots/base.py, and the same font size (`present()` included).
"""

from __future__ import annotations

import html
import itertools
import math
from dataclasses import dataclass, field

from labkit.plots.base import font_size, log_ticks

_clip_ids = itertools.count(1)  # an id per chart: ids are shared by the whole page


@dataclass
class Series:
    """One line: its legend `name`, colour, points (x, y), and how it is drawn."""

    name: str
    color: str
    points: list[tuple[float, float]] = field(default_factory=list)
    width: float = 2.0
    dash: str | None = None  # an SVG stroke-dasharray, e.g. "4 3"
    step: bool = False       # a step line (horizontal, then vertical), as plotly's shape "hv"
    markers: bool = False


def nice_ticks(lo: float, hi: float, most: int = 7) -> list[float]:
    """Round tick values (1, 2 or 5 × a power of ten apart) covering lo..hi, at most `most`."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(1, most - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(s * power for s in (1, 2, 5, 10) if s * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    count = int(math.floor((hi - first) / step + 1e-9)) + 1
    return [round(first + i * step, 12) for i in range(count)]


def _label(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:g}"


def svg_chart(series: list[Series], *, title: str, x_title: str, y_title: str,
              x_range: tuple[float, float], y_range: tuple[float, float] | None = None,
              log_y: bool = False, legend_title: str = "", caption: str = "",
              width: int = 820, height: int = 300) -> str:
    """The chart as one <svg> element (a string). `y_range` defaults to the data's range (padded);
    with `log_y` every y must be > 0 (others are left out)."""
    size = font_size()
    legend_w = 12 + int(size * 0.62 * max([len(s.name) for s in series] + [len(legend_title), 8]))
    left, right, top = int(size * 5.2), legend_w + 24, int(size * 2.6)
    bottom = int(size * 3.2) + (int(size * 1.6) if caption else 0)
    plot_w, plot_h = max(50, width - left - right), max(50, height - top - bottom)
    ys = [y for s in series for _, y in s.points if (y > 0 if log_y else math.isfinite(y))]
    if y_range is None:
        lo, hi = (min(ys), max(ys)) if ys else ((1.0, 10.0) if log_y else (0.0, 1.0))
        if log_y:
            lo, hi = lo / 1.5, hi * 1.5
        else:
            pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 0.5)
            lo, hi = lo - pad, hi + pad
        y_range = (lo, hi)
    x0, x1 = x_range
    y0, y1 = y_range
    fy = (lambda v: math.log10(v)) if log_y else (lambda v: v)

    def px(x: float) -> float:
        return left + (x - x0) / ((x1 - x0) or 1) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (fy(y) - fy(y0)) / ((fy(y1) - fy(y0)) or 1) * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="labkit-chart" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" '
           f'style="font-family:sans-serif;font-size:{size:g}px;background:white">',
           f'<text class="title" x="{left}" y="{size * 1.5:.0f}" font-size="{size * 1.25:.1f}">'
           f'{html.escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
           'stroke="#ccc"/>']
    for tick in nice_ticks(x0, x1):
        x = px(tick)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#eee"/>'
                   f'<text x="{x:.1f}" y="{top + plot_h + size * 1.2:.0f}" text-anchor="middle">'
                   f'{_label(tick)}</text>')
    for tick in (log_ticks(y0, y1, most=8) if log_y else nice_ticks(y0, y1, 6)):
        y = py(tick)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{y + size * 0.35:.1f}" text-anchor="end">'
                   f'{_label(tick)}</text>')
    out.append(f'<text class="x-title" x="{left + plot_w / 2:.0f}" y="{top + plot_h + size * 2.6:.0f}"'
               f' text-anchor="middle">{html.escape(x_title)}</text>')
    out.append(f'<text class="y-title" transform="translate({size * 1.1:.0f},{top + plot_h / 2:.0f}) '
               f'rotate(-90)" text-anchor="middle">{html.escape(y_title)}</text>')
    if caption:
        out.append(f'<text class="caption" x="{left}" y="{height - size * 0.5:.0f}" fill="#666" '
                   f'font-size="{size * 0.85:.1f}">{html.escape(caption)}</text>')
    clip = f"labkit-clip-{next(_clip_ids)}"
    out.append(f'<clipPath id="{clip}"><rect x="{left}" y="{top}" width="{plot_w}" '
               f'height="{plot_h}"/></clipPath><g clip-path="url(#{clip})">')
    for s in series:
        pts = [(px(x), py(y)) for x, y in s.points if (y > 0 if log_y else math.isfinite(y))]
        if s.step and len(pts) > 1:
            stepped = [pts[0]]
            for (_, ya), (xb, yb) in zip(pts, pts[1:], strict=False):
                stepped += [(xb, ya), (xb, yb)]
            pts = stepped
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        out.append(f'<polyline class="series" data-name="{html.escape(s.name)}" '
                   f'data-points="{len(s.points)}" points="{coords}" fill="none" stroke="{s.color}" '
                   f'stroke-width="{s.width:g}"{dash}/>')
        if s.markers:
            out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{1.2 + s.width / 2:.1f}" fill="{s.color}"/>'
                    for x, y in pts]
    out.append("</g>")
    lx, ly = left + plot_w + 16, top + 4
    if legend_title:
        out.append(f'<text x="{lx}" y="{ly + size:.0f}" font-weight="bold">{html.escape(legend_title)}'
                   "</text>")
        ly += int(size * 1.5)
    for s in series:
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        out.append(f'<line x1="{lx}" y1="{ly + size * 0.6:.0f}" x2="{lx + 22}" y2="{ly + size * 0.6:.0f}" '
                   f'stroke="{s.color}" stroke-width="{min(s.width, 6):g}"{dash}/>'
                   f'<text x="{lx + 28}" y="{ly + size * 0.95:.0f}">{html.escape(s.name)}</text>')
        ly += int(size * 1.5)
    out.append("</svg>")
    return "".join(out)
