"""Route family "echo": the smallest possible REST and WebSocket exchanges, for latency work."""

from __future__ import annotations

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
