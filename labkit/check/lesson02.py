"""Checkers for lesson 02 (WebSocket and the push model)."""

from __future__ import annotations

from ._core import Feedback, close_to, verdict

__all__ = ["websocket_accept", "frame_header_bytes", "close_code", "rest_vs_websocket_bytes"]


def websocket_accept(key: str, answer) -> Feedback:
    """Exercise: compute Sec-WebSocket-Accept for the Sec-WebSocket-Key `key`."""
    from ..wire import accept_key

    name = "Sec-WebSocket-Accept"
    if not answer:
        return verdict(False, "", "Append the fixed GUID to the key, SHA-1 the bytes, then base64 "
                       "the 20-byte digest.", name)
    expected = accept_key(key)
    return verdict(
        str(answer).strip() == expected,
        f"Yes: {expected}. The server proves it read this handshake; a cache or a plain HTTP server "
        "could not produce it.",
        "Not the value the server would send. Hash the key *with* the GUID appended (no space), "
        "use SHA-1, and base64 the raw digest (not its hex).",
        name,
    )


def frame_header_bytes(payload_bytes: int, masked: bool, answer) -> Feedback:
    """Exercise: how many header bytes does a frame with `payload_bytes` of payload carry?"""
    from websockets.frames import Frame, Opcode

    name = f"header of a {payload_bytes}-byte {'masked ' if masked else ''}frame"
    wire = Frame(Opcode.BINARY, b"\0" * payload_bytes).serialize(mask=masked)
    expected = len(wire) - payload_bytes
    if answer is None:
        return verdict(False, "", "Look at which length field the payload size needs (7, 16 or 64 "
                       "bits), then add the mask if the client sent it.", name)
    return verdict(
        answer == expected,
        f"Yes: {expected} bytes (serialized a real frame to check).",
        "Not quite. Sizes up to 125 fit in the first length field; up to 65,535 need 2 more bytes; "
        "bigger ones 8 more. Client-to-server frames add a 4-byte masking key.",
        name,
    )


_SITUATIONS = {
    "normal": "NORMAL_CLOSURE",
    "going_away": "GOING_AWAY",
    "invalid_utf8": "INVALID_DATA",
    "too_big": "MESSAGE_TOO_BIG",
    "policy": "POLICY_VIOLATION",
}


def close_code(situation: str, answer) -> Feedback:
    """Exercise: which close code fits `situation` (normal, going_away, invalid_utf8, too_big, policy)?"""
    from websockets.frames import CloseCode

    if situation not in _SITUATIONS:
        return verdict(False, "", f"situation is one of {sorted(_SITUATIONS)}", "close code")
    expected = int(CloseCode[_SITUATIONS[situation]])
    name = f"close code for {situation}"
    return verdict(
        answer == expected,
        f"Yes: {expected} ({_SITUATIONS[situation].replace('_', ' ').lower()}).",
        "Not that one. The frames table of the closing handshake shows the code the lab sent; "
        "the lesson's close-code table lists them all.",
        name,
    )


def rest_vs_websocket_bytes(answer, payload: bytes = b"x" * 16, tolerance: float = 0.1) -> Feedback:
    """Exercise: how many times more bytes does one small echo cost over REST (warm keep-alive
    connection, request + response) than over an open WebSocket (frame up + frame down)?

    The checker measures it again through its own wire tap in front of the running lab.
    """
    from ..clients.rest import RestClient
    from ..clients.ws import WsClient
    from ..server.runner import current
    from ..wire import tap

    name = "REST vs WebSocket bytes"
    lab = current()
    if lab is None:
        return verdict(False, "", "Start the lab first: lab = lk.start()", name)
    if answer is None:
        return verdict(False, "", "Divide the REST bytes (up + down) by the WebSocket bytes.", name)
    with tap(lab) as t:
        with RestClient(t.url()) as api:
            api.post("/api/echo", data=payload)  # opens the connection
            t.settle().reset()
            api.post("/api/echo", data=payload)
            rest = t.settle().bytes_up + t.bytes_down
        ws = WsClient(t.url("ws"), "/ws/echo")
        try:
            t.settle().reset()
            ws.echo(payload)
            websocket = t.settle().bytes_up + t.bytes_down
        finally:
            ws.close()
    expected = rest / websocket
    return verdict(
        close_to(answer, expected, rel=tolerance),
        f"Yes: about {expected:.1f}× ({rest} B vs {websocket} B for a {len(payload)}-byte payload). "
        "The headers are paid on every REST request; the WebSocket paid them once, at the handshake.",
        f"Measured again: {rest} B over REST vs {websocket} B over WebSocket. Check you added both "
        "directions and used the same payload.",
        name,
    )
