"""Feedback for exercises: a friendly verdict that shows nicely in a notebook, never a bare assert.

The rules every checker follows (tests/test_notebook_format.py and tests/test_check_lesson*.py pin
them):

- an exercise cell starts unanswered (`answer = None`), and a checker given None says "not answered
  yet" kindly, before it needs a lab or data (`unanswered`, or the `exercise` decorator);
- a wrong answer gets a hint that says where to look, never the value: `verdict(ok, good, hint)`;
  a checker may pass `then=` for a stronger second hint, given from the second wrong answer on;
- plausible wrong answers are refused (each checker's test feeds them).
"""

from __future__ import annotations

import functools
import html
import inspect
import math
import threading
from collections import Counter
from dataclasses import dataclass

NOT_ANSWERED = "Not answered yet"


@dataclass(frozen=True)
class Feedback:
    """The verdict on one exercise answer. Truthy when correct; shows as a coloured note."""

    ok: bool
    message: str
    exercise: str = ""
    answered: bool = True
    """False when the answer is still the cell's placeholder (None)."""

    def __bool__(self) -> bool:
        return self.ok

    @property
    def mark(self) -> str:
        if not self.answered:
            return NOT_ANSWERED
        return "Correct" if self.ok else "Not yet"

    def _repr_html_(self) -> str:
        if not self.answered:
            colour, mark = "#5f6b7a", f"… {NOT_ANSWERED}"
        else:
            colour, mark = ("#1b7f3b", "✔ Correct") if self.ok else ("#b35c00", "✘ Not yet")
        title = f" — {html.escape(self.exercise)}" if self.exercise else ""
        return (
            f"<div style='border-left:4px solid {colour};padding:4px 10px;'>"
            f"<b style='color:{colour}'>{mark}</b>{title}<br>{html.escape(self.message)}</div>"
        )

    def __repr__(self) -> str:
        return f"{self.mark}{' (' + self.exercise + ')' if self.exercise else ''}: {self.message}"


_wrong: Counter[str] = Counter()
_wrong_lock = threading.Lock()


def wrong_attempts(exercise: str) -> int:
    """How many wrong answers `exercise` has had in this kernel."""
    return _wrong[exercise]


def forget_attempts() -> None:
    """Start counting wrong answers afresh (tests use it)."""
    with _wrong_lock:
        _wrong.clear()


def verdict(ok: bool, good: str, hint: str, exercise: str = "", *, then: str | None = None) -> Feedback:
    """Feedback with `good` when `ok`, else `hint` (say what to look at, not the answer).

    From the second wrong answer to the same `exercise` on, `then` (a stronger hint) replaces
    `hint` when given; the first wrong answer always gets `hint`.
    """
    if ok:
        return Feedback(True, good, exercise)
    with _wrong_lock:
        _wrong[exercise] += 1
        tries = _wrong[exercise]
    return Feedback(False, then if then and tries > 1 else hint, exercise)


def unanswered(exercise: str = "", how: str = "") -> Feedback:
    """The kind answer to a placeholder: nothing is wrong yet, here is how to start."""
    tip = f" {how}" if how else ""
    return Feedback(False, f"Replace None with your answer and run the cell again.{tip}", exercise,
                    answered=False)


def exercise(name: str, *, answer: str | tuple[str, ...] = "answer", how: str = ""):
    """Decorate a checker so that it answers `unanswered(name, how)` while every argument named in
    `answer` is still None (or left out), before it touches a lab or any data."""
    names = (answer,) if isinstance(answer, str) else tuple(answer)

    def wrap(check):
        signature = inspect.signature(check)

        @functools.wraps(check)
        def checked(*args, **kwargs):
            try:
                given = signature.bind_partial(*args, **kwargs).arguments
            except TypeError:
                given = {}
            if all(given.get(n) is None for n in names):
                return unanswered(name, how)
            return check(*args, **kwargs)

        return checked

    return wrap


def as_number(answer) -> float | None:
    """`answer` as a float, or None when it is not a number (a bool, text that is no number, NaN)."""
    if isinstance(answer, bool):
        return None
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def close_to(value, expected: float, *, rel: float = 0.0, abs_: float = 0.0) -> bool:
    """True when `value` is a number within `rel` (fraction) or `abs_` of `expected`."""
    if isinstance(value, bool):
        return False
    try:
        value = float(value)
    except (TypeError, ValueError):
        return False
    return abs(value - expected) <= max(abs_, rel * abs(expected))


def running_lab():
    """The lab the lesson's cells use: the notebook's `lab` when it is a class server joined with
    `lk.join` (the kernel may run its own lab too, for the parts a class server refuses), else the
    kernel's own lab (`lk.start()`). None when there is neither."""
    from labkit.course.classroom import ClassroomLab
    from labkit.server.runner import current

    try:
        from IPython import get_ipython
    except ImportError:  # no IPython: only the kernel's own lab can be meant
        return current()
    shell = get_ipython()
    joined = getattr(shell, "user_ns", {}).get("lab") if shell is not None else None
    return joined if isinstance(joined, ClassroomLab) else current()
