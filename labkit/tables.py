"""Tables that fit a notebook: `lk.view(frame)` shows a DataFrame with text columns left-aligned,
long texts wrapped between words (never cut in the middle of one), and numbers right-aligned.
"""

from __future__ import annotations

import textwrap

TEXT_WIDTH = 48
"""Characters per line before a text cell wraps (between words)."""


def shorten(text, width: int = 120) -> str:
    """`text` cut to at most `width` characters at a word boundary, marked with "…" when cut."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else textwrap.shorten(text, width, placeholder=" …")


def view(frame, *, width: int = TEXT_WIDTH, hide_index: bool = False, precision: int = 2):
    """A pandas Styler of `frame` that fits the page: text left-aligned and wrapped at word
    boundaries within `width` characters, floats with `precision` decimals."""
    from pandas.api.types import is_object_dtype, is_string_dtype

    frame = frame.copy()
    text = [c for c in frame.columns if is_object_dtype(frame[c]) or is_string_dtype(frame[c])]
    for column in text:
        frame[column] = frame[column].map(lambda v: "" if v is None or v != v else str(v))
    styler = frame.style.format(precision=precision, thousands=",", na_rep="")
    if text:
        styler = styler.set_properties(subset=text, **{
            "text-align": "left", "white-space": "pre-wrap", "word-break": "normal",
            "overflow-wrap": "normal", "max-width": f"{width}ch", "min-width": "6ch"})
    styler = styler.set_table_styles([{"selector": "th", "props": [("text-align", "left")]}],
                                     overwrite=False)
    return styler.hide(axis="index") if hide_index else styler
