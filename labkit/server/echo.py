"""Route family "echo": the smallest possible REST and WebSocket exchanges, for latency work."""

from __future__ import annotations

from aiohttp import WSMsgType, web

from .core import websocket_route
from .keys import CONFIG
from .problem import ProblemError
from .websocket import accept

routes = web.RouteTableDef()


def _size(request: web.Request) -> int:
    raw = request.query.get("size", "0")
    try:
        size = int(raw)
    except ValueError:
        raise ProblemError(422, f"size must be a whole number of bytes, got {raw!r}",
                           errors=[{"field": "size", "message": "not an integer"}]) from None
    if size < 0:
        raise ProblemError(422, "size cannot be negative",
                           errors=[{"field": "size", "message": "must be >= 0"}])
    limit = request.app[CONFIG].max_body
    if size > limit:
        raise ProblemError(413, f"size={size} is above this lab's limit of {limit} bytes")
    return size


@routes.get("/api/echo")
async def echo_get(request: web.Request) -> web.Response:
    """Answer with ?size=N bytes (default 0)."""
    return web.Response(body=b"x" * _size(request), content_type="application/octet-stream")


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
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


def setup(app: web.Application) -> None:
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
