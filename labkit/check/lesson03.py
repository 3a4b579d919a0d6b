"""Checkers for lesson 03 (the latency lab). Each takes the student's answer and the run it came
from (the tidy frame of `lk.compare_transports`) and compares with what that run measured."""

from __future__ import annotations

import math

from ._core import Feedback, verdict

__all__ = ["new_connection_round_trips", "websocket_break_even", "header_bytes_saved"]


def _number(answer) -> float | None:
    if isinstance(answer, bool):
        return None
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _needs(frame, transports, name: str) -> Feedback | None:
    if frame is None or not hasattr(frame, "columns") or "transport" not in frame.columns:
        return verdict(False, "", "Pass the frame your run returned as the second argument, "
                       "e.g. check(answer, g4).", name)
    missing = [t for t in transports if t not in set(frame["transport"])]
    if missing:
        return verdict(False, "", f"This run has no {', '.join(missing)} rows; measure with "
                       f"transports including {', '.join(missing)}.", name)
    return None


def new_connection_round_trips(answer, frame=None) -> Feedback:
    """Exercise: from the data, how many network round trips does a REST request on a new
    connection cost? (Its median divided by the keep-alive median, rounded to a whole number.)"""
    name = "round trips of a new connection"
    problem = _needs(frame, ["rest-new", "rest-keepalive"], name)
    if problem is not None:
        return problem
    from ..latency import round_trips_per_connection

    measured = round_trips_per_connection(frame)
    value = _number(answer)
    if value is None:
        return verdict(False, "", "Answer with a number: divide the median round trip of "
                       "rest-new by the median of rest-keepalive.", name)
    expected = round(measured)
    ok = value == expected or abs(value - measured) <= 0.25
    tls = bool(frame["tls"].any()) if "tls" in frame.columns else False
    why = ("one for the TCP handshake, one for TLS, one for the request itself" if expected == 3
           and tls else "one for the TCP handshake, one for the request itself")
    return verdict(
        ok,
        f"Yes: this run measured {measured:.2f} keep-alive round trips, so {expected} ({why}).",
        f"{value:g} is not what this run shows: compare the medians of rest-new and "
        "rest-keepalive (lk.measure.summary(frame)).",
        name,
    )


def websocket_break_even(answer, frame=None) -> Feedback:
    """Exercise: counting the opening handshake, from how many messages on is one WebSocket
    faster in total than REST with a new connection per message? (Use exchange_totals.)"""
    name = "break-even"
    problem = _needs(frame, ["rest-new", "websocket"], name)
    if problem is not None:
        return problem
    from ..latency import exchange_totals

    value = _number(answer)
    if value is None or value < 1 or value != int(value):
        return verdict(False, "", "Answer with a whole number of messages (1 or more).", name)
    totals = exchange_totals(frame, messages=range(1, 201))
    ws = totals[totals["transport"] == "websocket"].set_index("messages")["total_ms"]
    rest = totals[totals["transport"] == "rest-new"].set_index("messages")["total_ms"]
    faster = [n for n in ws.index if ws[n] < rest[n]]
    if not faster:
        return verdict(False, "", "In this run WebSocket never wins within 200 messages: is the "
                       "profile loopback? Try the 4G run.", name)
    first = faster[0]
    return verdict(
        abs(int(value) - first) <= 1,
        f"Right: from about {first} messages on, the WebSocket's one-off handshake is paid back "
        "(each REST request pays its own).",
        f"{int(value)} does not fit this run: compare set-up + N x per-message for both "
        "transports (lk.latency.exchange_totals(frame)).",
        name,
    )


def header_bytes_saved(answer, frame=None) -> Feedback:
    """Exercise: how many more bytes (up plus down) does one REST keep-alive round trip put on
    the wire than one WebSocket message round trip with the same payload? (Medians.)"""
    name = "bytes per message"
    problem = _needs(frame, ["rest-keepalive", "websocket"], name)
    if problem is not None:
        return problem
    if frame["bytes_up"].isna().all():
        return verdict(False, "", "This run counted no bytes (profile=None); measure through "
                       "the emulator, e.g. profile='loopback'.", name)
    from ..measure import median

    size = frame["payload_bytes"].min()
    rows = frame[frame["payload_bytes"] == size]

    def wire(transport):
        sel = rows[rows["transport"] == transport]
        return median(sel["bytes_up"] + sel["bytes_down"])

    expected = wire("rest-keepalive") - wire("websocket")
    value = _number(answer)
    if value is None:
        return verdict(False, "", "Answer with a number of bytes: median of bytes_up + "
                       "bytes_down for rest-keepalive minus the same for websocket.", name)
    return verdict(
        abs(value - expected) <= max(4.0, 0.05 * abs(expected)),
        f"Right: {expected:.0f} extra bytes per exchange, almost all of them HTTP headers; a "
        f"WebSocket frame adds 2-14 bytes of header around the {size}-byte payload.",
        f"This run measured {expected:.0f} extra bytes per round trip for payload {size} B, not "
        f"{value:g}.",
        name,
    )
