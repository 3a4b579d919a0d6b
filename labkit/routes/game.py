"""Route family "game": Connect Four with a server-authoritative state, over WebSocket and REST.

The server holds the only true board. Players send moves; the server checks each one, applies it
and tells everybody (players and spectators) the new state, so every screen shows the same board.
Moves that arrive at the same time are applied in the order the server's loop reads them: the
second one is judged against the board the first one made (usually "not your turn").

A game exists once someone creates it; reading, joining or playing one that does not exist is 404
(a mistyped game id is an error you see, not an empty game of your own).

- `PUT /api/games/{game}`: create the game with that id (201), or find it already there (200,
  nothing changes): idempotent, so both players may PUT the id they agreed on before joining.
  `POST /api/games` creates a game with an id the server picks (201, `Location`).
- `WS /ws/game?game=G[&role=play|watch][&name=N][&seat=X|O]`: join an existing game (404 before
  the upgrade if there is none). A player takes a free seat (or the one asked for); a spectator
  (`role=watch`) only receives. Send {"type": "move", "column": C, "id": any}; receive {"type":
  "welcome", "seat", "state"}, {"type": "state", "state", "move", "ts"} after every change
  (broadcast to everyone in the game) and {"type": "error", "detail", "id"} for a refused move (the
  connection stays open, nothing changes).
- `GET /api/games/{game}`: the state (an `ETag` of its version; `If-None-Match` gives 304), for
  pollers.
- `POST /api/games/{game}/seats` {"name"}: 201 {"seat", "token"}: a seat for a REST player.
- `POST /api/games/{game}/moves` {"seat", "token", "column"}: 201 with the new state; 409 when it
  is not that seat's turn, the column is full or the game is over; 403 for a wrong token.
- `GET /api/games`: how many games there are, how many are in use, and the bound.

The store is bounded: at most MAX_GAMES games. Creating one more forgets the least recently used
game that is not in use; a game is in use while a socket follows it (player or spectator) or a REST
player holds a seat and the game was used in the last GAME_IDLE_S seconds, so nobody else's
traffic can evict a game two players are in. When every game is in use, creating answers 503 with
`Retry-After` (full for now, not for good: games empty as players leave; 507 would say the server
cannot store it at all).

The state is {"game", "version", "board" (6 rows of 7 cells, row 0 at the top, "" / "X" / "O"),
"turn", "winner" ("X", "O", "draw" or null), "seats", "moves", "spectators"}. `version` counts
changes (moves and seats), so a poller can tell "nothing new" from "something new".

Size: longer than 500 lines because the rules, the bounded store of games, the REST and WebSocket
routes and their OpenAPI and AsyncAPI documents are one wire contract and change together.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import time
from collections import OrderedDict

from aiohttp import WSMsgType, web

from labkit.server import cors
from labkit.server.access import PRINCIPAL, ROLE
from labkit.server.problem import ProblemError
from labkit.server.validate import (
    CONTROL_CHARS,
    NOT_BLANK,
    load_json,  # the lab's one JSON reader (depth-limited)
)
from labkit.server.websocket import accept
from labkit.streaming.sockets import Outbox, outbox

from .core import websocket_route
from .feed import JSON_BODY_ERRORS, read_json_object

ROWS, COLUMNS = 6, 7
SEATS = ("X", "O")
MAX_IN_USE_PER_IDENTITY = 20
"""Games in use one student identity may have made (class server); the instructor has no bound."""
MAX_GAMES = 1000
"""Games kept at once (each a few KB). One more forgets the least recently used game not in use;
when all are in use, creating answers 503 with Retry-After (RETRY_AFTER_S)."""
GAME_IDLE_S = 900.0
"""A game whose seats are held by REST players (no socket) stays in use this long after its last
request (a poll, a seat, a move); after that it may be forgotten to make room for a new one."""
RETRY_AFTER_S = 10
"""Retry-After of the 503 when every game is in use."""
LIST_MAX = 50
"""Games listed by GET /api/games (the most recently used); the counts cover all of them."""
MAX_NAME = 32
NAME_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": NOT_BLANK,
               "not": {"pattern": CONTROL_CHARS},
               "description": f"1-{MAX_NAME} characters, not only spaces, no control characters"}
GAME_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class MoveRefused(Exception):
    """A move the rules do not allow; the message says why."""


class Game:
    """One Connect Four match: board, turn, seats, and the sockets that follow it."""

    creator: str | None = None
    """The student identity that made it (None: the instructor, or a lab of one's own)."""

    def __init__(self, game_id: str):
        self.id = game_id
        self.board = [[""] * COLUMNS for _ in range(ROWS)]
        self.turn = "X"
        self.winner: str | None = None
        self.version = 0
        self.moves: list[dict] = []
        self.seats: dict[str, str | None] = dict.fromkeys(SEATS)
        self.tokens: dict[str, str] = {}
        self.sockets: dict[web.WebSocketResponse, str | None] = {}  # socket -> seat (None: watcher)
        self.joining = 0  # handshakes under way
        self.last_used = time.monotonic()

    def in_use(self, now: float) -> bool:
        """Followed by a socket (or one joining), or seated by REST players active lately."""
        if self.sockets or self.joining:
            return True
        seated = any(v is not None for v in self.seats.values())
        return seated and now - self.last_used < GAME_IDLE_S

    def take_seat(self, name: str, wanted: str | None = None) -> str | None:
        """A free seat for `name` (the `wanted` one if free), or None when both are taken."""
        for seat in ((wanted,) if wanted else SEATS):
            if self.seats.get(seat) is None:
                self.seats[seat] = name
                self.version += 1
                return seat
        return None

    def leave(self, seat: str | None) -> None:
        if seat is not None and self.seats.get(seat) is not None:
            self.seats[seat] = None
            self.tokens.pop(seat, None)
            self.version += 1

    def play(self, seat: str, column) -> dict:
        """Drop `seat`'s disc in `column`; returns the move, or raises MoveRefused."""
        if isinstance(column, float) and column.is_integer():
            column = int(column)  # 3.0 is the integer 3 in JSON
        if isinstance(column, bool) or not isinstance(column, int) or not 0 <= column < COLUMNS:
            raise MoveRefused(f"column must be a whole number from 0 to {COLUMNS - 1}")
        if self.winner is not None:
            outcome = "a draw" if self.winner == "draw" else f"{self.winner} won"
            raise MoveRefused(f"the game is over ({outcome})")
        if seat != self.turn:
            raise MoveRefused(f"not your turn: {self.turn} plays next")
        row = next((r for r in range(ROWS - 1, -1, -1) if not self.board[r][column]), None)
        if row is None:
            raise MoveRefused(f"column {column} is full")
        self.board[row][column] = seat
        self.version += 1
        move = {"n": len(self.moves) + 1, "seat": seat, "column": column, "row": row}
        self.moves.append(move)
        if self._four_from(row, column):
            self.winner = seat
        elif len(self.moves) == ROWS * COLUMNS:
            self.winner = "draw"
        self.turn = "O" if seat == "X" else "X"
        return move

    def _four_from(self, row: int, column: int) -> bool:
        seat = self.board[row][column]
        for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
            run = 1
            for sign in (1, -1):
                r, c = row + sign * dr, column + sign * dc
                while 0 <= r < ROWS and 0 <= c < COLUMNS and self.board[r][c] == seat:
                    run += 1
                    r, c = r + sign * dr, c + sign * dc
            if run >= 4:
                return True
        return False

    def state(self) -> dict:
        return {
            "game": self.id, "version": self.version, "board": [row[:] for row in self.board],
            "turn": None if self.winner else self.turn, "winner": self.winner,
            "seats": dict(self.seats), "moves": len(self.moves),
            "spectators": sum(1 for seat in self.sockets.values() if seat is None),
        }

    async def broadcast(self, message: dict) -> None:
        """Hand `message` to the outbox of every socket following this game (players and
        spectators). Never waits for a member, so the order of changes is the order of the calls
        and one member that stopped reading delays nobody (its outbox closes it with 1008)."""
        text = json.dumps(message)
        for ws in list(self.sockets):
            box = outbox(ws)
            if box is not None:
                box.send(text)


class Games:
    """Every game of the lab, least recently used first."""

    def __init__(self) -> None:
        self.games: OrderedDict[str, Game] = OrderedDict()

    def get(self, game_id: str | None) -> Game:
        """The game called `game_id` (400 if malformed, 404 if there is none); marks it used."""
        game_id = check_game_id(game_id)
        game = self.games.get(game_id)
        if game is None:
            raise ProblemError(404, f"there is no game {game_id!r}: create it first "
                                    f"(PUT /api/games/{game_id})", game=game_id)
        self.games.move_to_end(game_id)
        game.last_used = time.monotonic()
        return game

    def create(self, game_id: str, creator: str | None = None) -> tuple[Game, bool]:
        """The game called `game_id`, made if new (True); 503 when MAX_GAMES games are all in use;
        429 when `creator` (a student's identity) already made MAX_IN_USE_PER_IDENTITY games that
        are still in use, so one token cannot hold every game."""
        game = self.games.get(game_id)
        if game is not None:
            return self.get(game_id), False
        if creator is not None:
            now = time.monotonic()
            held = sum(g.creator == creator and g.in_use(now) for g in self.games.values())
            if held >= MAX_IN_USE_PER_IDENTITY:
                raise ProblemError(429, f"you made {held} games that are still in use: finish or "
                                        "leave some first", headers={"Retry-After": str(RETRY_AFTER_S)})
        if len(self.games) >= MAX_GAMES:
            now = time.monotonic()
            idle = next((g for g in self.games.values() if not g.in_use(now)), None)
            if idle is None:
                raise ProblemError(503, f"all {MAX_GAMES} games are in use: try again later",
                                   headers={"Retry-After": str(RETRY_AFTER_S)})
            del self.games[idle.id]
        game = self.games[game_id] = Game(game_id)
        game.creator = creator
        return game, True

    def in_use(self) -> int:
        now = time.monotonic()
        return sum(g.in_use(now) for g in self.games.values())


def check_game_id(game_id) -> str:
    if not isinstance(game_id, str) or not GAME_ID.fullmatch(game_id):
        raise ProblemError(400, "game must be 1-40 letters, digits, '-' or '_'",
                           errors=[{"field": "game", "message": "malformed"}])
    return game_id


GAMES = web.AppKey("games", Games)
routes = web.RouteTableDef()


def student(request: web.Request) -> str | None:
    """The student identity making a request on a class server (None for the instructor and for
    a lab of one's own)."""
    return request.get(PRINCIPAL) if request.get(ROLE) == "student" else None


def game_for(request: web.Request, game_id: str | None) -> Game:
    """The existing game called `game_id` (400 for a malformed id, 404 if there is none)."""
    return request.app[GAMES].get(game_id)


def check_name(value) -> tuple[str | None, list[dict]]:
    """The trimmed name, or why it breaks NAME_SCHEMA (1-32 characters, not blank, no control
    characters): the same rules the OpenAPI and AsyncAPI documents state."""
    if not isinstance(value, str):
        return None, [{"field": "name", "message": "a string is required"}]
    if not re.search(NOT_BLANK, value) or len(value) > MAX_NAME or re.search(CONTROL_CHARS, value):
        why = f"1-{MAX_NAME} characters, not blank, no control characters"
        return None, [{"field": "name", "message": why}]
    return value.strip(), []


def _name(value) -> str:
    name, errors = check_name(value)
    if errors:
        raise ProblemError(422, f"name: {errors[0]['message']}", errors=errors)
    if name is None:  # check_name gives either a name or its errors
        raise RuntimeError("check_name gave neither a name nor errors")
    return name


def _state_response(game: Game, request: web.Request, status: int = 200, *,
                    conditional: bool = True) -> web.Response:
    etag = f'"{game.version}"'
    if conditional and status == 200 and request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers={"ETag": etag})
    return web.json_response(game.state(), status=status, headers={"ETag": etag, "Cache-Control": "no-cache"})


