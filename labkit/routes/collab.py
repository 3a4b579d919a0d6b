"""Route family "collab": a shared whiteboard with live cursors, for several participants.

- `WS /ws/collab?room=R&name=N`: send {"type": "cursor", "x", "y"} (0..1, where your pointer is;
  ephemeral: relayed to the others, never stored) and {"type": "stroke", "points": [[x, y], ...],
  "color"} (stored in order, numbered by the server, sent to everyone including you). Receive
  {"type": "welcome", "you", "participants", "strokes"}, {"type": "cursor", "name", "x", "y", "ts"},
  {"type": "stroke", "seq", "name", "points", "color", "ts"}, {"type": "join"|"leave", "name"},
  and {"type": "error", "detail"} for a bad message (the connection stays open).
- `GET /api/collab/{room}?since=SEQ`: participants and the strokes after SEQ (a poller's view).

The server's stroke numbers give one order that every participant replays, so all boards agree;
cursors are "latest wins" and may be dropped by a slow link without harm.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import OrderedDict
from typing import Any

from aiohttp import WSMsgType, web

from labkit.server.problem import ProblemError
from labkit.server.validate import load_json  # the lab's one JSON reader (depth-limited)
from labkit.server.websocket import accept
from labkit.streaming.sockets import Outbox, outbox

from .core import websocket_route
from .game import NAME_SCHEMA, check_name

ROOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
MAX_ROOMS = 200
MAX_STROKES = 2000
"""Strokes a room keeps; older ones are forgotten (a poller asking for them is told so)."""
MAX_POINTS = 500
COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


class Room:
    def __init__(self, room_id: str):
        self.id = room_id
        self.strokes: list[dict] = []
        self.last_seq = 0
        self.sockets: dict[web.WebSocketResponse, str] = {}

    def participants(self) -> list[str]:
        return sorted(self.sockets.values())

    async def send(self, message: dict, *, skip: web.WebSocketResponse | None = None) -> None:
        """Hand `message` to every member's outbox (never waits for a member: a stuck one is
        closed as a slow consumer by its own outbox, the others get it at once)."""
        text = json.dumps(message)
        for ws in list(self.sockets):
            box = outbox(ws)
            if ws is not skip and box is not None:
                box.send(text)


ROOMS = web.AppKey("collab_rooms", OrderedDict)
routes = web.RouteTableDef()


def room_for(request: web.Request, room_id: str | None) -> Room:
    if not isinstance(room_id, str) or not ROOM_ID.match(room_id):
        raise ProblemError(400, "room must be 1-40 letters, digits, '-' or '_'",
                           errors=[{"field": "room", "message": "malformed"}])
    rooms = request.app[ROOMS]
    if room_id not in rooms:
        while len(rooms) >= MAX_ROOMS:
            rooms.popitem(last=False)
        rooms[room_id] = Room(room_id)
    return rooms[room_id]


def _unit(value) -> float | None:
    """`value` as a coordinate in 0..1, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value) if 0 <= value <= 1 else None


@routes.get("/api/collab/{room}")
async def room_get(request: web.Request) -> web.Response:
    """Participants and the strokes after ?since=SEQ (all kept ones without it)."""
    room = room_for(request, request.match_info["room"])
    raw = request.query.get("since", "0")
    if not raw.isdigit():
        raise ProblemError(400, "since must be a whole number",
                           errors=[{"field": "since", "message": "invalid"}])
    since = int(raw)
    first_kept = room.strokes[0]["seq"] if room.strokes else room.last_seq + 1
    if since + 1 < first_kept:
        raise ProblemError(410, f"strokes before {first_kept} are no longer kept; load from since=0")
    return web.json_response({"room": room.id, "participants": room.participants(),
                              "last_seq": room.last_seq,
                              "strokes": [s for s in room.strokes if s["seq"] > since]})


@routes.get("/ws/collab")
@websocket_route
async def collab_ws(request: web.Request) -> web.WebSocketResponse:
    """Join a whiteboard room: cursors relayed live, strokes stored and numbered for everyone."""
    room = room_for(request, request.query.get("room"))
    name, errors = check_name(request.query.get("name"))
    if errors:
        raise ProblemError(422, f"name: {errors[0]['message']}", errors=errors)
    if name is None:  # check_name gives either a name or its errors
        raise RuntimeError("check_name gave neither a name nor errors")
    ws = await accept(request, compress=False, autoclose=False)
    box = Outbox(request, ws, reason=lambda: (f"too slow: GET /api/collab/{room.id}?since=N "
                                              "loads the strokes you missed"))
    room.sockets[ws] = name
    try:
        box.send(json.dumps({"type": "welcome", "you": name, "participants": room.participants(),
                             "last_seq": room.last_seq, "strokes": room.strokes}), bounded=False)
        await room.send({"type": "join", "name": name, "ts": time.time()}, skip=ws)
        async for msg in ws:
            if box.state != "open":
                continue  # being closed as a slow consumer: read until its Close, not acted on
            if msg.type is WSMsgType.TEXT:
                await _on_message(room, ws, name, msg.data)
            elif msg.type is WSMsgType.BINARY:
                await _error(ws, "send JSON text, not binary")
    finally:
        room.sockets.pop(ws, None)
        await room.send({"type": "leave", "name": name, "ts": time.time()})
        await box.finish()
    return ws


