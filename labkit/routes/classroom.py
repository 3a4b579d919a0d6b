"""Route family "classroom": what a class server needs beyond the lessons' routes.

- `GET /api/clock`: the server's clock, read when the request arrived and when the answer left, so a
  client on another machine can estimate its clock offset (NTP's formula, see measure.clock_offset).
- `POST /api/classroom/join` (a student): exchange the class's join code for a personal token,
  so each kernel that joins is an identity of its own (`labkit.server.auth`); 201 {"token",
  "principal"}. Only the class's one shared join code is exchanged: the instructor's token, a
  personal token and a roster token (one `--token` per student) are answered as they are (200).
  Outside classroom mode there is nothing to exchange (404).
- `GET /api/classroom` (instructor): who is connected over which transport, how many bytes wait in
  each one's socket (the slowest readers have the most), and the events published per topic.
- `DELETE /api/chat/members/{name}` (instructor): remove whoever holds the name from the chat room:
  their WebSockets in the room are closed with 1008, and the identity may neither rejoin nor post
  (403) until the instructor allows it back with `POST /api/chat/members/{name}/allow`. It works
  for a name used only over REST as well: in a class a name belongs to an identity, online or not
  (`access.claim_chat_name`); outside classroom mode, to whoever is in the room under it.

Who may call what is decided by the access policy (`labkit/server/access.py`); here the routes only
do their work.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import WSCloseCode, web

from labkit.server.access import OWNERS, chat_identity
from labkit.server.auth import CONNECTIONS, PRINCIPAL, classroom, is_instructor, presented_token
from labkit.server.keys import CONFIG
from labkit.server.problem import ProblemError
from labkit.server.validate import name_keys
from labkit.streaming.hub import HUB

from .chat import MEMBERS

routes = web.RouteTableDef()


@routes.get("/api/clock")
async def clock(request: web.Request) -> web.Response:
    """The server's time.time() when the request arrived and when the answer was made (s)."""
    received = time.time()
    return web.json_response({"received_ts": received, "sent_ts": time.time()},
                             headers={"Cache-Control": "no-store"})


def _backlog(request: web.Request) -> int:
    transport = request.transport
    return transport.get_write_buffer_size() if transport is not None else 0


@routes.get("/api/classroom")
async def classroom_stats(request: web.Request) -> web.Response:
    """Open streams (who, transport, bytes waiting to be sent), chat members and events per topic.
    Streams are listed by the classroom middleware, so only a class server lists them; a lab of
    one's own answers `connections: null` (not counted, rather than an empty list that would read
    as "nobody is connected")."""
    now = time.time()
    connections = [
        {"principal": c["principal"], "role": c["role"], "transport": c["transport"],
         "path": c["path"], "name": c["name"], "peer": c["peer"],
         "connected_s": round(now - c["since"], 3), "backlog_bytes": _backlog(c["request"])}
        for c in request.app[CONNECTIONS].values()
    ] if classroom(request.app) else None
    topics = {name: {"published": stats["published"], "subscribers": stats["subscribers"]}
              for name, stats in request.app[HUB].stats().items()}
    return web.json_response({
        "ts": now, "classroom": classroom(request.app), "connections": connections,
        "chat_members": sorted({name for name, _ in request.app[MEMBERS].values()}),
        "topics": topics,
    }, headers={"Cache-Control": "no-store"})


async def _identity(request: web.Request, *, in_room: bool) -> tuple[str, list]:
    """(the identity holding the path's name, its sockets in the room); 404 when nobody holds it."""
    name = request.match_info["name"]
    members = request.app[MEMBERS]
    keys = name_keys(name) if name.strip() else frozenset()
    sockets = list({id(ws): ws for key, (_, ws) in members.items() if key in keys}.values())
    if classroom(request.app):
        holder = await asyncio.to_thread(request.app[OWNERS].name_holder, keys) if keys else None
    else:  # nobody holds a name while away: the identity is the name (of whoever is in the room)
        holder = chat_identity(request, name) if keys and (sockets or not in_room) else None
    if holder is None:
        raise ProblemError(404, f"nobody called {name[:40]!r} is in the room or holds that name")
    return holder, sockets


@routes.delete("/api/chat/members/{name}")
async def remove_member(request: web.Request) -> web.Response:
    """Remove whoever holds the name from the chat room: their WebSockets are closed with 1008 and
    they may not rejoin or post until allowed back; 204."""
    holder, sockets = await _identity(request, in_room=True)
    if holder == "instructor":
        raise ProblemError(409, "that name is the instructor's own")
    await asyncio.to_thread(request.app[OWNERS].set_removed, holder, True)
    members = request.app[MEMBERS]
    for ws in sockets:
        for key in [key for key, (_, other) in members.items() if other is ws]:
            del members[key]
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"removed by the instructor")
    return web.Response(status=204)