@routes.get("/api/games")
async def games_get(request: web.Request) -> web.Response:
    """How many games, how many in use, the bound; the most recently used games."""
    games = request.app[GAMES]
    newest = list(itertools.islice(reversed(games.games.values()), LIST_MAX))
    return web.json_response({"count": len(games.games), "in_use": games.in_use(), "max_games": MAX_GAMES,
                              "games": [{"game": g.id, "seats": dict(g.seats), "moves": len(g.moves),
                                         "sockets": len(g.sockets)} for g in newest]})


@routes.post("/api/games")
async def games_post(request: web.Request) -> web.Response:
    """Create a game with an id the server picks: 201 with its state and Location."""
    game, _ = request.app[GAMES].create(f"game-{secrets.token_hex(6)}", student(request))
    response = _state_response(game, request, status=201)
    response.headers["Location"] = f"/api/games/{game.id}"
    return response


@routes.put("/api/games/{game}")
async def game_put(request: web.Request) -> web.Response:
    """Create the game with this id (201), or find it there already (200, unchanged)."""
    game, created = request.app[GAMES].create(check_game_id(request.match_info["game"]),
                                              student(request))
    response = _state_response(game, request, status=201 if created else 200, conditional=False)
    if created:
        response.headers["Location"] = f"/api/games/{game.id}"
    return response


