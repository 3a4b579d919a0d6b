"""Route family "chat": one chat room, reachable over REST and over WebSocket.

Every message goes through the Hub topic "chat", which gives it its SEQ, so REST pollers and
WebSocket users see the same messages in the same order.

- `GET /api/chat/messages?since=SEQ[&wait=S]`: messages after SEQ (a short or long poll)
- `POST /api/chat/messages` {"name", "text"}: 201 with the stored message
- `WS /ws/chat?name=N[&since=SEQ]`: send {"type": "message", "text": ...} or {"type": "typing"};
  receive {"type": "message", "seq", "ts", "data": {"name", "text"}}, {"type": "typing", "name"}
  (ephemeral: never stored, never seen over REST), {"type": "error", "detail"} for a bad message.

Names are 1-32 characters, texts 1-500; each must contain a non-space character and no control
character (texts may hold newlines and tabs); surrounding spaces are trimmed before storing. A bad
one gets 422 over HTTP and an error message over WebSocket (the connection stays open). The
OpenAPI schema states the same rules (`NAME_SCHEMA`, `TEXT_SCHEMA`).
"""

from __future__ import annotations

import asyncio
import json
import re

from aiohttp import web

from .core import websocket_route
from .feed import (
    JSON_BODY_ERRORS,
    SINCE_PARAM,
    poll_operation,
    poll_response,
    pump_to_websocket,
    read_json_object,
    run_websocket,
    topic_websocket,
)
from .hub import HUB, Event, Notice, Topic, event_schema
from .problem import ProblemError
from .validate import CONTROL_CHARS, CONTROL_CHARS_BUT_NEWLINE_TAB, NOT_BLANK

TOPIC = "chat"
MAX_NAME = 32
MAX_TEXT = 500
HISTORY_LIMIT = 500
"""Messages the room keeps for late joiners and pollers."""

routes = web.RouteTableDef()


def _text_schema(limit: int, control: str, what: str) -> dict:
    return {"type": "string", "minLength": 1, "maxLength": limit, "pattern": NOT_BLANK,
            "not": {"pattern": control},
            "description": f"1-{limit} characters, not only spaces, no control characters{what}; "
                           "surrounding spaces are trimmed"}


NAME_SCHEMA = _text_schema(MAX_NAME, CONTROL_CHARS, "")
TEXT_SCHEMA = _text_schema(MAX_TEXT, CONTROL_CHARS_BUT_NEWLINE_TAB, " but newline and tab")


def _check(field: str, value, schema: dict, empty: str) -> tuple[str | None, list[dict]]:
    """`value` trimmed, or why it breaks `schema` (the same rules the OpenAPI document states)."""
    if not isinstance(value, str):
        return None, [{"field": field, "message": "a string is required"}]
    if not re.search(schema["pattern"], value):
        return None, [{"field": field, "message": empty}]
    if len(value) > schema["maxLength"]:
        return None, [{"field": field, "message": f"at most {schema['maxLength']} characters"}]
    if re.search(schema["not"]["pattern"], value):
        return None, [{"field": field, "message": "no control characters"}]
    return value.strip(), []


def check_name(name) -> tuple[str | None, list[dict]]:
    """The trimmed name, or the reasons it is refused."""
    return _check("name", name, NAME_SCHEMA, "empty: say who you are")


def check_text(text) -> tuple[str | None, list[dict]]:
    """The trimmed text, or the reasons it is refused."""
    return _check("text", text, TEXT_SCHEMA, "empty: there is nothing to send")


def _topic(request: web.Request) -> Topic:
    return request.app[HUB].topic(TOPIC, history_limit=HISTORY_LIMIT)


@routes.get("/api/chat/messages")
async def messages_get(request: web.Request) -> web.Response:
    """Messages after ?since=SEQ (all kept ones without it); with &wait=S a long poll."""
    return await poll_response(request, _topic(request))


