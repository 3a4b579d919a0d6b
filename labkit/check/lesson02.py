"""Checkers for lesson 02 (WebSocket and the push model)."""

from __future__ import annotations

import base64
import hashlib
import math

from ._core import Feedback, close_to, exercise, running_lab, verdict

__all__ = ["websocket_accept", "frame_header_bytes", "close_code", "rest_vs_websocket_bytes"]


def _accept_mistakes(key: str) -> dict[str, str]:
    """What the usual slips produce for `key`, each with a hint that names the slip, not the value."""
    from labkit.net.wire import WEBSOCKET_GUID

    joined = (key + WEBSOCKET_GUID).encode()
    return {
        hashlib.sha1(joined).hexdigest(): "That is the hex digest. Base64-encode the raw 20 bytes "
                                          "(.digest()), not their hex text.",
        base64.b64encode(hashlib.sha1(key.encode()).digest()).decode():
            "Close, but the GUID is missing: hash the key with the GUID appended.",
        base64.b64encode(hashlib.sha1((key + " " + WEBSOCKET_GUID).encode()).digest()).decode():
            "There is a space between key and GUID: append the GUID directly.",
        base64.b64encode(hashlib.sha256(joined).digest()).decode():
            "Right recipe, wrong hash: RFC 6455 uses SHA-1 here, not SHA-256.",
        base64.b64encode(hashlib.md5(joined).digest()).decode():  # noqa: S324 - naming a slip
            "Right recipe, wrong hash: RFC 6455 uses SHA-1 here, not MD5.",
        key: "That is the client's key itself; the server answers with a value derived from it.",
        base64.b64encode(joined).decode(): "Hash before encoding: base64(SHA-1(key + GUID)).",
    }


@exercise("Sec-WebSocket-Accept", how="Append the fixed GUID to the key, SHA-1 the bytes, then base64 "
          "the 20-byte digest.")
def websocket_accept(key: str, answer) -> Feedback:
    """Exercise: compute Sec-WebSocket-Accept for the Sec-WebSocket-Key `key`."""
    from labkit.net.wire import accept_key

    name = "Sec-WebSocket-Accept"
    given = answer.decode("ascii", "replace") if isinstance(answer, bytes) else str(answer)
    given = given.strip()
    expected = accept_key(key)
    return verdict(
        given == expected,
        f"Yes: {expected}. The server proves it read this handshake; a cache or a plain HTTP server "
        "could not produce it.",
        _accept_mistakes(key).get(given, "Not the value the server would send. Hash the key *with* "
                                         "the GUID appended (no space), use SHA-1, and base64 the "
                                         "raw digest (not its hex)."),
        name,
    )


def _header_slip(payload_bytes: int, masked: bool, answer: int) -> str:
    """Name the slip behind a wrong header size: every size 2 + {0, 2, 8} + {0, 4} is unique."""
    extended = 0 if payload_bytes <= 125 else 2 if payload_bytes <= 65_535 else 8
    if answer == payload_bytes + 2 + extended + (4 if masked else 0):
        return "Only the header: leave the payload out."
    decoded = {2 + e + m: (e, m) for e in (0, 2, 8) for m in (0, 4)}
    if answer not in decoded:
        return ""
    their_extended, their_mask = decoded[answer]
    if their_extended != extended:
        return (f"Look again at the length: which field can hold {payload_bytes:,}? The 7-bit field "
                "holds up to 125, the 2-byte extension up to 65,535, the 8-byte one the rest.")
    return ("Which way does this frame go? Only frames from client to server carry a 4-byte "
            "masking key." if masked else "Server-to-client frames are not masked: no masking key.")


@exercise("frame header size", how="Predict the header bytes as a whole number.")
def frame_header_bytes(payload_bytes: int, masked: bool, answer) -> Feedback:
    """Exercise: how many header bytes does a frame with `payload_bytes` of payload carry?"""
    from websockets.frames import Frame, Opcode

    name = f"header of a {payload_bytes}-byte {'masked ' if masked else ''}frame"
    wire = Frame(Opcode.BINARY, b"\0" * payload_bytes).serialize(mask=masked)
    expected = len(wire) - payload_bytes
    whole = isinstance(answer, int | float) and not isinstance(answer, bool) and math.isfinite(answer)
    if not whole or answer != int(answer):
        return verdict(False, "", "Answer with a whole number of bytes.", name)
    hint = _header_slip(payload_bytes, masked, int(answer)) if answer != expected else ""
    return verdict(
        answer == expected,
        f"Yes: {expected} bytes (the checker serialized a real frame to check).",
        hint or "Not quite. Start from the 2 fixed bytes, add the extended length the payload size "
                "needs, then the masking key if the client sent it.",
        name,
        then=None if hint else ("Sizes up to 125 fit in the first length field; up to 65,535 need "
                                "2 more bytes; bigger ones 8 more. Client-to-server frames add a "
                                "4-byte masking key."),
    )