@routes.get("/api/games/{game}")
async def game_get(request: web.Request) -> web.Response:
    """The game's state; If-None-Match with its ETag gives 304 while nothing changed."""
    return _state_response(game_for(request, request.match_info["game"]), request)


@routes.post("/api/games/{game}/seats")
async def seat_post(request: web.Request) -> web.Response:
    """Take a free seat as a REST player: {"name"} -> 201 {"seat", "token"}; 409 when full."""
    game = game_for(request, request.match_info["game"])
    body = await read_json_object(request)
    name = _name(body["name"]) if "name" in body else "player"
    seat = game.take_seat(name)
    if seat is None:
        raise ProblemError(409, "both seats are taken: watch instead (GET this game, or role=watch)")
    game.tokens[seat] = token = secrets.token_urlsafe(12)
    await game.broadcast({"type": "state", "state": game.state(), "move": None, "ts": time.time()})
    return web.json_response({"seat": seat, "token": token, "state": game.state()}, status=201)


@routes.post("/api/games/{game}/moves")
async def move_post(request: web.Request) -> web.Response:
    """Play {"seat", "token", "column"}: 201 with the new state; 409 if the rules refuse it."""
    game = game_for(request, request.match_info["game"])
    body = await read_json_object(request)
    seat = body.get("seat")
    if seat not in SEATS:
        raise ProblemError(422, 'seat must be "X" or "O"', errors=[{"field": "seat", "message": "invalid"}])
    token = body.get("token")
    held = game.tokens.get(seat, "").encode()
    if not isinstance(token, str) or not secrets.compare_digest(token.encode(), held) or not held:
        raise ProblemError(403, f"that token does not hold seat {seat} in this game")
    try:
        move = game.play(seat, body.get("column"))
    except MoveRefused as exc:
        status = 422 if "column must" in str(exc) else 409
        raise ProblemError(status, str(exc), state=game.state()) from None
    await game.broadcast({"type": "state", "state": game.state(), "move": move, "ts": time.time()})
    return _state_response(game, request, status=201)


