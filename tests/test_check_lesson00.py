"""Lesson 00's checkers accept the right answers, refuse the wrong ones a student would plausibly
give (with a hint, never the value), and answer a placeholder (None) with "not answered yet"."""

from __future__ import annotations

import pytest

import labkit as lk
from labkit.check import _core
from labkit.clients.rest import RestClient
from labkit.clients.ws import WsClient


@pytest.fixture(autouse=True)
def _first_attempt():
    """Each test starts as a student's first try (the second wrong answer gets a stronger hint)."""
    from labkit.check import _core

    _core.forget_attempts()


def not_answered(feedback) -> bool:
    return not feedback and not feedback.answered and "not answered yet" in repr(feedback).lower()


def test_a_placeholder_is_not_answered_yet_even_without_a_lab():
    lk.stop()
    for feedback in (lk.check.unknown_route_status(None), lk.check.sized_reply(None, 1000),
                     lk.check.binary_echo(None)):
        assert not_answered(feedback)
        assert "Not answered yet" in feedback._repr_html_() and "✘" not in feedback._repr_html_()


def test_the_first_wrong_answer_gets_the_hint_and_later_ones_the_stronger_hint():
    _core.forget_attempts()
    first = _core.verdict(False, "", "look at X", "demo", then="X is in column Y")
    second = _core.verdict(False, "", "look at X", "demo", then="X is in column Y")
    assert (first.message, second.message) == ("look at X", "X is in column Y")
    assert _core.wrong_attempts("demo") == 2
    assert _core.verdict(True, "well done", "look at X", "demo").message == "well done"


def test_unknown_route_status(tmp_path):
    lk.stop()
    assert not lk.check.unknown_route_status(404)  # no lab running: a hint, not a crash
    lab = lk.start(db=str(tmp_path / "x.db"))
    try:
        with RestClient(lab) as api:
            measured = api.get("/surely-not-here").status
        right = lk.check.unknown_route_status(measured)
        assert right and "404" in right.message
        for wrong in (200, 400, 403, 405, 500, 410, "404", 404.5, True):
            feedback = lk.check.unknown_route_status(wrong)
            assert not feedback and feedback.answered, wrong
            if isinstance(wrong, int):
                assert "404" not in feedback.message, f"the hint for {wrong!r} gives the answer away"
    finally:
        lk.stop()


def test_sized_reply(lab):
    with RestClient(lab) as api:
        right = api.get("/api/echo?size=1000")
        assert lk.check.sized_reply(right, 1000)
        for wrong in (api.get("/api/echo?size=999"), api.get("/api/echo?size=-1"), right.body,
                      right.status, len(right.body), api.get("/api/echo?size=1001")):
            assert not lk.check.sized_reply(wrong, 1000), wrong
    assert not lk.check.sized_reply(b"x" * 1000)


def test_binary_echo(lab):
    with WsClient(lab, "/ws/echo") as ws:
        assert lk.check.binary_echo(ws.echo(b"\x00\xff")[0])
        wrong = [ws.echo("\x00\xff")[0], ws.echo(b"\x00\xff"), ws.echo(b"00ff")[0],
                 ws.echo("00ff")[0], ws.echo(b"\xff\x00")[0], ws.echo(b"\x00")[0]]
    for answer in wrong:
        feedback = lk.check.binary_echo(answer)
        assert not feedback and feedback.answered, answer


@pytest.mark.parametrize("checker", ["unknown_route_status", "sized_reply", "binary_echo"])
def test_feedback_renders_html(checker):
    html = getattr(lk.check, checker)(None)._repr_html_()
    assert "<div" in html and "Correct" not in html
    assert "Correct" in lk.check.binary_echo(b"\x00\xff")._repr_html_()


def test_a_closed_websocket_says_so_in_one_line_with_what_to_run(lab):
    from labkit.clients.ws import ClientClosed

    ws = WsClient(lab, "/ws/echo")
    ws.close()
    with pytest.raises(ClientClosed) as caught:
        ws.echo(b"\x00\xff")
    shown = caught.value._render_traceback_()  # what IPython prints instead of a traceback
    assert len(shown) == 1 and "closed" in shown[0] and "lk.websocket(" in shown[0]
    assert ws.connect().echo(b"\x00\xff")[0] == b"\x00\xff"  # and .connect() opens it again
    ws.close()


def test_unknown_route_status_on_a_class_server(make_lab, monkeypatch):
    """With `lab = lk.join(...)` in the notebook and no lab of the kernel's own, the checker asks
    the class server (it used to say "Start the lab first")."""
    import types

    import IPython

    from labkit.course.classroom import join_url

    lk.stop()
    room = make_lab(student_tokens=("student-token",), instructor_token="instructor-token")
    handle = lk.join(join_url("127.0.0.1", room.port, "student-token"), sync_clock=False,
                     personal=False)
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace(user_ns={"lab": handle}))
    right = lk.check.unknown_route_status(404)
    assert right and "404" in right.message
    assert not lk.check.unknown_route_status(401)
