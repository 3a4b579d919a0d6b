"""Checkers for lesson 00 (start here)."""

from __future__ import annotations

import uuid

from ._core import Feedback, exercise, running_lab, verdict

__all__ = ["unknown_route_status", "sized_reply", "binary_echo"]


_STATUS_HINTS = {
    200: "200 would mean the lab found something there. Did you really ask for a route it lacks?",
    204: "204 means success with no body; a missing route is not a success.",
    301: "A redirect would send you somewhere else; the lab has nowhere to send you.",
    400: "400 says the request itself is malformed; yours was well formed, the route is just not there.",
    401: "401 asks for credentials; the lab has no logins.",
    403: "403 means 'it exists, but you may not'; here nothing exists at that path.",
    405: "405 is for a route that exists but lacks the method you used.",
    500: "500 would be the server's own failure; a missing route is the client's mistake (4xx).",
}


@exercise("unknown route", answer="code",
          how="Make a GET to a path the index does not list (api.get('/where-is-this')) and read .status.")
def unknown_route_status(code) -> Feedback:
    """Exercise: which status code does the lab answer for a route it does not have?"""
    from labkit.clients.rest import RestClient

    name = "unknown route"
    if isinstance(code, bool) or not isinstance(code, int):
        return verdict(False, "", f"Answer with the status code as a whole number (not {code!r}): "
                       "the .status of the reply.", name)
    lab = running_lab()
    if lab is None:
        return verdict(False, "", "Start the lab first: lab = lk.start()", name)
    with RestClient(lab) as api:
        actual = api.get(f"/no-such-route-{uuid.uuid4().hex[:8]}").status
    return verdict(
        code == actual,
        f"Yes: {actual}. The body is problem+json and says what to do next.",
        _STATUS_HINTS.get(code, f"{code} is not what the lab answers. Make the request and read "
                          "reply.status (and reply.json() for the explanation)."),
        name,
        then="Run api.get('/nope') and look at .status: the answer is in the reply, not in the lesson.",
    )


@exercise("1000 bytes", answer="reply", how="Pass the reply of api.get(...) itself, not its body.")
def sized_reply(reply, size: int = 1000) -> Feedback:
    """Exercise: make the REST call that returns exactly `size` bytes, and pass its reply."""
    name = f"{size} bytes"
    if isinstance(reply, bytes | str):
        return verdict(False, "", "That is a body, not a reply: pass what api.get(...) returned, so "
                       "the checker can see the status too.", name)
    if not hasattr(reply, "body") or not hasattr(reply, "status"):
        return verdict(False, "", "Pass the reply of api.get(...) (not its body or its status).", name)
    if reply.status != 200:
        return verdict(False, "", f"That request was answered {reply.status}; read reply.json().", name)
    return verdict(
        len(reply.body) == size,
        f"Right: {len(reply.body)} bytes, asked for with the size parameter.",
        f"That reply carried {len(reply.body)} bytes, not {size}. Look at the first REST call of the "
        "lesson: which part of its URL decides the size?",
        name,
    )


@exercise("binary echo", how="Send bytes with ws.echo(...) and pass the first item it returns.")
def binary_echo(answer) -> Feedback:
    """Exercise: send the bytes b"\\x00\\xff" over the WebSocket echo and pass what came back."""
    name = "binary echo"
    if isinstance(answer, tuple):
        return verdict(False, "", "ws.echo returns (answer, milliseconds): pass only the answer, "
                       "the first item.", name)
    if isinstance(answer, str):
        return verdict(False, "", "That came back as text (a str): the echo answers in the frame type "
                       "you sent. Send bytes (a b'...' literal), not a str.", name)
    if answer in (b"00ff", b"00 ff", b"\\x00\\xff"):
        return verdict(False, "", "Those are the characters that *spell* the bytes; send the two "
                       "bytes themselves (escape sequences inside a b'...' literal).", name)
    return verdict(
        answer == b"\x00\xff",
        "Right: bytes in, bytes out. Binary frames carry any bytes; text frames must be UTF-8.",
        f"Expected the two bytes 00 ff back, got {answer!r}. Send bytes, not a str, holding the "
        "bytes 00 and ff, and pass the first item ws.echo returns.",
        name,
    )
