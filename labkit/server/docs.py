"""The OpenAPI document, assembled from each route family's OPENAPI_PATHS."""

from __future__ import annotations

from aiohttp import web

from .. import __version__

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


def openapi_document(app: web.Application) -> dict:
    """OpenAPI 3.1 for every HTTP route of `app` (WebSocket routes live in the AsyncAPI document)."""
    from .app import FAMILY_MODULES

    paths: dict = {}
    for module in app[FAMILY_MODULES]:
        paths.update(getattr(module, "OPENAPI_PATHS", {}))
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
