"""Classroom mode: who may do what, decided in one middleware (off unless an instructor token is set).

- `/` and `/healthz` are open; every other route needs a token: the instructor's, or a student one.
- HTTP clients send `Authorization: Bearer <token>`. A browser cannot put a header on a WebSocket
  handshake or an `EventSource`, so those two (and only those) may carry `?token=<token>` instead.
  Python clients that were given a URL with user info (`http://student:<token>@host:port`) send it as
  `Authorization: Basic`; the password part is taken as the token, as many APIs do.
- A missing or wrong token gets 401 problem+json (with `WWW-Authenticate: Bearer`); a student asking
  for an instructor's action gets 403.
- Instructor's actions: the routes in INSTRUCTOR_ONLY (the feed ticker, removing a chat member, the
  classroom statistics), and changing or deleting a resource that someone else created: whoever's POST
  answered 201 with a `Location` owns that resource; PUT, PATCH and DELETE on it are the owner's or
  the instructor's. Each student token is one owner (give `--token` several times for several).

Routes that need a finer rule ask `is_instructor(request)`; routes that carry changes outside HTTP
methods (the `/ws/rest` messages) ask the same `require_owner` / `remember_owner` the middleware
does. Without classroom mode everybody is the instructor of their own lab, as before. The middleware
also keeps a list of open streams (WebSocket, SSE, long polls) for the instructor's dashboard
(`CONNECTIONS`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import time

from aiohttp import web
from yarl import URL

from .keys import CONFIG
from .problem import ProblemError

OPEN_PATHS = frozenset({"/", "/healthz", "/api/webhooks/provider"})
"""Routes that need no token: the index, the liveness check, and the bank's webhook receiver (the
payment provider is another company's server: its webhooks prove themselves by their HMAC
signature, which the bank checks, not by a class token)."""

INSTRUCTOR_ONLY = frozenset({
    ("POST", "/api/feed/source"),
    ("DELETE", "/api/chat/members/{name}"),
    ("GET", "/api/classroom"),
    ("POST", "/api/bank/webhook-outage"),
})
"""(method, route) pairs only the instructor may call. A GET entry covers HEAD too (`rule_method`)."""

ROLE = web.RequestKey("role", str)
""""instructor" or "student" (everyone is "instructor" outside classroom mode)."""
PRINCIPAL = web.RequestKey("principal", str)
"""Who made the request: "instructor", or "student-<8 hex digits of the token's hash>"."""
OWNERS = web.AppKey("owners", dict)
"""Path of a created resource -> the principal who created it."""
CONNECTIONS = web.AppKey("connections", dict)
"""id -> the open stream's record (principal, transport, path, name, peer, since, request)."""

_ids = itertools.count(1)


def classroom(app: web.Application) -> bool:
    """True when the lab runs in classroom mode (an instructor token is set)."""
    return app[CONFIG].instructor_token is not None


def is_instructor(request: web.Request) -> bool:
    """The one question routes ask: may this request do what only the instructor may?"""
    return request.get(ROLE, "instructor") == "instructor"


def owns(request: web.Request, path: str) -> bool:
    """True when the request's sender created the resource at `path` (or is the instructor)."""
    if is_instructor(request):
        return True
    principal = request.get(PRINCIPAL)
    return principal is not None and request.app[OWNERS].get(path) == principal


OWNER_ONLY = "only whoever created this resource, or the instructor, may change or delete it."


def require_owner(request: web.Request, path: str) -> None:
    """The one ownership rule: 403 unless the request's sender may change or delete the resource
    at `path` (they created it, or they are the instructor). The middleware asks it for every HTTP
    PUT, PATCH and DELETE; a route that carries such operations another way (`/ws/rest` messages)
    asks it for each one."""
    if not owns(request, path):
        raise ProblemError(403, OWNER_ONLY)


