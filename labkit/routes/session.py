"""Route family "session": WebSocket state that lives in one connection, and a server that pushes unasked.

`WS /ws/session` keeps a nickname and a counter for its own connection only: a second connection
starts from zero, and closing the socket forgets everything (REST would need a cookie or an id in every
request for the same effect). `WS /ws/clock?rate=HZ` pushes ticks at the rate the client chose while
it keeps reading what the client sends, so both directions flow at the same time (full duplex).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time

from aiohttp import WSMsgType, web

from labkit.server.validate import JSONInputError, load_json, query_integer, query_number
from labkit.server.websocket import accept
from labkit.streaming.sockets import send_message

from .core import websocket_route

routes = web.RouteTableDef()

MAX_CLOCK_HZ = 100.0
"""Fastest tick rate /ws/clock accepts (ticks per second)."""
MAX_CLOCK_TICKS = 100_000
"""Largest `count` /ws/clock accepts."""
MAX_NAME_CHARS = 40
MAX_INCREMENT = 1_000_000

_session_ids = itertools.count(1)


# -- /ws/session -------------------------------------------------------------------------------
def _state(session: dict) -> dict:
    return {"type": "state", **session}


def _error(message: str, **extra) -> str:
    return json.dumps({"type": "error", "error": message, **extra})


def apply_command(session: dict, command) -> dict:
    """Apply one decoded client command to `session`; returns the reply (a state or an error)."""
    if not isinstance(command, dict):
        return {"type": "error", "error": "a command is a JSON object such as {\"op\": \"incr\"}"}
    op = command.get("op")
    if op == "get":
        return _state(session)
    if op == "set_name":
        name = command.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
            return {"type": "error", "error": f"name must be 1 to {MAX_NAME_CHARS} characters",
                    "op": op}
        session["name"] = name.strip()
        return _state(session)
    if op == "incr":
        by = command.get("by", 1)
        if isinstance(by, bool) or not isinstance(by, int) or abs(by) > MAX_INCREMENT:
            return {"type": "error", "error": f"by must be a whole number within ±{MAX_INCREMENT}",
                    "op": op}
        session["count"] += by
        return _state(session)
    return {"type": "error", "error": f"unknown op {op!r}; use get, set_name or incr",
            "op": op if isinstance(op, str) else None}


@routes.get("/ws/session")
@websocket_route
async def ws_session(request: web.Request) -> web.WebSocketResponse:
    """Per-connection state: a nickname and a counter that only this connection sees."""
    ws = await accept(request)
    session = {"session": next(_session_ids), "name": None, "count": 0}
    await send_message(ws, {"type": "welcome", **session})
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            try:
                command = load_json(msg.data)
            except JSONInputError as exc:
                await send_message(ws, _error("not JSON", detail=str(exc)[:200]))
                continue
            await send_message(ws, apply_command(session, command))
        elif msg.type is WSMsgType.BINARY:
            await send_message(ws, _error("this route speaks JSON in text frames, not binary"))
    return ws


# -- /ws/clock ---------------------------------------------------------------------------------
def _number(request: web.Request, name: str, default, low, high, kind=float):
    """?name= written as a plain decimal number (the lab's one canonical-number rule), else 422."""
    raw = request.query.get(name)
    if raw is None:
        return default
    check = query_integer if kind is int else query_number
    return check(raw, name, low, high)


async def _tick(ws: web.WebSocketResponse, clock: dict) -> None:
    """Send ticks on a fixed schedule (no drift) until `count` ticks or the socket closes."""
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while not ws.closed and (clock["count"] is None or clock["seq"] < clock["count"]):
        next_at += 1.0 / clock["rate"]
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        if ws.closed:
            return
        clock["seq"] += 1
        if not await send_message(ws, {"type": "tick", "seq": clock["seq"], "ts": time.time()}):
            return
    if not ws.closed:
        await ws.close(message=b"all ticks sent")


@routes.get("/ws/clock")
@websocket_route
async def ws_clock(request: web.Request) -> web.WebSocketResponse:
    """Server push: ticks at ?rate=HZ (at most 100), optional ?count=N; client messages get an ack."""
    rate = _number(request, "rate", 10.0, 0.1, MAX_CLOCK_HZ)
    count = _number(request, "count", None, 1, MAX_CLOCK_TICKS, int)
    ws = await accept(request)
    clock = {"rate": rate, "count": count, "seq": 0}
    ticker = asyncio.create_task(_tick(ws, clock))
    received = 0
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            received += 1
            reply = {"type": "ack", "n": received, "bytes": len(msg.data), "ticks_sent": clock["seq"]}
            if msg.type is WSMsgType.TEXT and msg.data.startswith("{"):
                try:
                    wanted = load_json(msg.data).get("rate")
                except (JSONInputError, AttributeError):
                    wanted = None
                if wanted is not None:
                    if type(wanted) in (int, float) and 0.1 <= wanted <= MAX_CLOCK_HZ:  # not bool
                        clock["rate"] = float(wanted)
                        reply["rate"] = clock["rate"]
                    else:
                        reply = {"type": "error", "error": f"rate must be 0.1 to {MAX_CLOCK_HZ}"}
            await send_message(ws, reply)
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
    return ws


def setup(app: web.Application) -> None:
    app.add_routes(routes)


OPENAPI_PATHS: dict = {}  # WebSocket only: see ASYNCAPI_CHANNELS

_STATE = {
    "type": "object",
    "required": ["type", "session", "name", "count"],
    "properties": {
        "type": {"type": "string", "enum": ["welcome", "state"]},
        "session": {"type": "integer", "description": "Id of this connection's session"},
        "name": {"type": ["string", "null"]},
        "count": {"type": "integer"},
    },
}
_ERROR = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {"type": {"const": "error"}, "error": {"type": "string"}},
}

