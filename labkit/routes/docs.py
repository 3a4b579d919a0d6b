"""The OpenAPI document, assembled from each route family's OPENAPI_PATHS."""

from __future__ import annotations

import copy

from aiohttp import web

from labkit import __version__

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
}


SSE_EVENT_SCHEMA = {
    "type": "object",
    "description": "One Server-Sent Event, as an EventSource (and schemathesis) reads it off the "
                   "stream: its `event` type, its `data` lines joined, its `id` and `retry` if sent",
    "required": ["data"],
    "properties": {
        "event": {"type": "string", "description": "`message` unless the event is named (gap, reset...)"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "description": "JSON text: the event (seq, epoch, ts, data) or a named event's body"},
        "id": {"type": "string", "description": "\"<epoch>:<seq>\": what Last-Event-ID sends back"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
"""The schema of each event of a `text/event-stream` answer (OpenAPI 3.1: `schema` describes one
event of a sequential media type; 3.2 would call it `itemSchema`)."""


def _describe_event_streams(paths: dict) -> dict:
    """Every text/event-stream answer gets SSE_EVENT_SCHEMA as the schema of each of its events."""
    for item in paths.values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for response in operation.get("responses", {}).values():
                stream = response.get("content", {}).get("text/event-stream")
                if stream is not None:
                    stream["schema"] = SSE_EVENT_SCHEMA
    return paths


def _bound_integers(node) -> None:
    """Every JSON integer the lab reads has at most MAX_JSON_INT_DIGITS digits (`load_json` answers
    400 above that): say so in every integer schema that states no bound of its own."""
    from labkit.server.validate import MAX_JSON_INT_DIGITS

    if isinstance(node, dict):
        if node.get("type") == "integer" and "maximum" not in node and "minimum" not in node:
            node["maximum"] = 10**MAX_JSON_INT_DIGITS - 1
            node["minimum"] = -(10**MAX_JSON_INT_DIGITS - 1)
        for value in node.values():
            _bound_integers(value)
    elif isinstance(node, list):
        for value in node:
            _bound_integers(value)


def openapi_document(app: web.Application) -> dict:
    """OpenAPI 3.1 for every HTTP route of `app` (WebSocket routes live in the AsyncAPI document)."""
    from labkit.server.app import FAMILY_MODULES

    paths: dict = {}
    for module in app[FAMILY_MODULES]:
        paths.update(copy.deepcopy(getattr(module, "OPENAPI_PATHS", {})))
    _describe_event_streams(paths)
    _bound_integers(paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "labkit lab server",
            "version": __version__,
            "description": "REST side of the labkit lessons. WebSocket channels: /asyncapi.json.",
        },
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Problem": PROBLEM_SCHEMA},
            "responses": {
                "Problem": {
                    "description": "An error, as RFC 9457 problem details",
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    },
                }
            },
        },
    }


def asyncapi_document(app: web.Application) -> dict:
    """AsyncAPI 3.0 for every WebSocket (and SSE) channel of `app`, from each family's ASYNCAPI_CHANNELS.

    ASYNCAPI_CHANNELS maps a channel id to an AsyncAPI Channel Object (`address`, `messages`,
    `bindings`, ...) plus two lists naming its messages by direction: `receives` (client -> server)
    and `sends` (server -> client). They become the operations `<id>Receive` and `<id>Send`, from the
    lab server's point of view as AsyncAPI 3 asks.
    """
    from labkit.server.app import FAMILY_MODULES

    channels: dict = {}
    operations: dict = {}
    for module in app[FAMILY_MODULES]:
        for channel_id, declared in getattr(module, "ASYNCAPI_CHANNELS", {}).items():
            channel = {k: v for k, v in declared.items() if k not in ("receives", "sends")}
            channels[channel_id] = channel
            for action, key in (("receive", "receives"), ("send", "sends")):
                names = declared.get(key) or []
                if names:
                    operations[f"{channel_id}{action.title()}"] = {
                        "action": action,
                        "channel": {"$ref": f"#/channels/{channel_id}"},
                        "messages": [{"$ref": f"#/channels/{channel_id}/messages/{name}"}
                                     for name in names],
                    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "labkit lab server",
            "version": __version__,
            "description": "Push side of the labkit lessons: WebSocket channels (and SSE streams). "
                           "HTTP routes: /openapi.json.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "lab": {"host": "127.0.0.1", "protocol": "ws",
                    "description": "The lab server on loopback; the port is the one lk.start() chose."}
        },
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
    }
