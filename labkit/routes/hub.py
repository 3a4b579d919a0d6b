"""Route family "hub": `GET /api/hub`, the state of every topic (SEQ range, history bound,
subscribers, per-transport counters), and the Hub's life cycle in the app (made at setup, bound
to the server's loop at startup, its subscribers closed at shutdown). The Hub itself is
`labkit.streaming.hub`.

In a class, a student sees only the topics they may follow (`access.visible_topics`): the class's
(feed, chat, games) and their own accounts' and devices' (`bank.<id>`, `support.<id>`,
`iot.<device>`), so the list gives away no one else's account or device id."""

from __future__ import annotations

import time

from aiohttp import web

from labkit.server import access
from labkit.streaming.hub import HUB, Hub

routes = web.RouteTableDef()


@routes.get("/api/hub")
async def hub_stats(request: web.Request) -> web.Response:
    """Topics with their SEQ range, history bound, subscribers and per-transport counters."""
    topics = request.app[HUB].stats()
    shown = await access.visible_topics(request, list(topics))
    return web.json_response({
        "server_thread_cpu_s": time.thread_time(),
        "topics": {name: topics[name] for name in shown},
    }, headers={"Cache-Control": "no-store"})


async def _bind(app: web.Application) -> None:
    app[HUB].bind()


async def _close_subscribers(app: web.Application) -> None:
    for topic in app[HUB].topics.values():
        for sub in list(topic.subscribers):
            sub.close()


def setup(app: web.Application) -> None:
    app[HUB] = Hub()
    app.on_startup.append(_bind)
    app.on_shutdown.append(_close_subscribers)
    app.add_routes(routes)


_COUNTERS = {
    "type": "object",
    "properties": {k: {"type": "integer"} for k in ("delivered", "dropped", "requests",
                                                    "bytes_sent")},
}
OPENAPI_PATHS = {
    "/api/hub": {
        "get": {
            "summary": "Topics of the hub: SEQ range, history bound, subscribers, counters",
            "operationId": "hubStats",
            "responses": {
                "200": {
                    "description": "Per-topic state and per-transport counters, plus the CPU time "
                                   "the server thread has used (time.thread_time, seconds)",
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {
                            "server_thread_cpu_s": {"type": "number"},
                            "topics": {"type": "object", "additionalProperties": {
                                "type": "object",
                                "properties": {
                                    "epoch": {"type": "string"},
                                    "last_seq": {"type": "integer"},
                                    "oldest_seq": {"type": "integer"},
                                    "history_limit": {"type": "integer"},
                                    "queue_limit": {"type": "integer"},
                                    "published": {"type": "integer"},
                                    "subscribers": {"type": "object"},
                                    "counters": {"type": "object",
                                                 "additionalProperties": _COUNTERS},
                                },
                            }},
                        },
                    }}},
                }
            },
        }
    }
}
