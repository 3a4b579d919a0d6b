"""Route family "echo": the smallest possible REST and WebSocket exchanges, for latency work, and
`/api/cacheable`, one answer whose caching headers the query chooses, for lesson 01's caches.

`GET /api/cacheable?max_age=S[&s_maxage=S][&scope=public|private][&must_revalidate=1]
[&stale_while_revalidate=S]` answers `{"version", "user", "cache_control"}` (JSON, or CSV with
`Accept: text/csv`, so `Vary: Accept`) with that `Cache-Control`, a strong `ETag` and 304 for a
matching `If-None-Match`. `user` is the request's `user` cookie: a per-user answer, the case
`private` exists for. The lab counts every request it answers here (`GET /api/cacheable/stats`,
`no-store`), which is how lesson 01 sees which requests a cache kept from the lab;
`POST /api/cacheable/version` changes the resource (the version goes up by one).
"""

from __future__ import annotations

import hashlib
import json

from aiohttp import WSMsgType, web

from labkit.server.keys import CONFIG
from labkit.server.problem import ProblemError
from labkit.server.validate import query_integer
from labkit.server.websocket import accept
from labkit.streaming.sockets import send_message

from .core import websocket_route

routes = web.RouteTableDef()

LARGEST_SIZE_READ = 10**18 - 1
"""Largest ?size= read as a number (then refused with 413 when above the body limit)."""
CHUNK = b"x" * 65536
"""GET /api/echo sends its bytes in chunks of this one buffer: a client that reads slowly holds
at most a chunk or two of the lab's memory, however large the answer it asked for."""


def _size(request: web.Request) -> int:
    """?size= in plain decimal digits (422 otherwise); above the lab's body limit: 413."""
    size = query_integer(request.query.get("size", "0"), "size", 0, LARGEST_SIZE_READ)
    limit = request.app[CONFIG].max_body
    if size > limit:
        raise ProblemError(413, f"size={size} is above this lab's limit of {limit} bytes")
    return size


@routes.get("/api/echo")
async def echo_get(request: web.Request) -> web.StreamResponse:
    """Answer with ?size=N bytes (default 0)."""
    size = _size(request)
    if size <= len(CHUNK):
        return web.Response(body=CHUNK[:size], content_type="application/octet-stream")
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = size
    await response.prepare(request)
    view = memoryview(CHUNK)
    for start in range(0, size if request.method != "HEAD" else 0, len(CHUNK)):
        await response.write(view[: min(len(CHUNK), size - start)])  # waits while the peer lags
    await response.write_eof()
    return response


@routes.post("/api/echo")
async def echo_post(request: web.Request) -> web.Response:
    """Answer with the request body, same Content-Type."""
    body = await request.read()
    return web.Response(body=body, content_type=request.content_type or "application/octet-stream")


