"""Figures that also show outside JupyterLab: an HTML representation beside plotly's own JSON one.

In a kernel plotly emits only `application/vnd.plotly.v1+json`, which JupyterLab draws and nbconvert's
HTML export (and GitHub's viewer) leave blank. `enable()` makes every figure carry both: JupyterLab
still draws the JSON one (it ranks plotly's renderer first), an HTML page uses the `text/html` one.

plotly.js (about 4.8 MB) goes into the first figure of the kernel session only, so an exported notebook
works offline and holds one copy. With LABKIT_PLOTLYJS=external no figure carries it: the page must
load it once itself (the book does, one file for every page).
"""

from __future__ import annotations

import os

RENDERER = "labkit_html"
"""Name of the renderer that adds text/html, used as `plotly_mimetype+labkit_html`."""
PLOTLYJS_ENV = "LABKIT_PLOTLYJS"
""""inline" (default: plotly.js in the session's first figure) or "external" (in no figure)."""


def _renderer_class():
    from plotly.io import to_html
    from plotly.io.base_renderers import MimetypeRenderer

    class HtmlBesideJson(MimetypeRenderer):
        """text/html for a figure: a div and the script that draws it with plotly.js."""

        def __init__(self):
            self.plotlyjs_sent = False

        def to_mimebundle(self, fig_dict):
            inline = os.environ.get(PLOTLYJS_ENV, "inline") != "external" and not self.plotlyjs_sent
            html = to_html(fig_dict, full_html=False, include_plotlyjs=inline, include_mathjax=False,
                           validate=False, config={"displaylogo": False})
            self.plotlyjs_sent = self.plotlyjs_sent or inline
            return {"text/html": html}

    return HtmlBesideJson


def enable() -> None:
    """Give every figure a text/html representation too (see the module's docstring). Changes only
    plotly's kernel default (`plotly_mimetype`); a renderer the user chose is kept."""
    import plotly.io as pio

    if RENDERER not in pio.renderers:
        pio.renderers[RENDERER] = _renderer_class()()
    if pio.renderers.default == "plotly_mimetype":
        pio.renderers.default = f"plotly_mimetype+{RENDERER}"
