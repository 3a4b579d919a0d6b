"""Live widgets for the lessons (ipywidgets, plotly FigureWidget). Each updates at most ~10 times
a second and stops by itself when its run ends."""

REFRESH_S = 0.1
"""Shortest interval between two redraws of a live widget."""
