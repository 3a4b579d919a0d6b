"""Checkers for lesson 00 (start here)."""

from __future__ import annotations

import uuid

from ._core import Feedback, verdict

__all__ = ["unknown_route_status", "sized_reply", "binary_echo"]


def _running_lab():
    from ..server.runner import current

    return current()


def unknown_route_status(code) -> Feedback:
    """Exercise: which status code does the lab answer for a route it does not have?"""
    from ..clients.rest import RestClient

    lab = _running_lab()
    if lab is None:
        return verdict(False, "", "Start the lab first: lab = lk.start()", "unknown route")
    if code is None:
        return verdict(False, "", "Make a GET to a path the index does not list and read .status.",
                       "unknown route")
    with RestClient(lab) as api:
        actual = api.get(f"/no-such-route-{uuid.uuid4().hex[:8]}").status
    return verdict(
        code == actual,
        f"Yes: {actual}. The body is problem+json and says what to do next.",
        f"{code!r} is not what the lab answers. Try api.get('/nope').status and read the body.",
        "unknown route",
    )


def sized_reply(reply, size: int = 1000) -> Feedback:
    """Exercise: make the REST call that returns exactly `size` bytes, and pass its reply."""
    name = f"{size} bytes"
    if reply is None or not hasattr(reply, "body"):
        return verdict(False, "", "Pass the reply of api.get(...) (not its body or its status).", name)
    if reply.status != 200:
        return verdict(False, "", f"That request was answered {reply.status}; read reply.json().", name)
    return verdict(
        len(reply.body) == size,
        f"Right: {len(reply.body)} bytes, asked for with ?size={size}.",
        f"That reply carried {len(reply.body)} bytes, not {size}. Look at /api/echo's size parameter.",
        name,
    )


def binary_echo(answer) -> Feedback:
    """Exercise: send the bytes b"\\x00\\xff" over the WebSocket echo and pass what came back."""
    name = "binary echo"
    if isinstance(answer, str):
        return verdict(False, "", "That came back as text: send bytes (b'...'), not a str.", name)
    return verdict(
        answer == b"\x00\xff",
        "Right: bytes in, bytes out. Binary frames carry any bytes; text frames must be UTF-8.",
        f"Expected the two bytes 00 ff back, got {answer!r}. Send bytes, not a str (a b'...' literal "
        "holding the bytes 00 and ff), and pass the first item ws.echo returns.",
        name,
    )
