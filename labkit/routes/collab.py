"""Route family "collab": a shared whiteboard with live cursors, for several participants.

A room exists once someone creates it; reading or joining one that does not exist is 404.

- `PUT /api/collab/{room}`: create the room with that name (201), or find it already there (200,
  nothing changes): idempotent, so every participant may PUT before joining. `POST /api/collab`
  creates a room with a name the server picks (201, `Location`).
- `WS /ws/collab?room=R&name=N`: join an existing room (404 before the upgrade if there is none:
  a mistyped room name is an error you see, not an empty room of your own). Send {"type": "cursor",
  "x", "y"} (0..1, where your pointer is; ephemeral: relayed to the others, never stored) and
  {"type": "stroke", "points": [[x, y], ...], "color"} (stored in order, numbered by the server,
  sent to everyone including you). Receive {"type": "welcome", "you", "participants",
  "first_kept", "last_seq", "older", "strokes"} (`you`: the name you got: N, or "N 2", "N 3" …
  when someone in the room already goes by N; the newest strokes, WELCOME_MAX_BYTES in all;
  `older` more are kept from `first_kept` on: page them with GET ?since=first_kept-1),
  {"type": "cursor", "name", "x", "y", "ts"}, {"type": "stroke", "seq", "name", "points", "color",
  "ts"}, {"type": "join"|"leave", "name"}, and {"type": "error", "detail"} for a bad message (the
  connection stays open).
- `GET /api/collab/{room}?since=SEQ&limit=N`: participants and one page of the strokes after SEQ
  (from the oldest kept one without `since`): at most `limit` strokes (PAGE_MAX_STROKES) and
  PAGE_MAX_BYTES; `more` and a `Link: rel="next"` header say there is another page, `next_since`
  is where it starts. 410 for a SEQ older than the kept strokes.
- `GET /api/collab`: how many rooms, their bytes, and the bounds (the newest rooms listed).

The server's stroke numbers give one order that every participant replays, so all boards agree;
cursors are "latest wins" and may be dropped by a slow link without harm.

Every store is bounded, in bytes: a stroke is kept as the JSON text that was broadcast (never as
Python lists of floats) and counts its length plus STROKE_OVERHEAD. A room keeps at most
ROOM_MAX_BYTES (its oldest strokes are dropped past it), all rooms together ALL_ROOMS_MAX_BYTES
(past it the least recently used room with nobody in it is forgotten, then the largest room drops
its oldest strokes), and there are at most MAX_ROOMS rooms: creating one more forgets the least
recently used room with nobody in it, and when every room has someone in it the answer is 503 with
`Retry-After` (the rooms are full for now, not for good: a room empties when its last member
leaves; 507 would say the server cannot store it at all).

Size: longer than 500 lines because the room store (bounded strokes, paging, unique names), the REST
and WebSocket routes and their OpenAPI and AsyncAPI documents are one wire contract and change
together.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import secrets
import time
from collections import OrderedDict, deque
from typing import Any

from aiohttp import WSMsgType, web

from labkit.server.problem import ProblemError
from labkit.server.validate import load_json  # the lab's one JSON reader (depth-limited)
from labkit.server.websocket import accept
from labkit.streaming.sockets import Outbox, outbox

from .core import websocket_route
from .game import MAX_NAME, NAME_SCHEMA, check_name, student

ROOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
MAX_ROOMS_PER_IDENTITY = 10
"""Rooms one student identity may have made that still exist (class server)."""
MAX_ROOMS = 200
"""Rooms kept at once. One more forgets the least recently used room with nobody in it; when every
room has someone in it, creating answers 503 with Retry-After (RETRY_AFTER_S)."""
MAX_POINTS = 500
"""Points in one stroke (a stroke's JSON is then at most about 21 KB)."""
ROOM_MAX_BYTES = 2 * 1024 * 1024
"""Bytes of strokes one room keeps (each stroke: its JSON text + STROKE_OVERHEAD). Past it the
room drops its oldest strokes; a poller asking for them is told so (410)."""
ALL_ROOMS_MAX_BYTES = 32 * 1024 * 1024
"""Bytes of strokes all rooms keep together (16 full rooms). Past it the least recently used room
with nobody in it is forgotten, then the room holding the most bytes drops its oldest strokes."""
STROKE_OVERHEAD = 160
"""Bytes a kept stroke costs besides its JSON text: the str object's header and its entry in the
room's deque (measured with tracemalloc: about 130)."""
WELCOME_MAX_BYTES = 256 * 1024
"""Bytes of a join's welcome message: the newest strokes that fit. (Only a participants list
longer than this alone, thousands of members, would pass it.) Far below aiohttp's and the
browsers' default 4 MiB message limit, so a late joiner of a full room can always join."""
PAGE_MAX_BYTES = 256 * 1024
"""Bytes of one page of GET /api/collab/{room} (it holds at least one stroke, about 21 KB at most)."""
PAGE_MAX_STROKES = 500
"""Strokes in one page of GET /api/collab/{room} (the default and the largest `limit`)."""
LIST_MAX = 50
"""Rooms listed by GET /api/collab (the most recently used); the counts cover all of them."""
RETRY_AFTER_S = 10
"""Retry-After of the 503 when every room has someone in it."""
COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


class Room:
    """One whiteboard: its kept strokes (JSON texts, oldest first) and the sockets in it."""

    creator: str | None = None
    """The student identity that made it (None: the instructor, or a lab of one's own)."""

    def __init__(self, room_id: str):
        self.id = room_id
        self.strokes: deque[tuple[int, str]] = deque()  # (seq, the stroke message's JSON text)
        self.bytes = 0
        self.last_seq = 0
        self.sockets: dict[web.WebSocketResponse, str] = {}
        self.joining = 0  # handshakes under way (the room is in use while they finish)

    def participants(self) -> list[str]:
        return sorted(self.sockets.values())

    def free_name(self, name: str) -> str:
        """`name`, or `name 2`, `name 3`, … if someone in the room already goes by it: every cursor
        and stroke is labelled by whose it is, so two pages that ask for the same name (a second
        tab of one notebook) still tell each other apart. Checked and taken with no await between."""
        taken = set(self.sockets.values())
        if name not in taken:
            return name
        for n in itertools.count(2):
            suffix = f" {n}"
            candidate = name[:MAX_NAME - len(suffix)] + suffix
            if candidate not in taken:
                return candidate
        raise AssertionError("unreachable")

    @property
    def in_use(self) -> bool:
        return bool(self.sockets) or self.joining > 0

    @property
    def first_kept(self) -> int:
        """The oldest stroke kept (last_seq + 1 when none is)."""
        return self.strokes[0][0] if self.strokes else self.last_seq + 1

    def add(self, text: str) -> int:
        """Keep a stroke's text (numbered last_seq) and drop the oldest past ROOM_MAX_BYTES;
        returns the change in bytes."""
        self.strokes.append((self.last_seq, text))
        change = len(text) + STROKE_OVERHEAD
        self.bytes += change
        while self.bytes > ROOM_MAX_BYTES and len(self.strokes) > 1:
            change -= self.drop_oldest()
        return change

    def drop_oldest(self) -> int:
        _, text = self.strokes.popleft()
        self.bytes -= len(text) + STROKE_OVERHEAD
        return len(text) + STROKE_OVERHEAD

    def newest(self, max_bytes: int) -> list[str]:
        """The newest kept stroke texts whose lengths add up to at most `max_bytes`, oldest first."""
        out: list[str] = []
        used = 0
        for _, text in reversed(self.strokes):
            if used + len(text) + 1 > max_bytes:
                break
            out.append(text)
            used += len(text) + 1
        out.reverse()
        return out

    def page(self, since: int, limit: int, max_bytes: int) -> list[tuple[int, str]]:
        """Kept strokes after `since`, at most `limit` of them and `max_bytes` of text (at least one)."""
        start = max(0, since + 1 - self.first_kept)
        out: list[tuple[int, str]] = []
        used = 0
        for seq, text in itertools.islice(self.strokes, start, None):
            if len(out) >= limit or (out and used + len(text) + 1 > max_bytes):
                break
            out.append((seq, text))
            used += len(text) + 1
        return out

    async def send(self, message: dict | str, *, skip: web.WebSocketResponse | None = None) -> None:
        """Hand `message` to every member's outbox (never waits for a member: a stuck one is
        closed as a slow consumer by its own outbox, the others get it at once)."""
        text = message if isinstance(message, str) else json.dumps(message)
        for ws in list(self.sockets):
            box = outbox(ws)
            if ws is not skip and box is not None:
                box.send(text)


class Rooms:
    """Every room of the lab, least recently used first, and the bytes their strokes hold."""

    def __init__(self) -> None:
        self.rooms: OrderedDict[str, Room] = OrderedDict()
        self.bytes = 0

    def get(self, room_id: str | None) -> Room:
        """The room called `room_id` (400 if malformed, 404 if there is none); marks it used."""
        room_id = check_room_id(room_id)
        room = self.rooms.get(room_id)
        if room is None:
            raise ProblemError(404, f"there is no room {room_id!r}: create it first "
                                    f"(PUT /api/collab/{room_id})", room=room_id)
        self.rooms.move_to_end(room_id)
        return room

    def create(self, room_id: str, creator: str | None = None) -> tuple[Room, bool]:
        """The room called `room_id`, made if new (True); 503 when MAX_ROOMS rooms all have people;
        429 when `creator` (a student's identity) already made MAX_ROOMS_PER_IDENTITY rooms that
        still exist, so one token cannot take every room."""
        room = self.rooms.get(room_id)
        if room is not None:
            self.rooms.move_to_end(room_id)
            return room, False
        if creator is not None:
            held = sum(r.creator == creator for r in self.rooms.values())
            if held >= MAX_ROOMS_PER_IDENTITY:
                raise ProblemError(429, f"you made {held} rooms already: use one of them",
                                   headers={"Retry-After": str(RETRY_AFTER_S)})
        while len(self.rooms) >= MAX_ROOMS:
            if not self._forget_one_empty():
                raise ProblemError(503, f"all {MAX_ROOMS} rooms have someone in them: try again "
                                        "later", headers={"Retry-After": str(RETRY_AFTER_S)})
        room = self.rooms[room_id] = Room(room_id)
        room.creator = creator
        return room, True

    def _forget_one_empty(self) -> bool:
        """Forget the least recently used room with nobody in it; False if there is none."""
        for room_id, room in self.rooms.items():
            if not room.in_use:
                del self.rooms[room_id]
                self.bytes -= room.bytes
                return True
        return False

    def added(self, change: int) -> None:
        """A room's bytes changed by `change`: keep all rooms within ALL_ROOMS_MAX_BYTES."""
        self.bytes += change
        while self.bytes > ALL_ROOMS_MAX_BYTES:
            if self._forget_one_empty():
                continue
            largest = max(self.rooms.values(), key=lambda r: r.bytes)
            if len(largest.strokes) <= 1:
                break
            self.bytes -= largest.drop_oldest()


def check_room_id(room_id: Any) -> str:
    if not isinstance(room_id, str) or not ROOM_ID.fullmatch(room_id):
        raise ProblemError(400, "room must be 1-40 letters, digits, '-' or '_'",
                           errors=[{"field": "room", "message": "malformed"}])
    return room_id


ROOMS = web.AppKey("collab_rooms", Rooms)
routes = web.RouteTableDef()


def _unit(value) -> float | None:
    """`value` as a coordinate in 0..1, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value) if 0 <= value <= 1 else None


def _room_json(room: Room) -> dict:
    return {"room": room.id, "participants": room.participants(), "first_kept": room.first_kept,
            "last_seq": room.last_seq, "strokes_kept": len(room.strokes), "bytes": room.bytes}


@routes.get("/api/collab")
async def rooms_get(request: web.Request) -> web.Response:
    """How many rooms, their bytes and the bounds; the most recently used rooms."""
    rooms = request.app[ROOMS]
    newest = list(itertools.islice(reversed(rooms.rooms.values()), LIST_MAX))
    return web.json_response({
        "count": len(rooms.rooms), "max_rooms": MAX_ROOMS,
        "in_use": sum(r.in_use for r in rooms.rooms.values()),
        "bytes": rooms.bytes, "max_bytes": ALL_ROOMS_MAX_BYTES, "room_max_bytes": ROOM_MAX_BYTES,
        "rooms": [_room_json(r) for r in newest]})


@routes.post("/api/collab")
async def rooms_post(request: web.Request) -> web.Response:
    """Create a room with a name the server picks: 201 with Location."""
    room, _ = request.app[ROOMS].create(f"room-{secrets.token_hex(6)}", student(request))
    return web.json_response(_room_json(room), status=201,
                             headers={"Location": f"/api/collab/{room.id}"})


@routes.put("/api/collab/{room}")
async def room_put(request: web.Request) -> web.Response:
    """Create the room with this name (201), or find it there already (200, unchanged)."""
    room, created = request.app[ROOMS].create(check_room_id(request.match_info["room"]),
                                              student(request))
    return web.json_response(_room_json(room), status=201 if created else 200,
                             headers={"Location": f"/api/collab/{room.id}"} if created else None)


def _whole(request: web.Request, field: str, default: int) -> int:
    raw = request.query.get(field)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise ProblemError(400, f"{field} must be a whole number",
                           errors=[{"field": field, "message": "invalid"}])
    return int(raw)


@routes.get("/api/collab/{room}")
async def room_get(request: web.Request) -> web.Response:
    """Participants and one page of the strokes after ?since=SEQ (from the oldest kept one)."""
    room = request.app[ROOMS].get(request.match_info["room"])
    first_kept = room.first_kept
    since = _whole(request, "since", first_kept - 1)
    limit = _whole(request, "limit", PAGE_MAX_STROKES)
    if not 1 <= limit <= PAGE_MAX_STROKES:
        raise ProblemError(400, f"limit must be from 1 to {PAGE_MAX_STROKES}",
                           errors=[{"field": "limit", "message": "out of range"}])
    if since + 1 < first_kept:
        raise ProblemError(410, f"strokes before {first_kept} are no longer kept: resume with "
                                f"since={first_kept - 1}", first_kept=first_kept)
    fields = {"room": room.id, "participants": room.participants(), "first_kept": first_kept,
              "last_seq": room.last_seq, "next_since": max(since, room.last_seq), "more": False}
    page = room.page(since, limit, PAGE_MAX_BYTES - len(json.dumps(fields)) - len(', "strokes": []'))
    next_since = page[-1][0] if page else since
    more = next_since < room.last_seq
    head = json.dumps({**fields, "next_since": next_since, "more": more})  # no longer than before
    body = head[:-1] + ', "strokes": [' + ",".join(text for _, text in page) + "]}"
    link = f'</api/collab/{room.id}?since={next_since}&limit={limit}>; rel="next"'
    headers = {"Link": link} if more else {}
    return web.Response(text=body, content_type="application/json", headers=headers)


@routes.get("/ws/collab")
@websocket_route
async def collab_ws(request: web.Request) -> web.WebSocketResponse:
    """Join a whiteboard room: cursors relayed live, strokes stored and numbered for everyone."""
    rooms = request.app[ROOMS]
    room = rooms.get(request.query.get("room"))
    name, errors = check_name(request.query.get("name"))
    if errors:
        raise ProblemError(422, f"name: {errors[0]['message']}", errors=errors)
    if name is None:  # check_name gives either a name or its errors
        raise RuntimeError("check_name gave neither a name nor errors")
    room.joining += 1  # in use from now on: nobody else's traffic can forget it mid-handshake
    try:
        ws = await accept(request, compress=False, autoclose=False)
    finally:
        room.joining -= 1
    box = Outbox(request, ws, reason=lambda: (f"too slow: GET /api/collab/{room.id}?since=N "
                                              "loads the strokes you missed"))
    name = room.free_name(name)  # the welcome's "you" says which name this socket got
    room.sockets[ws] = name
    try:
        box.send(_welcome(room, name))
        await room.send({"type": "join", "name": name, "ts": time.time()}, skip=ws)
        async for msg in ws:
            if box.state != "open":
                continue  # being closed as a slow consumer: read until its Close, not acted on
            if msg.type is WSMsgType.TEXT:
                await _on_message(rooms, room, ws, name, msg.data)
            elif msg.type is WSMsgType.BINARY:
                await _error(ws, "send JSON text, not binary")
    finally:
        room.sockets.pop(ws, None)
        await room.send({"type": "leave", "name": name, "ts": time.time()})
        await box.finish()
    return ws


def _welcome(room: Room, name: str) -> str:
    """The welcome: who is here and the newest strokes that fit in WELCOME_MAX_BYTES in all."""
    fields = {"type": "welcome", "you": name, "participants": room.participants(),
              "first_kept": room.first_kept, "last_seq": room.last_seq, "older": len(room.strokes)}
    texts = room.newest(WELCOME_MAX_BYTES - len(json.dumps(fields)) - len(', "strokes": []'))
    head = json.dumps({**fields, "older": len(room.strokes) - len(texts)})  # no longer than before
    return head[:-1] + ', "strokes": [' + ",".join(texts) + "]}"


async def _on_message(rooms: Rooms, room: Room, ws: web.WebSocketResponse, name: str, raw: str) -> None:
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
        if not isinstance(color, str) or not COLOR.fullmatch(color):
            return await _error(ws, 'color must look like "#1f77b4"')
        room.last_seq += 1
        text = json.dumps({"type": "stroke", "seq": room.last_seq, "name": name,
                           "points": points, "color": color,
                           "ts": time.time()}, separators=(",", ":"))
        rooms.added(room.add(text))
        return await room.send(text)
    await _error(ws, '"type" must be "cursor" or "stroke"')


async def _error(ws: web.WebSocketResponse, detail: str) -> None:
    box = outbox(ws)
    if box is not None:
        box.send(json.dumps({"type": "error", "detail": detail}))


def setup(app: web.Application) -> None:
    app[ROOMS] = Rooms()
    app.add_routes(routes)


_STROKE: dict[str, Any] = {"type": "object", "properties": {
    "seq": {"type": "integer"}, "name": {"type": "string"}, "color": {"type": "string"},
    "points": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
    "ts": {"type": "number"}}}
_ROOM_PARAM = {"name": "room", "in": "path", "required": True,
               "schema": {"type": "string", "pattern": ROOM_ID.pattern}}
_PROBLEM = {"$ref": "#/components/responses/Problem"}
_ROOM_SCHEMA = {"type": "object", "properties": {
    "room": {"type": "string"}, "participants": {"type": "array", "items": {"type": "string"}},
    "first_kept": {"type": "integer"}, "last_seq": {"type": "integer"},
    "strokes_kept": {"type": "integer"}, "bytes": {"type": "integer"}}}
_MINE = {"description": ("Class server: this student already made as many rooms as one "
                         "identity may (Retry-After)"),
         "content": {"application/problem+json": {"schema": {"type": "object"}}}}
_FULL = {"description": f"All {MAX_ROOMS} rooms have someone in them (Retry-After)",
         "headers": {"Retry-After": {"schema": {"type": "integer"}}},
         "content": {"application/problem+json": {"schema": {"type": "object"}}}}
OPENAPI_PATHS = {
    "/api/collab": {
        "get": {
            "summary": "How many whiteboard rooms, their bytes and the bounds",
            "operationId": "collabRoomsGet",
            "responses": {"200": {"description": f"Counts, and the {LIST_MAX} most recently used rooms",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}},
        },
        "post": {
            "summary": "Create a whiteboard room with a name the server picks",
            "operationId": "collabRoomsPost",
            "responses": {"201": {"description": "The new room (Location names it)",
                                  "content": {"application/json": {"schema": _ROOM_SCHEMA}}},
                          "429": _MINE, "503": _FULL},
        },
    },
    "/api/collab/{room}": {
        "put": {
            "summary": "Create the room with this name (201), or find it there (200, unchanged)",
            "operationId": "collabRoomPut", "parameters": [_ROOM_PARAM],
            "responses": {"200": {"description": "It existed already",
                                  "content": {"application/json": {"schema": _ROOM_SCHEMA}}},
                          "201": {"description": "Created",
                                  "content": {"application/json": {"schema": _ROOM_SCHEMA}}},
                          "400": _PROBLEM, "429": _MINE, "503": _FULL},
        },
        "get": {
            "summary": "A whiteboard room: participants and one page of the strokes after ?since=SEQ",
            "operationId": "collabRoomGet",
            "parameters": [
                _ROOM_PARAM,
                {"name": "since", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                 "description": "Strokes after this SEQ (without it: from the oldest kept one)"},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                 "description": f"At most this many strokes (1-{PAGE_MAX_STROKES}; also at most "
                                f"{PAGE_MAX_BYTES} bytes of them)"},
            ],
            "responses": {
                "200": {"description": "The room and one page of strokes (Link rel=next if more)",
                        "content": {"application/json": {"schema": {
                            "type": "object", "properties": {
                                "room": {"type": "string"},
                                "participants": {"type": "array", "items": {"type": "string"}},
                                "first_kept": {"type": "integer"}, "last_seq": {"type": "integer"},
                                "next_since": {"type": "integer"}, "more": {"type": "boolean"},
                                "strokes": {"type": "array", "items": _STROKE}}}}}},
                "400": _PROBLEM, "404": _PROBLEM, "410": _PROBLEM,
            },
        },
    },
}

ASYNCAPI_CHANNELS = {
    "collabWebSocket": {
        "address": "/ws/collab",
        "title": "A shared whiteboard with live cursors",
        "description": "Join an existing room (PUT /api/collab/{room} creates it; 404 before the "
                       "upgrade if there is none) with ?room=R&name=N. Cursors are relayed to the "
                       "others; strokes are numbered by the server and sent to everyone, so every "
                       "board replays one order. The welcome holds the newest strokes (at most "
                       f"{WELCOME_MAX_BYTES} bytes); GET /api/collab/{{room}}?since= pages the rest.",
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
                "first_kept": {"type": "integer"}, "last_seq": {"type": "integer"},
                "older": {"type": "integer"}, "strokes": {"type": "array"}}}},
            "presence": {"name": "presence", "payload": {"type": "object", "properties": {
                "type": {"enum": ["join", "leave"]}, "name": {"type": "string"}}}},
            "error": {"name": "error", "payload": {"type": "object", "properties": {
                "type": {"const": "error"}, "detail": {"type": "string"}}}},
        },
        "receives": ["cursor", "stroke"],
        "sends": ["welcome", "cursor", "stroke", "presence", "error"],
    }
}
