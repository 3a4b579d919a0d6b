"""Plotly figures built from tidy frames. One module per lesson topic; `finish` gives every
figure a title, axis labels with units, and a legend."""

from .base import finish
from .export import enable as _show_in_html_exports

_show_in_html_exports()  # figures carry text/html beside plotly's JSON (plots/export.py)

__all__ = ["finish"]
