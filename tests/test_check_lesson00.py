"""Lesson 00's checkers accept the right answers and refuse wrong ones, kindly."""

from __future__ import annotations

import labkit as lk
from labkit.clients.rest import RestClient
from labkit.clients.ws import WsClient


def test_unknown_route_status(tmp_path):
    assert not lk.check.unknown_route_status(404)  # no lab running: a hint, not a crash
    lab = lk.start(db=str(tmp_path / "x.db"))
    try:
        with RestClient(lab) as api:
            measured = api.get("/surely-not-here").status
        right = lk.check.unknown_route_status(measured)
        assert right and "404" in right.message
        assert not lk.check.unknown_route_status(200)
        assert not lk.check.unknown_route_status(None)
        assert "Not yet" in repr(lk.check.unknown_route_status("404"))
    finally:
        lk.stop()


def test_sized_reply(lab):
    with RestClient(lab) as api:
        assert lk.check.sized_reply(api.get("/api/echo?size=1000"), 1000)
        assert not lk.check.sized_reply(api.get("/api/echo?size=999"), 1000)
        assert not lk.check.sized_reply(api.get("/api/echo?size=-1"), 1000)
    assert not lk.check.sized_reply(None)
    assert not lk.check.sized_reply(b"x" * 1000)


def test_binary_echo(lab):
    with WsClient(lab, "/ws/echo") as ws:
        assert lk.check.binary_echo(ws.echo(b"\x00\xff")[0])
        assert not lk.check.binary_echo(ws.echo("\x00\xff")[0])
    assert not lk.check.binary_echo(None)


def test_feedback_renders_html():
    html = lk.check.binary_echo(b"\x00\xff")._repr_html_()
    assert "Correct" in html and "<div" in html
