"""Route family "iot": simulated devices send telemetry and receive commands, three ways.

Telemetry (device → server):
- `POST /api/iot/readings` {"device", "value"}: one request per reading (204);
- `POST /api/iot/readings/batch` {"device", "values": [...]}: many readings per request (204);
- `WS /ws/iot?device=D`: one long-lived connection; each text message is a reading
  {"value": x} (or {"values": [...]}), never answered (fire and forget; the socket is the ack).

Commands (server → device), through a Hub topic per device so they are numbered and kept:
- `POST /api/iot/devices/{device}/commands` {"command"}: 201 with the stored command and its SEQ;
- a polling device asks `GET /api/iot/devices/{device}/commands?since=SEQ[&wait=S]`;
- a device holding `WS /ws/iot` gets each command pushed as {"seq", "epoch", "ts", "data"}.

`GET /api/iot/stats` counts readings and HTTP requests (for "ws": the Upgrade) per transport and
reports the server thread's CPU time, so a
lesson can compute CPU per reading. Device ids are 1-32 letters, digits, `-` or `_`; at most
MAX_DEVICES devices are tracked.

A device is its first user's (the access policy, `labkit/server/access.py`): in a class, the first
identity that sends a reading, opens `/ws/iot?device=D` or touches its commands owns it; only that
identity and the instructor may send its readings, read or queue its commands, or follow it.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time

from aiohttp import web

from labkit.server import access
from labkit.server.problem import ProblemError
from labkit.server.validate import load_json  # the lab's one JSON reader (depth-limited)
from labkit.streaming.hub import HUB, event_schema
from labkit.streaming.sockets import (
    pump_to_websocket,
    run_websocket,
    send_message,
    topic_websocket,
)

from .core import websocket_route
from .feed import (
    JSON_BODY_ERRORS,
    poll_operation,
    poll_response,
    read_json_object,
)

MAX_DEVICES = 10_000
MAX_BATCH = 1000
MAX_COMMAND = 64
DEVICE = re.compile(r"[A-Za-z0-9_-]{1,32}")
STATS = web.AppKey("iot_stats", dict)

routes = web.RouteTableDef()


def _device(raw: str | None) -> str:
    if not isinstance(raw, str) or not DEVICE.fullmatch(raw):
        raise ProblemError(422, "a device id is 1-32 letters, digits, '-' or '_'",
                           errors=[{"field": "device", "message": "invalid device id"}])
    return raw


def _record(app: web.Application, device: str, transport: str, values: list, *, request: bool = True) -> None:
    stats = app[STATS]
    devices = stats["devices"]
    if device not in devices and len(devices) >= MAX_DEVICES:
        raise ProblemError(507, f"this lab tracks at most {MAX_DEVICES} devices")
    devices[device] = values[-1]
    stats["readings"][transport] += len(values)
    stats["requests"][transport] += request


def _values(raw) -> list[float] | None:
    """A list of finite numbers (bools refused), or None."""
    items = raw if isinstance(raw, list) else [raw]
    ok = all(type(v) in (int, float) and math.isfinite(v) for v in items)
    return items if ok and 1 <= len(items) <= MAX_BATCH else None


@routes.post("/api/iot/readings")
async def post_reading(request: web.Request) -> web.Response:
    """One reading {"device", "value"}: 204."""
    body = await read_json_object(request)
    device = _device(body.get("device"))
    await access.require(request, "device", device, access.ACT)
    values = _values(body.get("value")) if not isinstance(body.get("value"), list) else None
    if values is None or set(body) - {"device", "value"}:
        raise ProblemError(422, "send {\"device\": id, \"value\": number}",
                           errors=[{"field": "value", "message": "a finite number"}])
    _record(request.app, device, "rest", values)
    return web.Response(status=204)


@routes.post("/api/iot/readings/batch")
async def post_batch(request: web.Request) -> web.Response:
    """Many readings {"device", "values": [...]} (1-1000): 204."""
    body = await read_json_object(request)
    device = _device(body.get("device"))
    await access.require(request, "device", device, access.ACT)
    values = _values(body.get("values")) if isinstance(body.get("values"), list) else None
    if values is None or set(body) - {"device", "values"}:
        raise ProblemError(422, f"send {{\"device\": id, \"values\": [1-{MAX_BATCH} numbers]}}",
                           errors=[{"field": "values", "message": f"1-{MAX_BATCH} finite numbers"}])
    _record(request.app, device, "batch", values)
    return web.Response(status=204)


def _commands(request: web.Request, device: str):
    return request.app[HUB].topic(f"iot.{device}", history_limit=100)


@routes.post("/api/iot/devices/{device}/commands")
async def post_command(request: web.Request) -> web.Response:
    """Queue a command {"command"} for a device: 201 with its SEQ."""
    device = _device(request.match_info["device"])
    body = await read_json_object(request)
    command = body.get("command")
    if not isinstance(command, str) or not 1 <= len(command) <= MAX_COMMAND \
            or re.search(r"[\x00-\x1f\x7f-\x9f]", command) or set(body) - {"command"}:
        raise ProblemError(422, f"send {{\"command\": 1-{MAX_COMMAND} characters}}",
                           errors=[{"field": "command", "message": "1-64 characters, no control"}])
    _commands(request, device)
    event = await request.app[HUB].apublish(f"iot.{device}", {"command": command})
    return web.Response(text=event.json, status=201, content_type="application/json")


@routes.get("/api/iot/devices/{device}/commands")
async def poll_commands(request: web.Request) -> web.Response:
    """Commands after ?since=SEQ (a short poll, or a long poll with &wait=S)."""
    return await poll_response(request, _commands(request, _device(request.match_info["device"])))


@routes.get("/api/iot/stats")
async def stats(request: web.Request) -> web.Response:
    """Readings and requests per transport, devices seen, the server thread's CPU seconds."""
    s = request.app[STATS]
    return web.json_response({"readings": dict(s["readings"]), "requests": dict(s["requests"]),
                              "devices": len(s["devices"]), "server_thread_cpu_s": time.thread_time()})


