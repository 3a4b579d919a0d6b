"""A live widget's last state as static HTML, for the book's pages.

A page has no kernel, so a widget cannot run there; what it can show is what the widget showed when
the lesson's run ended. `snapshots(model_ids)` runs in the kernel that ran the lesson (the book adds
it as a last cell) and walks each widget's tree: boxes keep their children in rows or columns,
HTML and labels keep their text, a plotly FigureWidget becomes a figure (plotly.js is loaded once by
the page), an Output widget keeps its text and HTML outputs, a control (button, slider, text box)
shows its description and value, disabled. A browser widget (labkit/browser) drew in the page, not
in the kernel: its snapshot says so and shows the frames the page reported, if any.
"""

from __future__ import annotations

import html
import json
from typing import Any

MARK = "labkit-widget-snapshots:"
"""The last cell prints this, then the snapshots as JSON ({model_id: html})."""


def cell_source(model_ids) -> str:
    """The book's last cell: print the snapshots of these widgets (the ids its outputs show)."""
    return ("from labkit.course.snapshot import print_snapshots as _labkit_snapshots\n"
            f"_labkit_snapshots({sorted(set(model_ids))!r})\n")


def _widget(model_id: str):
    """The live widget of that id, through ipywidgets' public serializer (None if none)."""
    from ipywidgets import Widget, widget_serialization

    found = widget_serialization["from_json"](f"IPY_MODEL_{model_id}", None)
    return found if isinstance(found, Widget) else None


def render(widget, depth: int = 0) -> str:
    """HTML of `widget`'s current state (see the module's docstring)."""
    import ipywidgets as w

    if depth > 20:
        return ""
    name = type(widget).__name__
    if isinstance(widget, w.Box):
        row = isinstance(widget, (w.HBox, w.GridBox))
        inner = "".join(f"<div>{render(child, depth + 1)}</div>" for child in widget.children)
        style = "display:flex;gap:1rem;flex-wrap:wrap" if row else "display:flex;flex-direction:column"
        return f"<div class='labkit-snapshot-box' style='{style}'>{inner}</div>"
    if name == "FigureWidget":
        import plotly.graph_objects as go

        return go.Figure(widget).to_html(full_html=False, include_plotlyjs=False,
                                         config={"displaylogo": False})
    if isinstance(widget, (w.HTML, w.HTMLMath)):
        return str(widget.value)
    if isinstance(widget, w.Output):
        return "".join(_output_html(o) for o in widget.outputs)
    if isinstance(widget, w.Label):
        return f"<span>{html.escape(str(widget.value))}</span>"
    if hasattr(widget, "frames") and hasattr(widget, "direct_url"):  # labkit.browser's widgets
        shown = len(widget.frames)
        return (f"<div class='labkit-widget-note'>A browser widget ({html.escape(name)}) drew here; "
                f"its page reported {shown} frame{'s' if shown != 1 else ''} to the kernel.</div>")
    if isinstance(widget, w.DOMWidget) and hasattr(widget, "value"):
        label = getattr(widget, "description", "") or name
        return (f"<span class='labkit-snapshot-control' style='opacity:.7'>{html.escape(str(label))}: "
                f"{html.escape(str(widget.value))}</span>")
    if isinstance(widget, w.Button):
        return f"<button disabled>{html.escape(widget.description or 'button')}</button>"
    return ""


def _output_html(output: dict[str, Any]) -> str:
    data = output.get("data", {})
    if "text/html" in data:
        return str(data["text/html"])
    text = output.get("text") if output.get("output_type") == "stream" else data.get("text/plain")
    return f"<pre>{html.escape(str(text))}</pre>" if text else ""


def snapshots(model_ids) -> dict[str, str]:
    """{model_id: HTML} for each id that names a live widget of this kernel."""
    found = {}
    for model_id in model_ids:
        widget = _widget(model_id)
        if widget is not None:
            found[model_id] = render(widget)
    return found


def print_snapshots(model_ids) -> None:
    """Print MARK and the snapshots of these widgets (the book's last cell)."""
    print(MARK + json.dumps(snapshots(model_ids)))


def read(cell) -> dict[str, str]:
    """The snapshots the last cell printed ({} if none)."""
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stdout")
    _, found, rest = text.partition(MARK)
    return json.loads(rest) if found else {}