ASYNCAPI_CHANNELS = {
    "session": {
        "address": "/ws/session",
        "title": "Per-connection session",
        "description": "A nickname and a counter kept for this connection only. Bad JSON gets an "
                       "error message; the connection stays open.",
        "messages": {
            "command": {
                "name": "command",
                "contentType": "application/json",
                "summary": "A command: get, set_name (name) or incr (by)",
                "payload": {
                    "type": "object",
                    "required": ["op"],
                    "properties": {
                        "op": {"type": "string", "enum": ["get", "set_name", "incr"]},
                        "name": {"type": "string", "maxLength": MAX_NAME_CHARS},
                        "by": {"type": "integer"},
                    },
                },
            },
            "state": {"name": "state", "contentType": "application/json",
                      "summary": "Welcome on connect, then the state after each command",
                      "payload": _STATE},
            "error": {"name": "error", "contentType": "application/json",
                      "summary": "The command was refused; nothing changed", "payload": _ERROR},
        },
        "bindings": {"ws": {"method": "GET"}},
        "receives": ["command"],
        "sends": ["state", "error"],
    },
    "clock": {
        "address": "/ws/clock",
        "title": "Clock ticks pushed by the server",
        "description": "Ticks at the chosen rate; every client message is acknowledged while the "
                       "ticks keep flowing. Send {\"rate\": HZ} to change the rate.",
        "messages": {
            "tick": {
                "name": "tick",
                "contentType": "application/json",
                "payload": {
                    "type": "object",
                    "required": ["type", "seq", "ts"],
                    "properties": {"type": {"const": "tick"}, "seq": {"type": "integer"},
                                   "ts": {"type": "number", "description": "Unix time (s)"}},
                },
            },
            "clientMessage": {"name": "clientMessage", "summary": "Any text or binary message",
                              "payload": {"type": "string"}},
            "ack": {
                "name": "ack",
                "contentType": "application/json",
                "payload": {
                    "type": "object",
                    "required": ["type", "n", "bytes"],
                    "properties": {"type": {"const": "ack"}, "n": {"type": "integer"},
                                   "bytes": {"type": "integer"}, "rate": {"type": "number"}},
                },
            },
            "error": {"name": "error", "contentType": "application/json", "payload": _ERROR},
        },
        "bindings": {
            "ws": {
                "method": "GET",
                "query": {
                    "type": "object",
                    "properties": {
                        "rate": {"type": "number", "minimum": 0.1, "maximum": MAX_CLOCK_HZ,
                                 "default": 10},
                        "count": {"type": "integer", "minimum": 1, "maximum": MAX_CLOCK_TICKS},
                    },
                },
            }
        },
        "receives": ["clientMessage"],
        "sends": ["tick", "ack", "error"],
    },
}
