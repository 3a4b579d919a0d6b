"""Input checks shared by the route families, meaning exactly what their OpenAPI schemas say.

- `json_integer`: a JSON value that JSON Schema calls an integer (3 and 3.0, not true, not 3.5).
- `query_integer` / `query_number`: a query parameter written as a plain decimal number; an empty
  value, a sign, spaces, `nan`, `inf` or `1_000` are refused with 422 naming the parameter.
- `NOT_BLANK` / `CONTROL_CHARS`: regex classes used both by the server's text checks and by the
  OpenAPI `pattern`s, spelled out so that they mean the same in Python, ECMA and Rust regex.
"""

from __future__ import annotations

import math
import re

from .problem import ProblemError

NOT_BLANK = r"[^\x09-\x0d\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
"""Matches a character that is not whitespace (Python's str.isspace set, spelled out): a title, tag
or chat text must contain one."""

CONTROL_CHARS = r"[\x00-\x1f\x7f-\x9f]"
"""Matches a control character (Unicode category Cc)."""

CONTROL_CHARS_BUT_NEWLINE_TAB = r"[\x00-\x08\x0b-\x1f\x7f-\x9f]"
"""Matches a control character other than newline and tab (allowed in multi-line text)."""

_INTEGER = re.compile(r"0|[1-9][0-9]{0,18}")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,18})(?:\.[0-9]{1,30})?(?:[eE][+-]?[0-9]{1,4})?")


def json_integer(value) -> int | None:
    """`value` as an int when JSON Schema calls it an integer (3 or 3.0; never a bool), else None."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def query_integer(raw: str, name: str, low: int, high: int) -> int:
    """A whole number written in plain decimal digits (no sign, spaces or leading zeros) within
    [low, high]; 422 naming `name` otherwise."""
    if not _INTEGER.fullmatch(raw) or not low <= int(raw) <= high:
        raise ProblemError(
            422, f"{name} must be a whole number from {low} to {high}, got {raw[:50]!r}",
            errors=[{"field": name, "message": f"must be an integer in [{low}, {high}]"}],
        )
    return int(raw)


def query_number(raw: str, name: str, low: float, high: float) -> float:
    """A decimal number (JSON number syntax: `2`, `0.5`, `1e-3`) within [low, high]; 422 naming
    `name` otherwise."""
    value = float(raw) if _NUMBER.fullmatch(raw) else math.nan
    if not low <= value <= high:
        raise ProblemError(
            422, f"{name} must be a number from {low:g} to {high:g}, got {raw[:50]!r}",
            errors=[{"field": name, "message": f"must be a number in [{low:g}, {high:g}]"}],
        )
    return value
