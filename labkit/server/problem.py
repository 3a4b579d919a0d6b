"""HTTP errors as RFC 9457 problem details (`application/problem+json`)."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from aiohttp import WSCloseCode, web

PROBLEM_TYPE = "application/problem+json"
log = logging.getLogger("labkit.server")

OPEN_WEBSOCKET = web.RequestKey("open_websocket", web.WebSocketResponse)
"""Set by `websocket.accept` once the handshake is done: after that an error cannot become an HTTP
answer any more (the connection speaks WebSocket), so the middleware closes the socket instead."""


RFC9110_TITLES = {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}
"""Reason phrases RFC 9110 renamed; Python before 3.13 still says e.g. "Request Entity Too Large"."""


def title(status: int) -> str:
    """The RFC 9110 reason phrase of `status` (e.g. 413 "Content Too Large")."""
    return RFC9110_TITLES.get(status) or HTTPStatus(status).phrase


def problem(status: int, detail: str, *, headers: dict | None = None, **extra) -> web.Response:
    """Build a problem+json response with `type`, `title`, `status`, `detail` and any extra members."""
    body = {
        "type": "about:blank",
        "title": title(status),
        "status": status,
        "detail": detail,
        **extra,
    }
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )


class ProblemError(Exception):
    """Raise from a handler to answer with a problem; `extra` becomes members of the body."""

    def __init__(self, status: int, detail: str, *, headers: dict | None = None, **extra):
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers, extra

    def response(self) -> web.Response:
        return problem(self.status, self.detail, headers=self.headers, **self.extra)


_DETAILS = {
    404: "No route matches this path. GET / lists every route.",
    405: "This route does not accept that method; the Allow header lists the ones it does.",
    413: "The request body is larger than this lab accepts.",
}


@web.middleware
async def problem_middleware(request: web.Request, handler):
    """Turn every error into problem+json (`answer_error`). An app served by `guard.serve_app`
    has this folded into the guard's own middleware instead: one coroutine less per request and
    per open WebSocket."""
    try:
        return await handler(request)
    except Exception as exc:
        return await answer_error(request, exc)


async def answer_error(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The problem+json answer to an error a handler raised: aiohttp's HTTP errors keep their
    status (a redirect, below 400, is raised again), anything else is a 500 that is logged here and
    never shows a traceback to the user. After a WebSocket handshake the socket is closed instead
    (1001 for a peer gone mid-request, 1011 for a bug of ours)."""
    if isinstance(exc, ProblemError):
        return exc.response()
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        detail = _DETAILS.get(exc.status) or exc.text or exc.reason
        if exc.status == 413:
            detail = f"{_DETAILS[413]} ({exc.text})"
        return problem(exc.status, detail, headers=headers)
    if isinstance(exc, ConnectionError):
        # The client went away mid-request (e.g. it sent less body than its Content-Length). The
        # answer is most likely undeliverable; aiohttp drops it quietly if so.
        return await _after_upgrade(request, WSCloseCode.GOING_AWAY) or problem(
            400, "The connection ended before the request was complete."
        )
    # a bug of ours: log it here, never send a traceback to the user
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return await _after_upgrade(request, WSCloseCode.INTERNAL_ERROR) or problem(
        500, "The lab server hit an unexpected error; it is logged on the server."
    )


async def _after_upgrade(request: web.Request, code: int) -> web.WebSocketResponse | None:
    """The request's WebSocket, closed with `code`, if the handshake was done (else None)."""
    ws = request.get(OPEN_WEBSOCKET)
    if ws is None:
        return None
    if not ws.closed:
        try:
            await ws.close(code=code, message=b"unexpected server error" if code == 1011 else b"")
        except Exception:  # the peer is gone already: nothing left to tell it
            log.debug("could not close the WebSocket of %s", request.path, exc_info=True)
    return ws
