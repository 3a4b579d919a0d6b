"""The Host check: the lab answers only requests addressed to it by a loopback name (DNS rebinding guard).

A web page on any site can make its own name resolve to 127.0.0.1 and then send requests to the lab
from the user's browser: the browser thinks it talks to `evil.example:PORT` and lets the page read the
answers. What gives it away is the `Host` header, which still says `evil.example`. So, the way Jupyter
Server does it (`check_host`), the lab accepts only:

- a loopback name: `localhost` (and `*.localhost`, which browsers resolve to loopback themselves);
- a loopback address: `127.0.0.1` (any 127.x.y.z), `[::1]`;
- the address the lab was bound to, when it is not a wildcard (`lk.start(host="192.168.1.5")`);
- a name listed in `LabConfig.allowed_hosts` (`lk.start(allowed_hosts=["lab.example"])`; `"*"`: any);
- a Host that one of the app's `HOST_RULES` accepts (a route family may add a rule in its `setup`).

Anything else gets 403 problem+json, on every route, WebSocket upgrades included (the middleware runs
before any handler). Without a `Host` header an HTTP/1.1 request is refused by aiohttp's parser (400);
an HTTP/1.0 one (old tools; never a browser) is served.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable

from aiohttp import web

from .keys import CONFIG
from .problem import ProblemError

HOST_RULES = web.AppKey("host_rules", list)
"""Extra rules `rule(app, host_header) -> bool`; a Host any of them accepts is served."""
HostRule = Callable[[web.Application, str], bool]

LOOPBACK_NAMES = ("localhost",)
_HOST_PORT = re.compile(r"(?P<host>\[[^\]]*\]|[^:]*)(?::[0-9]*)?")
_WILDCARDS = ("", "0.0.0.0", "::")


def host_name(header: str) -> str:
    """The host part of a `Host` header, lower case, without port or IPv6 brackets ('' if malformed)."""
    match = _HOST_PORT.fullmatch(header.strip())
    if match is None:
        return ""
    host = match["host"].lower()
    return host[1:-1] if host.startswith("[") else host


def is_loopback(host: str) -> bool:
    """True for a loopback name or address (`host` as `host_name` returns it)."""
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_allowed(header: str, bound: str = "127.0.0.1", allowed: tuple[str, ...] = ()) -> bool:
    """True when a request with this `Host` header may be served (see the module docstring)."""
    host = host_name(header)
    if not host:
        return False
    if "*" in allowed or is_loopback(host):
        return True
    bound = bound.strip("[]").lower()
    return (bound not in _WILDCARDS and host == bound) or host in {a.strip("[]").lower() for a in allowed}


@functools.lru_cache(maxsize=256)
def _allowed_kept(header: str, bound: str, allowed: tuple[str, ...]) -> bool:
    """`host_allowed`, remembered for the last 256 distinct (Host, bound, allowed) triples: a
    browser or client sends the same Host on every request, so the hot path is one lookup."""
    return host_allowed(header, bound, allowed)


def refusal(request: web.Request) -> web.Response | None:
    """The 403 problem+json for a request whose `Host` is not the lab's, or None to serve it."""
    header = request.headers.get("Host")
    if header is None:
        return None
    config = request.app[CONFIG]
    if _allowed_kept(header, config.host, tuple(config.allowed_hosts)) or any(
        rule(request.app, header) for rule in request.app.get(HOST_RULES, ())
    ):
        return None
    return ProblemError(
        403,
        f"Host {header[:100]!r} is not allowed: the lab answers only requests addressed to "
        "localhost, 127.0.0.1 or [::1] (a guard against DNS rebinding). To reach it under "
        "another name, start it with lk.start(allowed_hosts=[...]).",
    ).response()


@web.middleware
async def host_check(request: web.Request, handler):
    """Refuse (403 problem+json) a request whose `Host` is not the lab's; see the module docstring.
    An app served by `guard.serve_app` runs `refusal` inside the guard's own middleware instead
    (one coroutine less per request and per open WebSocket); the answer is the same."""
    refused = refusal(request)
    if refused is not None:
        return refused
    return await handler(request)