@routes.post("/api/chat/members/{name}/allow")
async def allow_member(request: web.Request) -> web.Response:
    """Let a removed member back into the chat room (they may join and post again); 204."""
    holder, _ = await _identity(request, in_room=False)
    await asyncio.to_thread(request.app[OWNERS].set_removed, holder, False)
    return web.Response(status=204)


@routes.post("/api/classroom/join")
async def join_personal(request: web.Request) -> web.Response:
    """Exchange the class join code (or any student token) for a personal token: a new identity."""
    import secrets

    from labkit.server.auth import PERSONAL, principal_of, token_hash

    if not classroom(request.app):
        raise ProblemError(404, "this lab is not a class server: there is no join code to exchange")
    presented = presented_token(request) or ""
    config = request.app[CONFIG]
    if is_instructor(request):  # the instructor keeps their own token (and role)
        return web.json_response({"token": presented, "principal": "instructor"})
    if len(config.student_tokens) != 1 or presented != config.student_tokens[0]:
        # only a class's one shared join code is exchanged: a personal token, or a token of a
        # roster (one --token per student), is its holder's identity already and stays as it is,
        # so nobody can mint identities from their own (a removed student stays removed)
        return web.json_response({"token": presented, "principal": request[PRINCIPAL]})
    token = secrets.token_urlsafe(18)
    principal = principal_of(token)
    stored = await asyncio.to_thread(request.app[OWNERS].add_personal, token_hash(token), principal)
    if not stored:
        raise ProblemError(507, "this class server has handed out all the personal tokens it keeps; "
                                "the instructor can start it with a new --db")
    request.app[PERSONAL][token_hash(token)] = principal
    return web.json_response({"token": token, "principal": principal}, status=201)


async def _load_personal_tokens(app: web.Application) -> None:
    from labkit.server.auth import PERSONAL

    if app.get(OWNERS) is not None:
        app[PERSONAL].update(await asyncio.to_thread(app[OWNERS].personal_tokens))


def setup(app: web.Application) -> None:
    app.add_routes(routes)
    app.on_startup.append(_load_personal_tokens)


_JSON = {"application/json": {"schema": {"type": "object"}}}
_PROBLEM = {"application/problem+json": {"schema": {"type": "object"}}}
_AUTH_ERRORS = {
    "401": {"description": "Classroom mode: no token, or a wrong one", "content": _PROBLEM},
    "403": {"description": "Classroom mode: only the instructor may do this", "content": _PROBLEM},
}
OPENAPI_PATHS = {
    "/api/classroom/join": {"post": {
        "summary": "Exchange the class join code for a personal token (one identity per kernel)",
        "operationId": "classroomJoin",
        "responses": {
            "200": {"description": "The caller's own token, unchanged (the instructor's, a personal "
                           "or a roster token: only the shared join code is exchanged)",
                    "content": _JSON},
            "201": {"description": "A personal token and the identity it stands for",
                    "content": {"application/json": {"schema": {
                        "type": "object", "required": ["token", "principal"],
                        "properties": {"token": {"type": "string"},
                                       "principal": {"type": "string"}}}}}},
            "404": {"description": "Not a class server", "content": _PROBLEM},
            "507": {"description": "No personal token left to hand out", "content": _PROBLEM},
            **_AUTH_ERRORS,
        },
    }},
    "/api/clock": {"get": {
        "summary": "The server's clock (for a client's clock-offset estimate)",
        "operationId": "clock",
        "responses": {"200": {"description": "received_ts and sent_ts, seconds", "content": {
            "application/json": {"schema": {"type": "object", "required": ["received_ts", "sent_ts"],
                                            "properties": {"received_ts": {"type": "number"},
                                                           "sent_ts": {"type": "number"}}}}}},
                      "401": _AUTH_ERRORS["401"]},
    }},
    "/api/classroom": {"get": {
        "summary": "Who is connected over which transport, and how far behind each one is",
        "operationId": "classroomStats",
        "responses": {"200": {"description": "Connections (null outside classroom mode: only a "
                                              "class server lists its streams), chat members, topics",
                              "content": _JSON},
                      **_AUTH_ERRORS},
    }},
    "/api/chat/members/{name}": {"delete": {
        "summary": "Remove a member from the chat room (instructor)",
        "operationId": "chatMemberRemove",
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"204": {"description": "Removed: their WebSocket was closed with 1008"},
                      "404": {"description": "No such member in the room", "content": _PROBLEM},
                      **_AUTH_ERRORS},
    }},
    "/api/chat/members/{name}/allow": {"post": {
        "summary": "Let a removed chat member back (instructor)",
        "operationId": "chatMemberAllow",
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"204": {"description": "They may join and post again"},
                      "404": {"description": "Nobody holds that name", "content": _PROBLEM},
                      **_AUTH_ERRORS},
    }},
}
