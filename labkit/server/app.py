"""make_app(config): the one aiohttp Application of the lab, assembled from route families.

A route family is a module of `labkit.routes` (or, for the two that are middlewares, of this package)
with `setup(app)` (add routes, state and signals) and
`OPENAPI_PATHS` (its HTTP routes as OpenAPI path items); WebSocket and SSE families may add
`ASYNCAPI_CHANNELS`. Adding a family is one module plus one line in FAMILIES.
"""

from __future__ import annotations

import importlib
import weakref
from types import ModuleType

from aiohttp import web

from . import cors
from .config import LabConfig
from .hostcheck import host_check
from .keys import CONFIG, WEBSOCKETS
from .logs import one_line_server_logs
from .problem import problem_middleware
from .websocket import close_all

FAMILIES = (
    "labkit.routes.core",
    "labkit.routes.echo",
    "labkit.routes.rest",
    "labkit.routes.session",
    "labkit.routes.hub",
    "labkit.routes.feed",
    "labkit.routes.chat",
    "labkit.routes.workers",
    "labkit.server.auth",
    "labkit.routes.classroom",
    "labkit.routes.bank",
    "labkit.routes.iot",
    "labkit.routes.rest_ws",
    "labkit.server.jupyter_proxy",
    "labkit.routes.game",
    "labkit.routes.collab",
)

FAMILY_MODULES = web.AppKey("family_modules", tuple)


def families() -> tuple[ModuleType, ...]:
    """The route family modules, in FAMILIES order."""
    return tuple(importlib.import_module(name) for name in FAMILIES)


def make_app(config: LabConfig | None = None) -> web.Application:
    """Build the lab Application for `config` (defaults: loopback, port 0, temporary database)."""
    config = config or LabConfig()
    one_line_server_logs()
    app = web.Application(
        middlewares=[problem_middleware, host_check],  # serve_app adds the guard's (guard.py)
        client_max_size=config.max_body,
    )
    app[CONFIG] = config
    app[WEBSOCKETS] = weakref.WeakSet()
    app[FAMILY_MODULES] = families()
    for module in app[FAMILY_MODULES]:
        module.setup(app)
    cors.setup(app)  # pages of another origin (a student's Jupyter) on a class server: cors.py
    app.on_shutdown.append(close_all)
    return app
