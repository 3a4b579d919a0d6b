"""Route family "rest_ws": the notes resource as request/response messages over one WebSocket.

`WS /ws/rest` takes JSON requests {"id", "method", "path", "body"?} and answers each with
{"id", "status", "body"} (or {"id", "status", "error"} with the problem details), carrying the same
notes operations as `/api/notes` with the same store, the same validation and size bounds, and the
same access policy (`access.require`), so both give the same results. The request `id` is the
client's correlation id: answers may be matched to requests by it.

What is *not* here, on purpose, because a WebSocket message has no standard for it: HTTP status
semantics that proxies and tools understand (the "status" member is only this protocol's
convention), caching and conditional requests (no ETag, no 304: every read carries the whole body),
content negotiation, and OpenAPI discovery (the message format is documented in AsyncAPI only).
"""

from __future__ import annotations

import asyncio
import json
import re

from aiohttp import WSMsgType, web

from labkit.server import access
from labkit.server.problem import ProblemError
from labkit.server.validate import load_json  # the lab's one JSON reader (depth-limited)
from labkit.server.websocket import accept
from labkit.streaming.sockets import send_message

from .core import websocket_route
from .rest import DEFAULT_PER_PAGE, MAX_PER_PAGE, NOTES, READ_ONLY, bounded, merge_patch, write_guarded

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ONE = re.compile(r"/api/notes/([0-9]{1,18})")
routes = web.RouteTableDef()


def _missing(nid: int) -> ProblemError:
    return ProblemError(404, f"There is no note {nid}.")


async def handle(request: web.Request, method: str, path: str, body) -> tuple[int, object]:
    """Run one notes operation for the sender of the WebSocket's handshake `request`; (status, body)
    as the REST route would answer (ProblemError raised for a refusal). Who may change or delete a
    note is the REST rule itself (`access.require`), and a note made here belongs to its sender
    as one made by REST does (`access.remember`)."""
    store = request.app[NOTES]
    match = ONE.fullmatch(path)
    if path == "/api/notes":
        if method == "GET":
            notes, total = await asyncio.to_thread(store.page, 0, min(DEFAULT_PER_PAGE, MAX_PER_PAGE))
            return 200, {"items": [n.as_dict() for n in notes], "total": total}
        if method == "POST":
            note = await write_guarded(store.create, bounded(request, body))
            await access.remember(request, "note", str(note.id))
            return 201, note.as_dict()
        raise ProblemError(405, f"{method} is not allowed on /api/notes", allow=["GET", "POST"])
    if match is None:
        raise ProblemError(404, f"No resource at {path[:100]!r}: use /api/notes or /api/notes/{{id}}.")
    nid = int(match.group(1))
    await access.require(request, "note", str(nid),
                         access.CHANGE if method in ("PUT", "PATCH", "DELETE") else access.READ)
    if method == "GET":
        note = await asyncio.to_thread(store.get, nid)
        if note is None:
            raise _missing(nid)
        return 200, note.as_dict()
    if method == "DELETE":
        if not await asyncio.to_thread(store.delete, nid, lambda current: None):
            raise _missing(nid)
        return 204, None
    if method in ("PUT", "PATCH"):
        if method == "PUT":
            fields = bounded(request, body)
            compute = lambda current: fields  # noqa: E731
        else:
            patch = {k: v for k, v in body.items() if k not in READ_ONLY} if isinstance(body, dict) else body
            compute = lambda current: bounded(request, merge_patch(current.fields(), patch))  # noqa: E731
        result = await write_guarded(store.update, nid, compute)
        if result is None:
            raise _missing(nid)
        return 200, result[0].as_dict()
    raise ProblemError(405, f"{method} is not allowed on a note", allow=["GET", "PUT", "PATCH", "DELETE"])


def _request(raw: str) -> tuple[object, str, str, object]:
    """(id, method, path, body) of a request message; ProblemError 400 when it is not one."""
    try:
        msg = load_json(raw)
    except (ValueError, RecursionError) as exc:
        raise ProblemError(400, f"not JSON the lab accepts ({exc}); send a JSON request such as "
                           '{"id": 1, "method": "GET", "path": "/api/notes"}') from None
    if not isinstance(msg, dict):
        raise ProblemError(400, "a request is a JSON object")
    method, path = msg.get("method"), msg.get("path")
    if method not in METHODS or not isinstance(path, str):
        raise ProblemError(400, f"method must be one of {', '.join(METHODS)} and path a string",
                           request_id=msg.get("id"))
    return msg.get("id"), method, path, msg.get("body")


@routes.get("/ws/rest")
@websocket_route
async def rest_over_websocket(request: web.Request) -> web.WebSocketResponse:
    """Answer notes requests sent as messages, one answer per request, in order."""
    ws = await accept(request, compress=False)
    async for msg in ws:
        if msg.type is WSMsgType.BINARY:
            await ws.close(code=1003, message=b"send JSON text requests")
            break
        if msg.type is not WSMsgType.TEXT:
            continue
        request_id = None
        try:
            request_id, method, path, body = _request(msg.data)
            status, answer = await handle(request, method, path, body)
            reply = {"id": request_id, "status": status, "body": answer}
        except ProblemError as exc:
            request_id = exc.extra.pop("request_id", request_id)
            reply = {"id": request_id, "status": exc.status,
                     "error": {"status": exc.status, "detail": exc.detail, **exc.extra}}
        await send_message(ws, json.dumps(reply, ensure_ascii=False))
    return ws


def setup(app: web.Application) -> None:
    app.add_routes(routes)


ASYNCAPI_CHANNELS = {
    "restOverWebSocket": {
        "address": "/ws/rest", "title": "The notes API as messages over one WebSocket",
        "description": "Requests {id, method, path, body}; one answer {id, status, body | error} per "
                       "request, in order. No ETag, no 304, no caching: every read carries the body.",
        "messages": {
            "request": {"name": "request", "payload": {"type": "object", "required": ["method", "path"],
                                                       "properties": {
                                                           "id": {}, "method": {"enum": list(METHODS)},
                                                           "path": {"type": "string"}, "body": {}}}},
            "response": {"name": "response", "payload": {"type": "object", "required": ["id", "status"],
                                                         "properties": {
                                                             "id": {}, "status": {"type": "integer"},
                                                             "body": {}, "error": {"type": "object"}}}},
        },
        "receives": ["request"],
        "sends": ["response"],
    }
}