@routes.get("/ws/game")
@websocket_route
async def game_ws(request: web.Request) -> web.WebSocketResponse:
    """Play (a free seat) or watch (?role=watch) one game; every change is pushed to everyone."""
    game = game_for(request, request.query.get("game"))
    role = request.query.get("role", "play")
    if role not in ("play", "watch"):
        raise ProblemError(422, 'role must be "play" or "watch"',
                           errors=[{"field": "role", "message": "invalid"}])
    name = _name(request.query["name"]) if "name" in request.query else "player"
    wanted = request.query.get("seat")
    if wanted is not None and wanted not in SEATS:
        raise ProblemError(422, 'seat must be "X" or "O"', errors=[{"field": "seat", "message": "invalid"}])
    origin = request.headers.get("Origin")
    if origin is not None and not cors.allowed(request, origin):  # before a seat is touched
        raise ProblemError(403, f"Origin {origin[:100]!r} is not allowed to open a WebSocket here.")
    seat = game.take_seat(name, wanted) if role == "play" else None
    if role == "play" and seat is None:
        raise ProblemError(409, "that seat is taken (or both are): join with role=watch to follow the game")
    game.joining += 1  # in use from now on: nobody else's traffic can forget it mid-handshake
    try:
        ws = await accept(request, compress=False, autoclose=False)
    except BaseException:
        game.leave(seat)
        raise
    finally:
        game.joining -= 1
    box = Outbox(request, ws, reason=lambda: f"too slow: GET /api/games/{game.id} gives the state")
    game.sockets[ws] = seat
    game.version += seat is None  # a new spectator changes the state too (its count)
    try:
        box.send(json.dumps({"type": "welcome", "seat": seat, "name": name, "state": game.state()}))
        await game.broadcast({"type": "state", "state": game.state(), "move": None, "ts": time.time()})
        async for msg in ws:
            if box.state != "open":
                continue  # being closed as a slow consumer: read until its Close, not acted on
            if msg.type is WSMsgType.TEXT:
                await _on_message(game, ws, seat, msg.data)
            elif msg.type is WSMsgType.BINARY:
                box.send(json.dumps({"type": "error", "detail": "send JSON text, not binary"}))
    finally:
        game.sockets.pop(ws, None)
        game.version += seat is None
        game.leave(seat)
        await game.broadcast({"type": "state", "state": game.state(), "move": None, "ts": time.time()})
        await box.finish()
    return ws


