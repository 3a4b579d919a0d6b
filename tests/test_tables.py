"""Tables fit the page: text left-aligned and wrapped between words, never cut inside one; the REST
lesson's request log shows the columns its cells talk about."""

from __future__ import annotations

import pandas as pd

from labkit.clients.rest import RestClient
from labkit.lessons import rest as rest_lab
from labkit.tables import shorten, view


def test_shorten_cuts_between_words_only():
    text = "The request body is larger than this lab accepts (maximum 1048576 bytes)."
    cut = shorten(text, 40)
    assert len(cut) <= 40 and cut.endswith("…")
    assert all(word in text.split() for word in cut.removesuffix(" …").split())
    assert shorten("short", 40) == "short"


def test_view_left_aligns_and_wraps_text_columns_only():
    frame = pd.DataFrame({"what": ["a long sentence " * 8], "ms": [1.23456], "n": [3]})
    html = view(frame).to_html()
    rules = {rule.split("{")[0].strip(): rule.split("{")[1] for rule in html.split("}")[:-1]
             if "{" in rule}
    text_rule = next(body for selector, body in rules.items() if selector.endswith("_col0"))
    assert "text-align: left" in text_rule and "white-space: pre-wrap" in text_rule
    assert not any(selector.endswith(("_col1", "_col2")) for selector in rules)  # numbers: right
    assert "word-break: normal" in html and "1.23" in html and "1.23456" not in html


def test_log_view_shows_request_status_bytes_time_and_reuse(lab):
    with RestClient(lab) as api:
        api.post("/api/notes", json={"title": "x"})
        api.get("/api/notes?per_page=2")
        html = rest_lab.log_view(api).to_html()
        last = rest_lab.log_view(api, last=1).data
    for header in ("request", "status", "up: head + body (B)", "down: head + body (B)", "ms",
                   "reused connection"):
        assert header in html
    assert list(last["request"]) == ["GET /api/notes?per_page=2"]
    assert list(last["reused connection"]) == ["yes"]