def remember_owner(request: web.Request, path: str) -> None:
    """Record the request's sender as the owner of the resource just created at `path` (the
    middleware does it for every HTTP POST answered 201 with a Location)."""
    principal = request.get(PRINCIPAL)
    if principal is not None:
        request.app[OWNERS][path] = principal


def _is_stream(request: web.Request) -> bool:
    """A WebSocket handshake or an SSE request: the browser APIs that cannot send a header."""
    return (request.headers.get("Upgrade", "").lower() == "websocket"
            or request.path.startswith("/sse/"))


def presented_token(request: web.Request) -> str | None:
    """The token the request carries: Bearer, Basic's password, or (streams only) ?token=."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2] or None
        except (binascii.Error, UnicodeDecodeError):
            return None
    if _is_stream(request):
        return request.query.get("token") or None
    return None


def _matches(token: str, expected: str) -> bool:
    return hmac.compare_digest(token.encode(), expected.encode())


def identify(config, token: str | None) -> tuple[str, str] | None:
    """(role, principal) for `token` under `config`, or None when it is no token of this class."""
    if not token:
        return None
    if config.instructor_token and _matches(token, config.instructor_token):
        return "instructor", "instructor"
    if any(_matches(token, t) for t in config.student_tokens):
        return "student", "student-" + hashlib.sha256(token.encode()).hexdigest()[:8]
    return None


def _route(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else request.path


def _transport(request: web.Request) -> str | None:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return "WebSocket"
    if request.path.startswith("/sse/"):
        return "SSE"
    if rule_method(request.method) == "GET" and "wait" in request.query:
        return "long poll"
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler):
    """Decide who the request is from and whether it may go on (see the module's docstring)."""
    config = request.app[CONFIG]
    who: tuple[str, str] | None
    if config.instructor_token is None:
        who = ("instructor", "local")
    elif request.path in OPEN_PATHS:
        request[ROLE] = "student"
        return await handler(request)
    else:
        who = identify(config, presented_token(request))
    if who is None:
        where = "Authorization: Bearer <token>" + (" or ?token=<token>" if _is_stream(request) else "")
        raise ProblemError(401, f"this classroom lab needs a token: send {where}.",
                           headers={"WWW-Authenticate": 'Bearer realm="labkit classroom"'})
    request[ROLE], request[PRINCIPAL] = who
    _refuse_students(request)
    transport = _transport(request)
    if transport is None:
        response = await handler(request)
        _remember_owner(request, response)
        return response
    conn_id = next(_ids)
    request.app[CONNECTIONS][conn_id] = {
        "id": conn_id, "principal": who[1], "role": who[0], "transport": transport,
        "path": request.path, "name": request.query.get("name", ""), "peer": request.remote or "",
        "since": time.time(), "request": request,
    }
    try:
        return await handler(request)
    finally:
        request.app[CONNECTIONS].pop(conn_id, None)


def rule_method(method: str) -> str:
    """The method whose rule a request obeys: HEAD is GET without the body (aiohttp answers it with
    the GET handler), so it obeys GET's rule exactly; every other method its own."""
    return "GET" if method == "HEAD" else method


def _refuse_students(request: web.Request) -> None:
    if is_instructor(request):
        return
    if (rule_method(request.method), _route(request)) in INSTRUCTOR_ONLY:
        raise ProblemError(403, f"{request.method} {_route(request)} is the instructor's to do.")
    if request.method in ("PUT", "PATCH", "DELETE"):
        require_owner(request, request.path)


def _remember_owner(request: web.Request, response: web.StreamResponse) -> None:
    location = response.headers.get("Location") if request.method == "POST" else None
    if response.status == 201 and location:
        remember_owner(request, request.url.join(URL(location)).path)


def setup(app: web.Application) -> None:
    app[OWNERS] = {}
    app[CONNECTIONS] = {}
    app.middlewares.append(auth_middleware)


OPENAPI_PATHS: dict = {}
