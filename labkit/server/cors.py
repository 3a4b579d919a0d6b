"""CORS for pages on another origin: a student's Jupyter page talking straight to a class server.

On a laptop class server (`labkit serve --classroom`) the lesson widgets' pages are served by each
student's own Jupyter (say `http://localhost:8888`) and reach the class server at its own address:
a cross-origin fetch. The page sends the student's token in `Authorization: Bearer` (WebSockets and
EventSource, which cannot set a header, send `?token=`; see auth.py), so no cookies are involved
and no credentials mode is needed. The browser lets the page read an answer only when the answer
names the page's origin in `Access-Control-Allow-Origin`; a request with `Authorization`, a JSON
body or a method other than GET/HEAD/POST is first asked about with a preflight `OPTIONS`.

The origins allowed are the ones the WebSocket Origin rule allows (`websocket.origin_allowed`): a
loopback page, an origin in `LabConfig.allowed_origins` (`labkit serve --allow-origin ...`,
`lk.start(allowed_origins=[...])`), a page of the student's own Jupyter. For them:

- a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered here, before
  the token is asked for (a browser sends none on a preflight): 204 with the origin, the methods,
  the request headers the kit's pages send (`ALLOW_HEADERS`), `Max-Age`, `Vary: Origin`, and
  `Access-Control-Allow-Private-Network: true` when asked (Chromium's Private Network Access);
- every other answer (errors included, and SSE streams, whose head is prepared by the handler)
  gets `Access-Control-Allow-Origin: <origin>` and `Access-Control-Expose-Headers` (Location,
  ETag, Retry-After), added in `on_response_prepare`.

Every answer of a lab with CORS on says `Vary: Origin`, whatever the request's origin (none, an
allowed one, a foreign one): its CORS headers depend on `Origin`, so a shared cache must keep one
stored answer per origin (RFC 9111 section 4.1). Without it, an answer stored for a request
without `Origin` (or from a foreign page) would be reused for an allowed page, without its
`Access-Control-Allow-Origin`, and the other way round.

A foreign origin gets no CORS header: its preflight is refused with 403 problem+json and the
browser blocks its page from reading any answer. A WebSocket from it is refused by the Origin rule
itself (403 before the upgrade).

It is set up only where a page from another origin is expected: a class server (an instructor
token is set) or a lab given `allowed_origins`. The kernel's own lab is reached through Jupyter's
proxy, on the page's own origin, and keeps its request path as it is.
"""

from __future__ import annotations

from aiohttp import web

from .jupyter_proxy import JUPYTER_ORIGINS
from .keys import CONFIG
from .problem import problem
from .websocket import origin_allowed

ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, If-Match, If-None-Match"
"""The request headers the kit's pages (and the lessons' APIs) send."""
EXPOSE_HEADERS = "Location, ETag, Retry-After"
"""Answer headers a page may read besides the CORS-safelisted ones."""
MAX_AGE_S = 600
"""How long a browser may keep a preflight's answer (Chromium keeps at most 2 h)."""


def allowed(request: web.Request, origin: str) -> bool:
    """True when a page of `origin` may read this lab's answers (the WebSocket Origin rule)."""
    return origin_allowed(origin, request.app[CONFIG].allowed_origins, host=request.host,
                          jupyter_origins=request.app.get(JUPYTER_ORIGINS, ()))


def _vary(response: web.StreamResponse) -> None:
    vary = response.headers.get("Vary", "")
    if "origin" not in vary.lower():
        response.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"


@web.middleware
async def preflight(request: web.Request, handler):
    """Answer a CORS preflight before anything asks for a token; pass everything else on."""
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return await handler(request)
    origin = request.headers.get("Origin")
    if origin is None:
        return await handler(request)
    if not allowed(request, origin):
        return problem(403, f"Origin {origin[:100]!r} may not call this server from a page. The "
                            "instructor allows a page's origin with `labkit serve --classroom "
                            "--allow-origin ORIGIN` (loopback pages are allowed already).")
    headers = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": ALLOW_METHODS,
        "Access-Control-Allow-Headers": ALLOW_HEADERS,
        "Access-Control-Max-Age": str(MAX_AGE_S),
        "Vary": "Origin",
    }
    if request.headers.get("Access-Control-Request-Private-Network", "").lower() == "true":
        headers["Access-Control-Allow-Private-Network"] = "true"
    return web.Response(status=204, headers=headers)


async def stamp(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: name an allowed page's origin on its answer; every answer varies on
    Origin."""
    _vary(response)
    origin = request.headers.get("Origin")
    if origin is None or "Access-Control-Allow-Origin" in response.headers:
        return
    if allowed(request, origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS


def wanted(config) -> bool:
    """CORS is set up for a class server or a lab that names origins of its own."""
    return bool(config.instructor_token or config.allowed_origins)


def setup(app: web.Application) -> None:
    """Add the preflight middleware (outermost of the app's own) and the answer stamp."""
    if not wanted(app[CONFIG]):
        return
    app.middlewares.insert(0, preflight)
    app.on_response_prepare.append(stamp)
