"""Route family "core": the index of routes, the health check and the OpenAPI / AsyncAPI documents.

`GET /` lists every route the app serves, built from the router itself (so it cannot miss one):
per path its methods, its kind (`http`, `sse` for an event stream, `websocket`) and one line per
method, taken from the handler's docstring. HEAD is not listed: every GET answers HEAD too.
"""

from __future__ import annotations

import html

from aiohttp import web

from labkit import __version__

routes = web.RouteTableDef()


def one_line(doc: str | None) -> str:
    """The first paragraph of a docstring, as one line."""
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def _event_stream_paths(app: web.Application) -> set[str]:
    """Paths whose GET answers text/event-stream in their family's OPENAPI_PATHS (SSE routes)."""
    from labkit.server.app import FAMILY_MODULES

    found = set()
    for module in app.get(FAMILY_MODULES, ()):
        for path, item in getattr(module, "OPENAPI_PATHS", {}).items():
            responses = item.get("get", {}).get("responses", {})
            if any("text/event-stream" in r.get("content", {}) for r in responses.values()):
                found.add(path)
    return found


def route_index(app: web.Application) -> list[dict]:
    """One entry per path the app serves: `path`, `methods` (HEAD left out: it comes with GET),
    `kind` ("http", "sse" or "websocket"), `summary` (of the first method) and `operations`
    ([{"method", "summary"}], one per method)."""
    by_path: dict[str, dict] = {}
    streams = _event_stream_paths(app)
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else str(route)
        entry = by_path.setdefault(path, {"path": path, "methods": [], "kind": "http", "summary": "",
                                          "operations": []})
        if getattr(route.handler, "websocket", False):
            entry["kind"] = "websocket"
        elif path in streams:
            entry["kind"] = "sse"
        if route.method in ("HEAD", "*") or route.method in entry["methods"]:
            continue
        summary = one_line(route.handler.__doc__)
        entry["methods"].append(route.method)
        entry["operations"].append({"method": route.method, "summary": summary})
        entry["summary"] = entry["summary"] or summary
    return sorted(by_path.values(), key=lambda e: e["path"])


def websocket_route(handler):
    """Mark a handler as a WebSocket endpoint (for the index and the documents)."""
    handler.websocket = True
    return handler


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    """Index of every route: JSON for Accept: application/json, a small HTML page otherwise."""
    entries = route_index(request.app)
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response({"name": "labkit lab server", "version": __version__,
                                  "documents": {"openapi": "/openapi.json", "asyncapi": "/asyncapi.json"},
                                  "routes": entries})
    label = {"websocket": "WS", "sse": "GET (SSE)"}
    rows = "".join(
        f"<tr><td>{label.get(e['kind'], op['method'])}</td>"
        f"<td><code>{html.escape(e['path'])}</code></td><td>{html.escape(op['summary'])}</td></tr>"
        for e in entries for op in e["operations"]
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>labkit lab server</title></head>"
        "<body><h1>labkit lab server</h1><p>Every route, one row per method (HEAD comes with GET). "
        "Machine-readable: <a href='openapi.json'>openapi.json</a> (HTTP), "
        "<a href='asyncapi.json'>asyncapi.json</a> (WebSocket and SSE), this page as JSON with "
        "<code>Accept: application/json</code>.</p>"
        "<table><tr><th>method</th><th>path</th><th>what</th></tr>"
        f"{rows}</table></body></html>"
    )
    return web.Response(text=page, content_type="text/html")


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness check: {"status": "ok"}."""
    return web.json_response({"status": "ok"})


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """OpenAPI 3.1 document of every HTTP route."""
    from .docs import openapi_document

    return web.json_response(openapi_document(request.app))


@routes.get("/asyncapi.json")
async def asyncapi(request: web.Request) -> web.Response:
    """AsyncAPI 3.0 document of every WebSocket and SSE channel."""
    from .docs import asyncapi_document

    return web.json_response(asyncapi_document(request.app))


def setup(app: web.Application) -> None:
    app.add_routes(routes)


_JSON = {"application/json": {"schema": {"type": "object"}}}
OPENAPI_PATHS = {
    "/": {
        "get": {
            "summary": "Index of every route",
            "operationId": "index",
            "responses": {
                "200": {
                    "description": "Routes as JSON (Accept: application/json) or HTML",
                    "content": {**_JSON, "text/html": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "Liveness check",
            "operationId": "healthz",
            "responses": {"200": {"description": "The server answers", "content": _JSON}},
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "responses": {"200": {"description": "OpenAPI 3.1 document", "content": _JSON}},
        }
    },
    "/asyncapi.json": {
        "get": {
            "summary": "AsyncAPI 3.0 document of the WebSocket and SSE channels",
            "operationId": "asyncapi",
            "responses": {"200": {"description": "AsyncAPI 3.0 document", "content": _JSON}},
        }
    },
}