_SITUATIONS = {
    "normal": "NORMAL_CLOSURE",
    "going_away": "GOING_AWAY",
    "invalid_utf8": "INVALID_DATA",
    "too_big": "MESSAGE_TOO_BIG",
    "policy": "POLICY_VIOLATION",
}
_CODE_SLIPS = {
    1000: "1000 means everything went as planned; here the peer broke a rule.",
    1001: "1001 is for an endpoint going away (a page closed, a server shutting down).",
    1002: "1002 is for broken framing (the protocol itself); here the frames were well formed.",
    1003: "1003 is for a *type* of data the endpoint cannot take (e.g. binary where it wants text). "
          "Is that the problem here?",
    1006: "1006 is never sent on the wire: it is what an API reports when no close frame came at all.",
    1008: "1008 is the generic 'you broke my policy' code, for when no more specific code fits.",
    1011: "1011 is the server's own failure, not the peer's.",
}


@exercise("close code", how="Answer with the close code as a number.")
def close_code(situation: str, answer) -> Feedback:
    """Exercise: which close code fits `situation` (normal, going_away, invalid_utf8, too_big, policy)?"""
    from websockets.frames import CloseCode

    if situation not in _SITUATIONS:
        return verdict(False, "", f"situation is one of {sorted(_SITUATIONS)}", "close code")
    expected = int(CloseCode[_SITUATIONS[situation]])
    name = f"close code for {situation}"
    if isinstance(answer, bool) or not isinstance(answer, int):
        return verdict(False, "", "Answer with the code as a whole number (an int, not text or a "
                       "float).", name)
    slips = {code: hint for code, hint in _CODE_SLIPS.items() if code != expected}
    return verdict(
        answer == expected,
        f"Yes: {expected} ({_SITUATIONS[situation].replace('_', ' ').lower()}).",
        slips.get(answer, "Not that one. Read the meanings in the lesson's close-code table and pick "
                          "the one that names this situation most precisely."),
        name,
    )


def _measure_echo_bytes(lab, payload: bytes) -> tuple[int, int]:
    """Bytes (up + down) of one REST echo on a warm keep-alive connection and of one WebSocket echo,
    measured through a private wire tap in front of `lab`."""
    from labkit.clients.rest import RestClient
    from labkit.clients.ws import WsClient
    from labkit.net.wire import WireTap

    with WireTap(lab).start() as t:
        with RestClient(t.url()) as api:
            api.post("/api/echo", data=payload)  # opens the connection
            t.settle().reset()
            api.post("/api/echo", data=payload)
            rest = t.settle().bytes_up + t.bytes_down
        with WsClient(t.url("ws"), "/ws/echo") as ws:
            t.settle().reset()
            ws.echo(payload)
            websocket = t.settle().bytes_up + t.bytes_down
    return rest, websocket


@exercise("REST vs WebSocket bytes", how="Divide the REST bytes (up + down) by the WebSocket bytes.")
def rest_vs_websocket_bytes(answer, payload: bytes = b"x" * 16, tolerance: float = 0.1) -> Feedback:
    """Exercise: how many times more bytes does one echo of `payload` cost over REST (warm keep-alive
    connection, request + response) than over an open WebSocket (frame up + frame down)?

    The checker measures it again through its own wire tap in front of the lesson's lab (the
    class server the notebook joined, else the kernel's own lab).
    """
    name = "REST vs WebSocket bytes"
    if not close_to(answer, 1.0, abs_=float("inf")):
        return verdict(False, "", "Answer with a number: REST bytes divided by WebSocket bytes.", name)
    lab = running_lab()  # the class server the notebook joined, else the kernel's own lab
    if lab is None:
        return verdict(False, "", "Start the lab first: lab = lk.start()", name)
    rest, websocket = _measure_echo_bytes(lab, payload)
    expected = rest / websocket
    upside_down = close_to(answer, websocket / rest, rel=tolerance)
    if upside_down:
        hint = "Upside down: REST costs more, so the ratio is above 1 (REST bytes / WebSocket bytes)."
    elif float(answer) < expected:
        hint = (f"Too small for a {len(payload)}-byte payload. Count both directions for both, and "
                "each side's headers (HTTP request and response heads; frame headers, masked up).")
    else:
        hint = (f"Too large for a {len(payload)}-byte payload: with a bigger payload the headers "
                "weigh less. Redo the arithmetic with this payload, both directions.")
    return verdict(
        close_to(answer, expected, rel=tolerance),
        f"Yes: about {expected:.1f}× ({rest} B vs {websocket} B for a {len(payload)}-byte payload, "
        "measured again just now). The headers are paid on every REST request; the WebSocket paid "
        "them once, at the handshake.",
        hint,
        name,
        then=None if upside_down else (f"Measured again: {rest} B over REST vs {websocket} B over "
                                       f"WebSocket for a {len(payload)}-byte payload."),
    )
