"""GET /openapi.json is a valid OpenAPI 3.1 document that lists exactly the HTTP routes the app serves.

The rule, for every route family: each (path, method) that `app.router` serves over plain HTTP is
an operation of the document, and each operation of the document is served. WebSocket handlers
(marked `.websocket = True`) belong to /asyncapi.json and are left out. HEAD is left out on both
sides for paths that have GET (aiohttp answers HEAD with the GET handler); an explicit OPTIONS
handler is an operation like any other.
"""

from __future__ import annotations

import copy

from aiohttp import web
from openapi_spec_validator import validate

from labkit.clients.rest import RestClient
from labkit.routes.docs import openapi_document
from labkit.server.app import make_app

OPERATIONS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def served_operations(app: web.Application) -> set[tuple[str, str]]:
    """(path, METHOD) for every plain-HTTP route of the app's router."""
    served: set[tuple[str, str]] = set()
    for route in app.router.routes():
        if getattr(route.handler, "websocket", False) or route.resource is None:
            continue
        served.add((route.resource.canonical, route.method.upper()))
    with_get = {path for path, method in served if method == "GET"}
    return {(p, m) for p, m in served if not (m == "HEAD" and p in with_get)}


def documented_operations(document: dict) -> set[tuple[str, str]]:
    """(path, METHOD) for every operation of an OpenAPI document."""
    documented = {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method in OPERATIONS
    }
    with_get = {path for path, method in documented if method == "GET"}
    return {(p, m) for p, m in documented if not (m == "HEAD" and p in with_get)}


def mismatch(app: web.Application, document: dict) -> dict[str, list]:
    served, documented = served_operations(app), documented_operations(document)
    return {"served but not documented": sorted(served - documented),
            "documented but not served": sorted(documented - served)}


def test_openapi_document_is_valid_openapi_31(lab):
    with RestClient(lab) as api:
        reply = api.get("/openapi.json")
    assert reply.status == 200
    document = reply.json()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_openapi_lists_exactly_the_routes_the_app_serves(lab):
    with RestClient(lab) as api:
        document = api.get("/openapi.json").json()
    gaps = mismatch(lab.app, document)
    assert gaps == {"served but not documented": [], "documented but not served": []}, gaps
    ids = [op["operationId"] for item in document["paths"].values()
           for method, op in item.items() if method in OPERATIONS]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    assert {("/api/notes/{id}", "PATCH"), ("/api/notes", "POST"), ("/healthz", "GET")} <= \
        documented_operations(document)


def test_the_comparison_catches_an_undocumented_route_and_a_phantom_operation():
    app = make_app()

    async def secret(request):
        return web.Response(text="hidden")

    async def socket(request):
        return web.Response(text="a websocket in real life")

    socket.websocket = True
    app.router.add_get("/api/undocumented", secret)
    app.router.add_route("OPTIONS", "/healthz", secret)
    app.router.add_get("/ws/not-in-openapi", socket)
    document = copy.deepcopy(openapi_document(app))
    document["paths"]["/api/phantom"] = {"get": {"responses": {"200": {"description": "x"}}}}
    gaps = mismatch(app, document)
    assert gaps["served but not documented"] == [("/api/undocumented", "GET"),
                                                 ("/healthz", "OPTIONS")]
    assert gaps["documented but not served"] == [("/api/phantom", "GET")]
