"""Route family "core": the index of routes, the health check and the OpenAPI document."""

from __future__ import annotations

import html

from aiohttp import web

from labkit import __version__

routes = web.RouteTableDef()


def route_index(app: web.Application) -> list[dict]:
    """One entry per path the app serves: path, methods, kind (http or websocket), summary."""
    by_path: dict[str, dict] = {}
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else str(route)
        entry = by_path.setdefault(path, {"path": path, "methods": [], "kind": "http", "summary": ""})
        if route.method not in ("HEAD", "*") and route.method not in entry["methods"]:
            entry["methods"].append(route.method)
        doc = (route.handler.__doc__ or "").strip().splitlines()
        if doc and not entry["summary"]:
            entry["summary"] = doc[0]
        if getattr(route.handler, "websocket", False):
            entry["kind"] = "websocket"
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
        return web.json_response({"name": "labkit lab server", "version": __version__, "routes": entries})
    rows = "".join(
        f"<tr><td>{' '.join(e['methods']) if e['kind'] == 'http' else 'WS'}</td>"
        f"<td><code>{html.escape(e['path'])}</code></td><td>{html.escape(e['summary'])}</td></tr>"
        for e in entries
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>labkit lab server</title></head>"
        "<body><h1>labkit lab server</h1><table><tr><th>methods</th><th>path</th><th>what</th></tr>"
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
    """AsyncAPI 3.0 document of every WebSocket channel."""
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
            "summary": "AsyncAPI 3.0 document of the WebSocket channels",
            "operationId": "asyncapi",
            "responses": {"200": {"description": "AsyncAPI 3.0 document", "content": _JSON}},
        }
    },
}