@routes.get("/ws/echo")
@websocket_route
async def ws_echo(request: web.Request) -> web.WebSocketResponse:
    """Echo every text and binary message as it came."""
    ws = await accept(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
            await send_message(ws, msg.data)
    return ws


CACHEABLE = web.AppKey("cacheable", dict)
"""The cacheable answer's version and the lab's counts of the requests it answered."""
LONGEST_AGE_S = 86_400


def _cache_control(request: web.Request) -> str:
    """The Cache-Control the query asks for (422 for values out of range)."""
    q = request.query
    parts = []
    scope = q.get("scope", "")
    if scope not in ("", "public", "private"):
        raise ProblemError(422, f"scope must be public or private, got {scope[:50]!r}",
                           errors=[{"field": "scope", "message": "public or private"}])
    if scope:
        parts.append(scope)
    parts.append(f"max-age={query_integer(q.get('max_age', '0'), 'max_age', 0, LONGEST_AGE_S)}")
    for name, directive in (("s_maxage", "s-maxage"),
                            ("stale_while_revalidate", "stale-while-revalidate")):
        if name in q:
            parts.append(f"{directive}={query_integer(q[name], name, 0, LONGEST_AGE_S)}")
    if query_integer(q.get("must_revalidate", "0"), "must_revalidate", 0, 1):
        parts.append("must-revalidate")
    return ", ".join(parts)


@routes.get("/api/cacheable")
async def cacheable(request: web.Request) -> web.Response:
    """One answer with the Cache-Control the query asks for (JSON or CSV, ETag, Vary: Accept)."""
    from .rest import CSV, JSON, negotiate  # the notes' content negotiation, the same 406

    state = request.app[CACHEABLE]
    cache_control = _cache_control(request)
    media = negotiate(request, (JSON, CSV))
    user = request.cookies.get("user")
    if media == CSV:
        body = f"version,user\r\n{state['version']},{user or ''}\r\n".encode()
    else:
        body = json.dumps({"version": state["version"], "user": user,
                           "cache_control": cache_control}).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
    headers = {"Cache-Control": cache_control, "ETag": etag, "Vary": "Accept"}
    state["requests"] += 1
    if request.if_none_match is not None and any(t.value == etag.strip('"')
                                                   for t in request.if_none_match):
        state["not_modified"] += 1
        return web.Response(status=304, headers=headers)
    state["ok"] += 1
    return web.Response(body=body, content_type=media, charset="utf-8", headers=headers)


@routes.get("/api/cacheable/stats")
async def cacheable_stats(request: web.Request) -> web.Response:
    """How many requests for /api/cacheable this lab answered (200 and 304), and the version."""
    counts: dict = request.app[CACHEABLE]
    return web.json_response(dict(counts), headers={"Cache-Control": "no-store"})


@routes.post("/api/cacheable/version")
async def cacheable_version(request: web.Request) -> web.Response:
    """Change the cacheable answer: its version goes up by one."""
    state = request.app[CACHEABLE]
    state["version"] += 1
    return web.json_response({"version": state["version"]}, headers={"Cache-Control": "no-store"})


def setup(app: web.Application) -> None:
    app[CACHEABLE] = {"version": 1, "requests": 0, "ok": 0, "not_modified": 0}
    app.add_routes(routes)


OPENAPI_PATHS = {
    "/api/echo": {
        "get": {
            "summary": "Answer with N bytes",
            "operationId": "echoGet",
            "parameters": [
                {
                    "name": "size",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 0, "maximum": 1048576, "default": 0},
                    "description": "Bytes in the answer (at most the lab's body limit, 1 MiB)",
                }
            ],
            "responses": {
                "200": {
                    "description": "N bytes",
                    "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                },
                "413": {"$ref": "#/components/responses/Problem"},
                "422": {"$ref": "#/components/responses/Problem"},
            },
        },
        "post": {
            "summary": "Answer with the request body",
            "operationId": "echoPost",
            "requestBody": {"content": {"*/*": {"schema": {}}}},
            "responses": {
                "200": {"description": "The same body", "content": {"*/*": {"schema": {}}}},
                "413": {"$ref": "#/components/responses/Problem"},
            },
        },
    }
}

_AGE = {"type": "integer", "minimum": 0, "maximum": LONGEST_AGE_S}
_NO_STORE = {"Cache-Control": {"schema": {"type": "string", "const": "no-store"}}}
_CACHEABLE_BODY = {"type": "object", "required": ["version", "user", "cache_control"],
                   "additionalProperties": False,
                   "properties": {"version": {"type": "integer", "minimum": 1},
                                  "user": {"type": ["string", "null"],
                                           "description": "the request's `user` cookie"},
                                  "cache_control": {"type": "string"}}}
OPENAPI_PATHS["/api/cacheable"] = {
    "get": {
        "summary": "One answer with the Cache-Control the query asks for",
        "description": "For lesson 01's caches: JSON or CSV (Vary: Accept), a strong ETag, 304 "
                       "for a matching If-None-Match; `user` comes from the `user` cookie (a "
                       "per-user answer). The lab counts each request (GET /api/cacheable/stats).",
        "operationId": "cacheableGet",
        "parameters": [
            {"name": "max_age", "in": "query", "schema": {**_AGE, "default": 0}},
            {"name": "s_maxage", "in": "query", "schema": _AGE},
            {"name": "stale_while_revalidate", "in": "query", "schema": _AGE},
            {"name": "scope", "in": "query", "schema": {"enum": ["public", "private"]}},
            {"name": "must_revalidate", "in": "query",
             "schema": {"type": "integer", "enum": [0, 1], "default": 0}},
            {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}},
            {"name": "user", "in": "cookie", "schema": {"type": "string"}},
        ],
        "responses": {
            "200": {"description": "The answer",
                    "headers": {name: {"schema": {"type": "string"}}
                                for name in ("Cache-Control", "ETag", "Vary")},
                    "content": {"application/json": {"schema": _CACHEABLE_BODY},
                                "text/csv": {"schema": {"type": "string"}}}},
            "304": {"description": "Not modified: the client's copy is still this answer"},
            "406": {"$ref": "#/components/responses/Problem"},
            "422": {"$ref": "#/components/responses/Problem"},
        },
    }
}
OPENAPI_PATHS["/api/cacheable/stats"] = {
    "get": {
        "summary": "How many requests for /api/cacheable this lab answered",
        "operationId": "cacheableStats",
        "responses": {"200": {"description": "The counts (never cached)", "headers": _NO_STORE,
                              "content": {"application/json": {"schema": {
                                  "type": "object",
                                  "required": ["version", "requests", "ok", "not_modified"],
                                  "properties": {name: {"type": "integer", "minimum": 0}
                                                 for name in ("version", "requests", "ok",
                                                              "not_modified")}}}}}},
    }
}
OPENAPI_PATHS["/api/cacheable/version"] = {
    "post": {
        "summary": "Change the cacheable answer (its version goes up by one)",
        "operationId": "cacheableNewVersion",
        "responses": {"200": {"description": "The new version", "headers": _NO_STORE,
                              "content": {"application/json": {"schema": {
                                  "type": "object", "required": ["version"],
                                  "properties": {"version": {"type": "integer", "minimum": 1}}}}}}},
    }
}

ASYNCAPI_CHANNELS = {
    "echo": {
        "address": "/ws/echo",
        "title": "Echo",
        "description": "Every text or binary message comes back as it was sent.",
        "messages": {
            "text": {"name": "text", "summary": "A text frame (UTF-8)", "contentType": "text/plain",
                     "payload": {"type": "string"}},
            "binary": {"name": "binary", "summary": "A binary frame",
                       "contentType": "application/octet-stream",
                       "payload": {"type": "string", "contentEncoding": "binary"}},
        },
        "bindings": {"ws": {"method": "GET"}},
        "receives": ["text", "binary"],
        "sends": ["text", "binary"],
    }
}