@routes.post("/api/chat/messages")
async def messages_post(request: web.Request) -> web.Response:
    """Post {"name", "text"} to the room; 201 with the message and its SEQ."""
    topic = _topic(request)
    topic.counters("rest").requests += 1
    body = await read_json_object(request)
    name, errors = check_name(body.get("name"))
    text, text_errors = check_text(body.get("text"))
    errors += text_errors
    errors += [{"field": k, "message": "unknown field"} for k in sorted(set(body) - {"name", "text"})]
    if errors:
        raise ProblemError(422, "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                           errors=errors)
    event = request.app[HUB].publish(TOPIC, {"name": name, "text": text})
    return web.Response(text=event.json, status=201, content_type="application/json")


def render(item) -> str | None:
    """What a WebSocket user receives for a hub item."""
    if isinstance(item, Event):
        return '{"type":"message",' + item.json[1:]
    if isinstance(item, Notice):
        return json.dumps(item.data)
    return None


@routes.get("/ws/chat")
@websocket_route
async def chat_ws(request: web.Request) -> web.WebSocketResponse:
    """Join the room as ?name=N: send messages and typing signals, receive everything live."""
    hub = request.app[HUB]
    topic = _topic(request)
    name, errors = check_name(request.query.get("name"))
    if errors:
        raise ProblemError(422, f"name: {errors[0]['message']}", errors=errors)
    welcome = {"type": "welcome", "name": name, "last_seq": topic.last_seq, "max_text": MAX_TEXT}
    async with topic_websocket(request, topic, first=(welcome,)) as (ws, sub, replay, counters):
        pump = asyncio.create_task(pump_to_websocket(request, ws, sub, replay, counters, render))

        async def error(detail: str, **extra) -> None:
            await ws.send_str(json.dumps({"type": "error", "detail": detail, **extra}))

        async def on_message(raw: str) -> None:
            try:
                msg = json.loads(raw)
            except ValueError:
                return await error("send JSON such as {\"type\": \"message\", \"text\": \"hi\"}")
            kind = msg.get("type") if isinstance(msg, dict) else None
            if kind == "typing":
                hub.notify(TOPIC, {"type": "typing", "name": name}, skip=sub)
            elif kind == "message":
                text, errs = check_text(msg.get("text"))
                if errs:
                    return await error(f"text: {errs[0]['message']}", errors=errs)
                hub.publish(TOPIC, {"name": name, "text": text})
            else:
                await error('"type" must be "message" or "typing"',
                            errors=[{"field": "type", "message": "unknown"}])

        await run_websocket(ws, pump, on_message)
    return ws


def setup(app: web.Application) -> None:
    app.add_routes(routes)


_MESSAGE = event_schema({"type": "object", "properties": {"name": {"type": "string"},
                                                          "text": {"type": "string"}}})
_get = poll_operation("Messages of the room (short or long poll)", "chatMessagesGet", "Messages")
OPENAPI_PATHS = {
    "/api/chat/messages": {
        "get": _get,
        "post": {
            "summary": "Post a message to the room",
            "operationId": "chatMessagesPost",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["name", "text"], "additionalProperties": False,
                "properties": {
                    "name": NAME_SCHEMA,
                    "text": TEXT_SCHEMA,
                },
            }}}},
            "responses": {
                "201": {"description": "The stored message with its SEQ",
                        "content": {"application/json": {"schema": _MESSAGE}}},
                **JSON_BODY_ERRORS,
            },
        },
    }
}

ASYNCAPI_CHANNELS = {
    "chatWebSocket": {
        "address": "/ws/chat",
        "title": "The chat room over WebSocket",
        "description": "Join with ?name=N (1-32 characters) and optional ?since=SEQ. The same "
                       "messages, in the same order, as GET /api/chat/messages.",
        "bindings": {"ws": {"query": {"type": "object", "required": ["name"], "properties": {
            "name": NAME_SCHEMA, "since": SINCE_PARAM["schema"]}}}},
        "messages": {
            "send": {"name": "send", "payload": {"type": "object", "properties": {
                "type": {"const": "message"}, "text": TEXT_SCHEMA}}},
            "typing": {"name": "typing", "payload": {"type": "object", "properties": {
                "type": {"const": "typing"}, "name": {"type": "string"}}}},
            "message": {"name": "message", "payload": {**_MESSAGE, "properties": {
                **_MESSAGE["properties"], "type": {"const": "message"}}}},
            "error": {"name": "error", "payload": {"type": "object", "properties": {
                "type": {"const": "error"}, "detail": {"type": "string"}}}},
        },
        "receives": ["send", "typing"],
        "sends": ["message", "typing", "error"],
    }
}
