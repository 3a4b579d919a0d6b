"""Feedback for exercises: a friendly verdict that shows nicely in a notebook, never a bare assert."""

from __future__ import annotations

import html
from dataclasses import dataclass


@dataclass(frozen=True)
class Feedback:
    """The verdict on one exercise answer. Truthy when correct; shows as a coloured note."""

    ok: bool
    message: str
    exercise: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def _repr_html_(self) -> str:
        colour, mark = ("#1b7f3b", "✔ Correct") if self.ok else ("#b35c00", "✘ Not yet")
        title = f" — {html.escape(self.exercise)}" if self.exercise else ""
        return (
            f"<div style='border-left:4px solid {colour};padding:4px 10px;'>"
            f"<b style='color:{colour}'>{mark}</b>{title}<br>{html.escape(self.message)}</div>"
        )

    def __repr__(self) -> str:
        mark = "Correct" if self.ok else "Not yet"
        return f"{mark}{' (' + self.exercise + ')' if self.exercise else ''}: {self.message}"


def verdict(ok: bool, good: str, hint: str, exercise: str = "") -> Feedback:
    """Feedback with `good` when `ok`, else `hint` (say what to look at, not the answer)."""
    return Feedback(bool(ok), good if ok else hint, exercise)


def close_to(value, expected: float, *, rel: float = 0.0, abs_: float = 0.0) -> bool:
    """True when `value` is a number within `rel` (fraction) or `abs_` of `expected`."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return False
    return abs(value - expected) <= max(abs_, rel * abs(expected))
