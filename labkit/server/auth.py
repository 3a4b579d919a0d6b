"""Classroom mode: who the request is from, decided in one middleware (off unless an instructor
token is set); what that identity may do is the access policy's (`access.py`), which the middleware
asks for every request.

- Identity per person: each token is one identity. The instructor's token is "instructor"; each
  student token is "student-<8 hex digits of the token's SHA-256>". A class shares one join code
  (the token in the join URL and QR code), so `lk.join` exchanges it for a personal token of its
  own (`POST /api/classroom/join`): every kernel that joins is its own identity (its own chat name,
  rate and resources), and keeps it across kernel restarts (the kit remembers the personal token on
  the student's machine). Personal tokens are kept in the lab's SQLite file (their SHA-256 only),
  so they outlive a class-server restart. For identities tied to people, not machines, give every
  student a token of their own instead (`--token T1 --token T2 ...`): a join code cannot stop a
  removed student from joining again as someone new. Identities are derived from tokens, so they
  stay the same when the class server restarts.
- On a JupyterHub (`labkit serve --classroom --hub-service`), the hub's users are identities too:
  a token the class does not know is handed to `IDENTITIES`, which asks the hub (a user's hub API
  token, or the service's OAuth cookie): "hub:<user name>", the instructor role for hub admins and
  the hub group `labkit-instructors` (`labkit/course/hub_service.py`).
- `/`, `/healthz` and the bank's webhook receiver are open (`access.OPEN_ROUTES`); every other route
  needs a token: the instructor's, or a student one.
- HTTP clients send `Authorization: Bearer <token>`. A browser cannot put a header on a WebSocket
  handshake or an `EventSource`, so those two (and only those) may carry `?token=<token>` instead.
  Python clients that were given a URL with user info (`http://student:<token>@host:port`) send it as
  `Authorization: Basic`; the password part is taken as the token, as many APIs do.
- A missing or wrong token gets 401 problem+json (with `WWW-Authenticate: Bearer`); a request the
  policy refuses gets 403 (`access.enforce`: instructor-only routes, resources of someone else, a
  route without a rule).

Without classroom mode everybody is the instructor of their own lab ("local"), as before. The
middleware also keeps a list of open streams (WebSocket, SSE, long polls) for the instructor's
dashboard (`CONNECTIONS`), and holds each class member to `LabConfig.max_streams_per_identity` of
them at once (the instructor is exempt): one more gets 429 problem+json with Retry-After, a
WebSocket handshake included (refused before the upgrade). It is counted here, at the one door
every route and transport passes, so a new stream route gets the limit without asking for it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from . import access
from .access import INSTRUCTOR_ONLY, OPEN_ROUTES, PRINCIPAL, ROLE, classroom, is_instructor, rule_method
from .keys import CONFIG
from .problem import ProblemError

__all__ = ["CONNECTIONS", "IDENTITIES", "INSTRUCTOR_ONLY", "OPEN_ROUTES", "PERSONAL", "PRINCIPAL",
           "ROLE", "STREAMS", "auth_middleware", "classroom", "identify", "is_instructor",
           "presented_token", "principal_of", "rule_method", "setup", "token_hash"]

CONNECTIONS = web.AppKey("connections", dict)
"""id -> the open stream's record (principal, transport, path, name, peer, since, request)."""

STREAMS = web.AppKey("streams_per_identity", dict)
"""principal -> how many streams it holds open now (the same streams as CONNECTIONS)."""
STREAM_RETRY_AFTER_S = 5
"""Retry-After of the 429 for a member holding its share of streams."""

_ids = itertools.count(1)


def _is_stream(request: web.Request) -> bool:
    """A WebSocket handshake or an SSE request: the browser APIs that cannot send a header."""
    return (request.headers.get("Upgrade", "").lower() == "websocket"
            or request.path.startswith("/sse/"))


def presented_token(request: web.Request) -> str | None:
    """The token the request carries: Bearer (or `token`), Basic's password, or (streams only)
    ?token=."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() in ("bearer", "token"):  # "token": JupyterHub's clients say so
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


PERSONAL = web.AppKey("personal_tokens", dict)
"""SHA-256 of each personal token handed out -> its principal (loaded from the owner store)."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def principal_of(token: str) -> str:
    """The identity a student token stands for."""
    return "student-" + token_hash(token)[:8]


def identify(config, token: str | None, personal: dict[str, str] | None = None
             ) -> tuple[str, str] | None:
    """(role, principal) for `token` under `config` (and the personal tokens handed out), or None
    when it is no token of this class."""
    if not token:
        return None
    if config.instructor_token and _matches(token, config.instructor_token):
        return "instructor", "instructor"
    if any(_matches(token, t) for t in config.student_tokens):
        return "student", principal_of(token)
    if personal and (principal := personal.get(token_hash(token))) is not None:
        return "student", principal
    return None


IdentitySource = Callable[[web.Request, str | None], Awaitable[tuple[str, str] | None]]
IDENTITIES: web.AppKey[IdentitySource] = web.AppKey("identities")
"""Another source of identities, asked when a request's token is none of this class's: an async
`source(request, token) -> (role, principal) | None`. A class server run as a JupyterHub service
sets it (`labkit/course/hub_service.py`: the hub's users, by their hub token or OAuth cookie); what
an identity may do is still decided by the one policy (`access.py`)."""


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
    """Decide who the request is from, then ask the access policy whether it may go on."""
    config = request.app[CONFIG]
    rule = access.rule_for(request)
    who: tuple[str, str] | None
    if rule is not None and rule.who == "open":
        request[ROLE] = "student"
        return await handler(request)
    token = presented_token(request)
    who = identify(config, token, request.app.get(PERSONAL))
    if who is None and (source := request.app.get(IDENTITIES)) is not None:
        who = await source(request, token)
    if who is None:
        where = "Authorization: Bearer <token>" + (" or ?token=<token>" if _is_stream(request) else "")
        raise ProblemError(401, f"this classroom lab needs a token: send {where}.",
                           headers={"WWW-Authenticate": 'Bearer realm="labkit classroom"'})
    request[ROLE], request[PRINCIPAL] = who
    if who[1] != "local":
        await access.enforce(request, rule)
    transport = _transport(request)
    if transport is None:
        response = await handler(request)
        await access.after(request, rule, response)
        return response
    streams: dict[str, int] = request.app[STREAMS]
    held = streams.get(who[1], 0)
    if who[0] != "instructor" and held >= config.max_streams_per_identity:
        raise ProblemError(429, f"you already hold {held} open streams (WebSocket, SSE, long poll) "
                                f"here, the most one class member may ({config.max_streams_per_identity}"
                                "); close one first",
                           headers={"Retry-After": str(STREAM_RETRY_AFTER_S)})
    streams[who[1]] = held + 1
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
        left = streams.get(who[1], 1) - 1
        if left > 0:
            streams[who[1]] = left
        else:
            streams.pop(who[1], None)


def setup(app: web.Application) -> None:
    """Classroom mode only: a lab of one's own has no middleware here (everybody is the local
    instructor, which is what `access.is_instructor` and `access.principal` answer for a request
    nobody identified), so a request costs nothing at this door when nothing applies."""
    app[CONNECTIONS] = {}
    app[STREAMS] = {}
    app[PERSONAL] = {}
    if classroom(app):
        app.middlewares.append(auth_middleware)


OPENAPI_PATHS: dict = {}