@routes.get("/ws/iot")
@websocket_route
async def device_ws(request: web.Request) -> web.WebSocketResponse:
    """A device's connection: readings up, commands down."""
    device = _device(request.query.get("device"))
    topic = _commands(request, device)
    welcome = {"type": "welcome", "device": device, "last_seq": topic.last_seq}
    request.app[STATS]["requests"]["ws"] += 1  # the Upgrade request; readings are messages
    async with topic_websocket(request, topic, compress=False, first=(welcome,)) as (ws, sub, replay,
                                                                                       counters):
        pump = asyncio.create_task(pump_to_websocket(request, ws, sub, replay, counters))

        async def on_message(raw: str) -> None:
            try:
                msg = load_json(raw)
            except (ValueError, RecursionError):
                msg = None
            values = None
            if isinstance(msg, dict):
                values = _values(msg.get("values", msg.get("value")))
            if values is None:
                await send_message(ws, json.dumps({"type": "error", "detail":
                                              'send {"value": number} or {"values": [numbers]}'}))
                return
            try:
                _record(request.app, device, "ws", values, request=False)
            except ProblemError as exc:
                await send_message(ws, json.dumps({"type": "error", "detail": exc.detail}))

        await run_websocket(ws, pump, on_message)
    return ws


def setup(app: web.Application) -> None:
    app.add_routes(routes)
    app[STATS] = {"readings": {"rest": 0, "batch": 0, "ws": 0},
                  "requests": {"rest": 0, "batch": 0, "ws": 0}, "devices": {}}


_DEVICE_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"}
_DEVICE_PARAM = {"name": "device", "in": "path", "required": True, "schema": _DEVICE_SCHEMA}
_NUMBER = {"type": "number"}
_NO_CONTENT = {"204": {"description": "Stored"}, **JSON_BODY_ERRORS, "507": {"$ref":
                                                                            "#/components/responses/Problem"}}


def _body(properties: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": sorted(properties), "additionalProperties": False,
        "properties": properties}}}}


_poll = poll_operation("Commands for a device (short or long poll)", "iotCommandsPoll", "Commands")
OPENAPI_PATHS = {
    "/api/iot/readings": {"post": {"summary": "One reading", "operationId": "iotReading",
                                   "requestBody": _body({"device": _DEVICE_SCHEMA, "value": _NUMBER}),
                                   "responses": _NO_CONTENT}},
    "/api/iot/readings/batch": {"post": {
        "summary": "Many readings in one request", "operationId": "iotReadingBatch",
        "requestBody": _body({"device": _DEVICE_SCHEMA, "values": {
            "type": "array", "items": _NUMBER, "minItems": 1, "maxItems": MAX_BATCH}}),
        "responses": _NO_CONTENT}},
    "/api/iot/devices/{device}/commands": {
        "get": {**_poll, "parameters": [_DEVICE_PARAM, *_poll.get("parameters", [])]},
        "post": {"summary": "Queue a command for a device", "operationId": "iotCommandPost",
                 "parameters": [_DEVICE_PARAM],
                 "requestBody": _body({"command": {"type": "string", "minLength": 1,
                                                   "maxLength": MAX_COMMAND,
                                                   "not": {"pattern": "[\\x00-\\x1f\\x7f-\\x9f]"}}}),
                 "responses": {"201": {"description": "The stored command with its SEQ",
                                       "content": {"application/json": {"schema": event_schema()}}},
                               **JSON_BODY_ERRORS}}},
    "/api/iot/stats": {"get": {"summary": "Readings per transport and server CPU",
                               "operationId": "iotStats",
                               "responses": {"200": {"description": "Counters", "content": {
                                   "application/json": {"schema": {"type": "object"}}}}}}},
}

ASYNCAPI_CHANNELS = {
    "iotDevice": {
        "address": "/ws/iot", "title": "A device's connection",
        "description": "?device=D: send readings {\"value\"} or {\"values\"}; receive commands.",
        "bindings": {"ws": {"query": {"type": "object", "required": ["device"],
                                      "properties": {"device": _DEVICE_SCHEMA}}}},
        "messages": {
            "reading": {"name": "reading", "payload": {"type": "object", "properties": {
                "value": _NUMBER, "values": {"type": "array", "items": _NUMBER}}}},
            "command": {"name": "command", "payload": event_schema()},
        },
        "receives": ["reading"],
        "sends": ["command"],
    }
}
