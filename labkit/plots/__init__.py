"""Plotly figures built from tidy frames. One module per lesson topic; `finish` gives every
figure a title, axis labels with units, and a legend."""

from .base import finish

__all__ = ["finish"]