async def _on_message(game: Game, ws: web.WebSocketResponse, seat: str | None, raw: str) -> None:
    try:
        msg = load_json(raw)
    except ValueError:
        msg = None
    ref = msg.get("id") if isinstance(msg, dict) else None
    if not isinstance(msg, dict) or msg.get("type") != "move":
        return await _error(ws, 'send JSON such as {"type": "move", "column": 3}', ref)
    if seat is None:
        return await _error(ws, "spectators watch; they cannot move", ref)
    try:
        move = game.play(seat, msg.get("column"))  # checked and applied with no await between
    except MoveRefused as exc:
        return await _error(ws, str(exc), ref)
    await game.broadcast({"type": "state", "state": game.state(), "move": {**move, "id": ref},
                          "ts": time.time()})


async def _error(ws: web.WebSocketResponse, detail: str, ref) -> None:
    box = outbox(ws)
    if box is not None:
        box.send(json.dumps({"type": "error", "detail": detail, "id": ref}))


def setup(app: web.Application) -> None:
    app[GAMES] = Games()
    app.add_routes(routes)


_GAME_PARAM = {"name": "game", "in": "path", "required": True,
               "schema": {"type": "string", "pattern": GAME_ID.pattern}}
STATE_SCHEMA = {
    "type": "object",
    "required": ["game", "version", "board", "turn", "winner", "seats", "moves", "spectators"],
    "properties": {
        "game": {"type": "string"}, "version": {"type": "integer", "minimum": 0},
        "board": {"type": "array", "minItems": ROWS, "maxItems": ROWS, "items": {
            "type": "array", "minItems": COLUMNS, "maxItems": COLUMNS,
            "items": {"enum": ["", "X", "O"]}}},
        "turn": {"enum": ["X", "O", None]}, "winner": {"enum": ["X", "O", "draw", None]},
        "seats": {"type": "object", "properties": {s: {"type": ["string", "null"]} for s in SEATS}},
        "moves": {"type": "integer", "minimum": 0}, "spectators": {"type": "integer", "minimum": 0},
    },
}
_PROBLEM = {"$ref": "#/components/responses/Problem"}
_MINE = {"description": ("Class server: this student already made as many games still in use as one "
                         "identity may (Retry-After)"),
         "content": {"application/problem+json": {"schema": {"type": "object"}}}}
_FULL = {"description": f"All {MAX_GAMES} games are in use (Retry-After)",
         "headers": {"Retry-After": {"schema": {"type": "integer"}}},
         "content": {"application/problem+json": {"schema": {"type": "object"}}}}