async def _on_message(room: Room, ws: web.WebSocketResponse, name: str, raw: str) -> None:
    try:
        msg = load_json(raw)
    except ValueError:
        msg = None
    kind = msg.get("type") if isinstance(msg, dict) else None
    if kind == "cursor":
        x, y = _unit(msg.get("x")), _unit(msg.get("y"))
        if x is None or y is None:
            return await _error(ws, "cursor x and y must be numbers from 0 to 1")
        return await room.send({"type": "cursor", "name": name, "x": x, "y": y, "ts": time.time()}, skip=ws)
    if kind == "stroke":
        points, color = msg.get("points"), msg.get("color", "#1f77b4")
        if (not isinstance(points, list) or not 1 <= len(points) <= MAX_POINTS
                or not all(isinstance(p, list) and len(p) == 2 and None not in map(_unit, p)
                           for p in points)):
            return await _error(ws, f"points must be 1-{MAX_POINTS} [x, y] pairs from 0 to 1")
        if not isinstance(color, str) or not COLOR.match(color):
            return await _error(ws, 'color must look like "#1f77b4"')
        room.last_seq += 1
        stroke = {"seq": room.last_seq, "name": name, "points": points, "color": color, "ts": time.time()}
        room.strokes.append(stroke)
        del room.strokes[:-MAX_STROKES]
        return await room.send({"type": "stroke", **stroke})
    await _error(ws, '"type" must be "cursor" or "stroke"')


async def _error(ws: web.WebSocketResponse, detail: str) -> None:
    box = outbox(ws)
    if box is not None:
        box.send(json.dumps({"type": "error", "detail": detail}))


def setup(app: web.Application) -> None:
    app[ROOMS] = OrderedDict()
    app.add_routes(routes)


_STROKE: dict[str, Any] = {"type": "object", "properties": {
    "seq": {"type": "integer"}, "name": {"type": "string"}, "color": {"type": "string"},
    "points": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
    "ts": {"type": "number"}}}
OPENAPI_PATHS = {
    "/api/collab/{room}": {"get": {
        "summary": "A whiteboard room: participants and strokes after ?since=SEQ",
        "operationId": "collabRoomGet",
        "parameters": [
            {"name": "room", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": ROOM_ID.pattern}},
            {"name": "since", "in": "query", "required": False,
             "schema": {"type": "string", "pattern": "^[0-9]+$"}},
        ],
        "responses": {
            "200": {"description": "The room", "content": {"application/json": {"schema": {
                "type": "object", "properties": {
                    "room": {"type": "string"},
                    "participants": {"type": "array", "items": {"type": "string"}},
                    "last_seq": {"type": "integer"}, "strokes": {"type": "array", "items": _STROKE}}}}}},
            "400": {"$ref": "#/components/responses/Problem"},
            "410": {"$ref": "#/components/responses/Problem"},
        },
    }},
}

ASYNCAPI_CHANNELS = {
    "collabWebSocket": {
        "address": "/ws/collab",
        "title": "A shared whiteboard with live cursors",
        "description": "Join with ?room=R&name=N. Cursors are relayed to the others; strokes are "
                       "numbered by the server and sent to everyone, so every board replays one order.",
        "bindings": {"ws": {"query": {"type": "object", "required": ["room", "name"], "properties": {
            "room": {"type": "string", "pattern": ROOM_ID.pattern},
            "name": NAME_SCHEMA}}}},
        "messages": {
            "cursor": {"name": "cursor", "payload": {"type": "object", "properties": {
                "type": {"const": "cursor"}, "x": {"type": "number"}, "y": {"type": "number"},
                "name": {"type": "string"}}}},
            "stroke": {"name": "stroke", "payload": {**_STROKE, "properties": {
                **_STROKE["properties"], "type": {"const": "stroke"}}}},
            "welcome": {"name": "welcome", "payload": {"type": "object", "properties": {
                "type": {"const": "welcome"}, "participants": {"type": "array"},
                "strokes": {"type": "array"}}}},
            "presence": {"name": "presence", "payload": {"type": "object", "properties": {
                "type": {"enum": ["join", "leave"]}, "name": {"type": "string"}}}},
            "error": {"name": "error", "payload": {"type": "object", "properties": {
                "type": {"const": "error"}, "detail": {"type": "string"}}}},
        },
        "receives": ["cursor", "stroke"],
        "sends": ["welcome", "cursor", "stroke", "presence", "error"],
    }
}
