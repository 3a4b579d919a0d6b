"""Route family "chat": one chat room, reachable over REST and over WebSocket.

Every message goes through the Hub topic "chat", which gives it its SEQ, so REST pollers and
WebSocket users see the same messages in the same order.

- `GET /api/chat/messages?since=SEQ[&wait=S]`: messages after SEQ (a short or long poll)
- `POST /api/chat/messages` {"name", "text", "id"?}: 201 with the stored message. An
  `Idempotency-Key` header (or the body's `id`, the same rule as a WebSocket message id) makes a
  retry safe: the same key is published once and answered with the first message (header
  `Idempotent-Replayed: true`), on any worker; reused for another text: 422. When the room's
  store (Redis) does not take a message within backplane.PUBLISH_DEADLINE_S, the answer is 503
  problem+json with Retry-After, and the message was not published (never a 500 for a message
  that was); retry with the same key
- `WS /ws/chat?name=N[&since=SEQ]`: send {"type": "message", "text": ...} or {"type": "typing"};
  receive {"type": "message", "seq", "ts", "data": {"name", "text"}}, {"type": "typing", "name"}
  (ephemeral: never stored, never seen over REST), {"type": "error", "detail"} for a bad message.
  Typing notices have their own budget per member (TYPING_RATE_PER_S, TYPING_BURST); one over it
  is not relayed and its sender gets an error (as for messages over chat_rate/chat_burst).
  A message may carry a client `"id"`: the room answers {"type": "ack", "id", "seq", "duplicate"}
  and publishes a resent id only once, so a sender that lost its connection resends what was not
  acknowledged without doubling anything (at-least-once sending, de-duplicated here). In a cluster
  the ids live in Redis (set in the publishing Lua script, with a TTL), so the resend may reach
  any worker. A message not published in time gets {"type": "error", "id", "retry_after"}.

Names are 1-32 characters, texts 1-500; each must contain a non-space character and no control
character (texts may hold newlines and tabs); surrounding spaces are trimmed before storing. A bad
one gets 422 over HTTP and an error message over WebSocket (the connection stays open). The
OpenAPI schema states the same rules (`NAME_SCHEMA`, `TEXT_SCHEMA`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from collections import OrderedDict

from aiohttp import web

from labkit.server import access
from labkit.server.keys import CONFIG
from labkit.server.problem import ProblemError
from labkit.server.validate import (
    CONTROL_CHARS_BUT_NEWLINE_TAB,
    NAME_FORBIDDEN,
    NOT_BLANK,
    JSONInputError,
    chat_name,
    chat_text_for_display,
    load_json,
    name_key,
    name_keys,
)
from labkit.streaming.hub import HUB, Event, Notice, PublishUnavailable, Topic, event_schema
from labkit.streaming.sockets import (
    pump_to_websocket,
    run_websocket,
    send_message,
    topic_websocket,
)

from .core import websocket_route
from .feed import (
    EPOCH_PARAM,
    HEARTBEAT_PARAM,
    JSON_BODY_ERRORS,
    SINCE_PARAM,
    poll_operation,
    poll_response,
    read_json_object,
)
from .workers import worker_id

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


NAME_SCHEMA = _text_schema(MAX_NAME, NAME_FORBIDDEN, ", format, bidi or invisible characters; "
                                                      "NFKC-normalised; unique in the room; an RFC "
                                                      "8265 username per word (a code point it "
                                                      "disallows, e.g. an unassigned one, is 422)")
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
    """The normalised name, or the reasons it is refused (validate.chat_name: no invisible, format
    or bidi characters, nothing that only looks like a name)."""
    if isinstance(name, str) and len(name) <= MAX_NAME:
        return chat_name(name, MAX_NAME)  # the most precise reason first
    return _check("name", name, NAME_SCHEMA, "empty: say who you are")


MEMBERS = web.AppKey("chat_members", dict)
"""Each of name_keys(name) -> (name, WebSocketResponse) of each member in the room over WebSocket."""


def name_taken(name: str) -> ProblemError:
    return ProblemError(409, f"name: {name!r} is taken in this room (or looks like a name that is)",
                        errors=[{"field": "name", "message": "taken"}])


def check_text(text) -> tuple[str | None, list[dict]]:
    """The trimmed text without bidi overrides, or the reasons it is refused."""
    text, errors = _check("text", text, TEXT_SCHEMA, "empty: there is nothing to send")
    return (chat_text_for_display(text), []) if text is not None else (None, errors)


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
    errors += [{"field": k, "message": "unknown field"}
               for k in sorted(set(body) - {"name", "text", "id"})]
    if "id" in body and not valid_message_id(body["id"]):  # checked even beside the header
        errors.append({"field": "id", "message": ID_RULE})
    msg_id = request.headers.get("Idempotency-Key", body.get("id"))
    if msg_id is not None and not valid_message_id(msg_id):
        raise ProblemError(400, f"Idempotency-Key (or id): {ID_RULE}",
                           errors=[{"field": "Idempotency-Key", "message": ID_RULE}])
    if errors or name is None or text is None:  # a None always comes with its errors
        raise ProblemError(422, "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                           errors=errors)
    speaker = await access.claim_chat_name(request, name, request.app[MEMBERS], websocket=False)
    if wait := request.app[RATES].wait(speaker):  # per identity (per name outside a class)
        raise ProblemError(429, f"{name!r} is sending faster than this room allows ({RATES_RULE}); "
                                f"retry in {wait:.1f} s.", headers={"Retry-After": str(math.ceil(wait))},
                           retry_after=wait)
    data = {"name": name, "text": text}
    try:
        if msg_id is None:
            event, duplicate = await request.app[HUB].apublish(TOPIC, data), False
        else:
            event, duplicate = await request.app[HUB].apublish_once(TOPIC, data, once_key(name, msg_id))
    except PublishUnavailable as exc:
        raise unavailable_problem(exc) from None
    if duplicate and event.data != data:
        raise ProblemError(422, f"Idempotency-Key {msg_id!r} was used for another message",
                           errors=[{"field": "Idempotency-Key", "message": "reused for another request"}])
    return web.Response(text=event.json, status=201, content_type="application/json",
                        headers={"Idempotent-Replayed": "true"} if duplicate else None)


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
    if name is None:  # check_name gives either a name or its errors
        raise RuntimeError("check_name gave neither a name nor errors")
    keys, members = name_keys(name), request.app[MEMBERS]
    speaker = await access.claim_chat_name(request, name, members, websocket=True)  # 403/409/422
    welcome = {"type": "welcome", "name": name, "last_seq": topic.last_seq, "max_text": MAX_TEXT,
               "worker": worker_id(request.app), "epoch": topic.epoch}
    async with topic_websocket(request, topic, first=(welcome,)) as (ws, sub, replay, counters):
        if keys & members.keys():  # taken while this one's handshake was under way
            await ws.close(code=1008, message=b"name taken")
            return ws
        members.update(dict.fromkeys(keys, (name, ws)))
        pump = asyncio.create_task(pump_to_websocket(request, ws, sub, replay, counters, render))

        async def error(detail: str, **extra) -> None:
            await send_message(ws, json.dumps({"type": "error", "detail": detail, **extra}))

        async def on_message(raw: str) -> None:
            try:
                msg = load_json(raw)
            except JSONInputError:
                return await error("send JSON such as {\"type\": \"message\", \"text\": \"hi\"}")
            kind = msg.get("type") if isinstance(msg, dict) else None
            if kind == "typing":
                if wait := request.app[TYPING_RATES].wait(speaker):
                    return await error(f"typing notices too fast ({TYPING_RULE}): not sent; "
                                       f"retry in {wait:.1f} s", retry_after=wait)
                hub.notify(TOPIC, {"type": "typing", "name": name}, skip=sub)
            elif kind == "message":
                text, errs = check_text(msg.get("text"))
                msg_id = msg.get("id")
                if msg_id is not None and not valid_message_id(msg_id):
                    errs = errs + [{"field": "id", "message": ID_RULE}]
                if errs:
                    return await error(f"{errs[0]['field']}: {errs[0]['message']}", errors=errs)
                if text is None:  # check_text gives either a text or its errors
                    raise RuntimeError("check_text gave neither a text nor errors")
                if wait := request.app[RATES].wait(speaker):
                    return await error(f"too fast ({RATES_RULE}): this message was not sent; "
                                       f"retry in {wait:.1f} s", retry_after=wait)
                try:
                    await publish_once(hub, ws, name, text, msg_id)
                except PublishUnavailable as exc:
                    return await error(str(exc), id=msg_id, retry_after=exc.retry_after)
            else:
                await error('"type" must be "message" or "typing"',
                            errors=[{"field": "type", "message": "unknown"}])

        try:
            await run_websocket(ws, pump, on_message)
        finally:
            for member_key in keys:
                if members.get(member_key, (None, None))[1] is ws:
                    del members[member_key]
    return ws


RATES_RULE = "each member may send chat_rate messages per second, in bursts of up to chat_burst"
MAX_TRACKED_MEMBERS = 10_000
"""Members whose sending rate is tracked at once (idle ones are forgotten first)."""


class MemberRates:
    """A token bucket per member: `burst` messages at once, then `rate` per second on average.

    `wait(member)` takes one token and returns 0, or returns the seconds until one is free (and
    takes nothing). One member's flood then cannot push everyone else's messages out of the
    room's history before the REST pollers have seen them."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, max(1, burst)
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def wait(self, member: str) -> float:
        now = time.monotonic()
        tokens, then = self.buckets.pop(member, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        waiting = 0.0 if tokens >= 1 else (1 - tokens) / self.rate if self.rate > 0 else math.inf
        self.buckets[member] = (tokens - 1 if not waiting else tokens, now)
        if len(self.buckets) > MAX_TRACKED_MEMBERS:
            self.buckets.popitem(last=False)  # the member who sent least recently
        return waiting


RATES = web.AppKey("chat_rates", MemberRates)
TYPING_RATE_PER_S = 2.0
"""Typing notices a member may send per second on average (a separate budget from messages)."""
TYPING_BURST = 5
"""Typing notices a member may send at once before TYPING_RATE_PER_S applies."""
TYPING_RULE = (f"each member may send {TYPING_RATE_PER_S:g} typing notices per second, "
               f"in bursts of {TYPING_BURST}")
TYPING_RATES = web.AppKey("chat_typing_rates", MemberRates)


ID_RULE = "a string of 1-64 characters from A-Z a-z 0-9 _ - . :"


def valid_message_id(msg_id) -> bool:
    return isinstance(msg_id, str) and re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", msg_id) is not None


def once_key(name: str, msg_id: str) -> str:
    """The publish key of a member's message id (a WebSocket `id` or a POST's Idempotency-Key)."""
    return f"{name_key(name)}:{msg_id}"


def unavailable_problem(exc: PublishUnavailable) -> ProblemError:
    """A message that was not published (the room's store did not take it in time) as 503."""
    return ProblemError(503, str(exc), headers={"Retry-After": str(math.ceil(exc.retry_after))},
                        retry_after=exc.retry_after)


async def publish_once(hub, ws: web.WebSocketResponse, name: str, text: str,
                       msg_id: str | None) -> None:
    """Publish a chat message; with a client id, acknowledge it ({"type": "ack", "id", "seq",
    "duplicate"}) and publish a resent id only once (at-least-once sending + de-duplication).
    The ids live where the room's order is kept (`Hub.apublish_once`: Redis in a cluster, with
    a TTL), so a resend that lands on another worker is recognised too. Raises
    PublishUnavailable when the message was not published."""
    data = {"name": name, "text": text}
    if msg_id is None:
        seq, duplicate = (await hub.apublish(TOPIC, data)).seq, False
    else:
        event, duplicate = await hub.apublish_once(TOPIC, data, once_key(name, msg_id))
        seq = event.seq
    if msg_id is not None:
        with contextlib.suppress(ConnectionResetError, RuntimeError):  # a closing socket
            await send_message(ws, json.dumps({"type": "ack", "id": msg_id, "seq": seq,
                                          "duplicate": duplicate}))


def setup(app: web.Application) -> None:
    app.add_routes(routes)
    app[MEMBERS] = {}
    config = app[CONFIG]
    app[RATES] = MemberRates(config.chat_rate, config.chat_burst)
    app[TYPING_RATES] = MemberRates(TYPING_RATE_PER_S, TYPING_BURST)


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
                    "id": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$",
                           "description": "as the Idempotency-Key header (the header wins)"},
                },
            }}}},
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
                            "description": "a retry with the same key is published once and "
                                           "answered with the first message"}],
            "responses": {
                "201": {"description": "The stored message with its SEQ",
                        "content": {"application/json": {"schema": _MESSAGE}}},
                **JSON_BODY_ERRORS,
                "429": {"$ref": "#/components/responses/Problem"},
                "503": {"$ref": "#/components/responses/Problem",
                        "description": "not published (the room's store did not answer in "
                                       "time): retry after Retry-After with the same key"},
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
            "name": NAME_SCHEMA, "since": SINCE_PARAM["schema"],
            "epoch": EPOCH_PARAM["schema"], "heartbeat": HEARTBEAT_PARAM["schema"]}}}},
        "messages": {
            "send": {"name": "send", "payload": {"type": "object", "properties": {
                "type": {"const": "message"}, "text": TEXT_SCHEMA,
                "id": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$",
                       "description": "optional client message id: the room answers with an "
                                      "ack and publishes a resent id only once"}}}},
            "ack": {"name": "ack", "payload": {"type": "object", "properties": {
                "type": {"const": "ack"}, "id": {"type": "string"}, "seq": {"type": "integer"},
                "duplicate": {"type": "boolean"}}}},
            "typing": {"name": "typing", "payload": {"type": "object", "properties": {
                "type": {"const": "typing"}, "name": {"type": "string"}}}},
            "message": {"name": "message", "payload": {**_MESSAGE, "properties": {
                **_MESSAGE["properties"], "type": {"const": "message"}}}},
            "error": {"name": "error", "payload": {"type": "object", "properties": {
                "type": {"const": "error"}, "detail": {"type": "string"}}}},
        },
        "receives": ["send", "typing"],
        "sends": ["message", "typing", "error", "ack"],
    }
}