_STATE = {"description": "The state", "headers": {"ETag": {"schema": {"type": "string"}}},
          "content": {"application/json": {"schema": STATE_SCHEMA}}}
OPENAPI_PATHS = {
    "/api/games": {
        "get": {
            "summary": "How many games, how many are in use, and the bound",
            "operationId": "gamesGet",
            "responses": {"200": {"description": f"Counts, and the {LIST_MAX} most recently used games",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}},
        },
        "post": {
            "summary": "Create a game with an id the server picks",
            "operationId": "gamesPost",
            "responses": {"201": {**_STATE, "description": "The new game (Location names it)"},
                          "429": _MINE, "503": _FULL},
        },
    },
    "/api/games/{game}": {
        "put": {
            "summary": "Create the game with this id (201), or find it there (200, unchanged)",
            "operationId": "gamePut", "parameters": [_GAME_PARAM],
            "responses": {"200": {**_STATE, "description": "It existed already"},
                          "201": {**_STATE, "description": "Created"},
                          "400": _PROBLEM, "429": _MINE, "503": _FULL},
        },
        "get": {
            "summary": "The game's state (poll it; If-None-Match gives 304 while nothing changed)",
            "operationId": "gameGet", "parameters": [_GAME_PARAM],
            "responses": {"200": _STATE,
                          "304": {"description": "Not changed since the ETag you sent"},
                          "400": _PROBLEM, "404": _PROBLEM},
        },
    },
    "/api/games/{game}/seats": {"post": {
        "summary": "Take a free seat as a REST player", "operationId": "gameSeatPost",
        "parameters": [_GAME_PARAM],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"name": NAME_SCHEMA}}}}},
        "responses": {"201": {"description": "Your seat and the token that proves it",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      "404": _PROBLEM, "409": _PROBLEM, **JSON_BODY_ERRORS},
    }},
    "/api/games/{game}/moves": {"post": {
        "summary": "Play a move as a REST player", "operationId": "gameMovePost",
        "parameters": [_GAME_PARAM],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["seat", "token", "column"], "properties": {
                "seat": {"enum": list(SEATS)}, "token": {"type": "string"},
                "column": {"type": "integer", "minimum": 0, "maximum": COLUMNS - 1}}}}}},
        "responses": {"201": {"description": "The new state",
                              "content": {"application/json": {"schema": STATE_SCHEMA}}},
                      "403": _PROBLEM, "404": _PROBLEM, "409": _PROBLEM, **JSON_BODY_ERRORS},
    }},
}

ASYNCAPI_CHANNELS = {
    "gameWebSocket": {
        "address": "/ws/game",
        "title": "Connect Four: players and spectators",
        "description": "Join an existing game (PUT /api/games/{game} creates it; 404 before the "
                       "upgrade if there is none) with ?game=G and role=play (a free seat, or "
                       "?seat=X|O) or role=watch. Every change is broadcast to everyone in the "
                       "game as the new state.",
        "bindings": {"ws": {"query": {"type": "object", "required": ["game"], "properties": {
            "game": {"type": "string", "pattern": GAME_ID.pattern},
            "role": {"enum": ["play", "watch"]}, "seat": {"enum": list(SEATS)},
            "name": NAME_SCHEMA}}}},
        "messages": {
            "move": {"name": "move", "payload": {"type": "object", "required": ["type", "column"],
                                                 "properties": {"type": {"const": "move"},
                                                                "column": {"type": "integer"}, "id": {}}}},
            "welcome": {"name": "welcome", "payload": {"type": "object", "properties": {
                "type": {"const": "welcome"}, "seat": {"enum": ["X", "O", None]}, "state": STATE_SCHEMA}}},
            "state": {"name": "state", "payload": {"type": "object", "properties": {
                "type": {"const": "state"}, "state": STATE_SCHEMA, "move": {}, "ts": {"type": "number"}}}},
            "error": {"name": "error", "payload": {"type": "object", "properties": {
                "type": {"const": "error"}, "detail": {"type": "string"}, "id": {}}}},
        },
        "receives": ["move"],
        "sends": ["welcome", "state", "error"],
    }
}
