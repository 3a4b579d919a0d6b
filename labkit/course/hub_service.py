"""The class server as a JupyterHub managed service, under `/services/labkit/`.

    # jupyterhub_config.py (the whole recipe: instructors/jupyterhub_config.py)
    c.JupyterHub.services = [{"name": "labkit", "url": "http://127.0.0.1:8765", "oauth_no_confirm": True,
                              "command": [sys.executable, "-m", "labkit", "serve", "--classroom",
                                          "--hub-service"]}]

The hub starts the service with an environment of its own (`hub_settings` reads it):
JUPYTERHUB_SERVICE_URL (where to listen), JUPYTERHUB_SERVICE_PREFIX (`/services/labkit/`),
JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN (the hub's REST API and the service's own token),
JUPYTERHUB_CLIENT_ID and JUPYTERHUB_OAUTH_CALLBACK_URL (its OAuth client), JUPYTERHUB_BASE_URL,
and JUPYTERHUB_PUBLIC_URL when the hub knows its public URL. The hub's proxy forwards
`<hub>/services/labkit/...` to the service with the path prefix included.

Size: longer than 500 lines because a hub service is one concept with four parts that only make
sense together: the hub's settings, the identities checked with the hub (cache, rationing), the
OAuth login with its cookie rules, and the prefix the hub's proxy keeps on every path.

Who (`HubIdentities`): the class server's identities (`server/auth.py`) gain the hub's users. A
token the class does not know is checked with the hub: `GET {JUPYTERHUB_API_URL}/user` with that
token, the hub's "whoami" (what `jupyterhub.services.auth.HubAuth.user_for_token` does). The token is
the user's hub API token (in a hub kernel: JUPYTERHUB_API_TOKEN), or the OAuth access token the hub
issued to this service for a browser, kept in the service's cookie. The reply names the user, says
whether they are a hub admin and which groups they are in, and lists the token's scopes, which must
grant access to this service (`access:services!service=labkit` or `access:services`): a token that
may not reach the service is refused like an unknown one (401). Identity: "hub:<user name>"; role:
"instructor" for hub admins and members of the hub group `labkit-instructors`
(`--hub-instructor-group`), else "student". Answers are kept CACHE_TTL_S seconds, accepted tokens for
at most CACHE_SIZE, refusals apart for at most REFUSED_SIZE (the least recently used goes first), so
a class's requests do not each cost a round trip to the hub, a repeated bad token costs one, and
refused tokens cannot push the class's identities out. Concurrent requests with one unknown token
share one round trip; distinct unknown tokens (forged ones too) each cost one, so those are rationed
for the whole service (a token bucket: ASK_BURST, then ASK_RATE_PER_S; beyond it 503 without asking
the hub). What an identity may do is the one access policy's (`server/access.py`); nothing here
decides it.

Browsers: a page of the hub sends no token. A GET that asks for HTML without credentials, or
`<prefix>oauth_login`, goes through the hub's OAuth login (`<prefix>oauth_callback`), which ends with
an HttpOnly cookie (path: the prefix) holding the access token; fetch() and WebSockets of hub pages
(the lessons' browser widgets, same origin) carry it from then on. Requests of other kinds without
credentials get the class server's 401. The cookie is ambient (a browser sends it whichever page
asks), so it counts only for GET/HEAD, or for a WebSocket handshake or another method whose `Origin`
is the hub's public origin (`cookie_request_allowed`; else 403): JupyterHub's own HubOAuth checks
XSRF too. A page under `/user/<name>/` of a hub without subdomains has that origin as well
(instructors/jupyterhub.md says so and recommends subdomains).

Paths: the lab's routes and access rules are written without the prefix, so the service strips it
before routing (`strip_prefix`, on the server's request factory) and puts it back on `Location`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from aiohttp import ClientError, ClientSession, ClientTimeout, web
from yarl import URL

CACHE_TTL_S = 30.0
"""Seconds the hub's answer about one token is kept (refusals too)."""
CACHE_SIZE = 4096
"""Most tokens whose answer is kept at once."""
ASK_RATE_PER_S = 50.0
"""Tokens the cache does not know that may be checked with the hub per second, on average (all
callers together: behind the hub's proxy every caller has the proxy's address); beyond it and its
burst 503 with Retry-After, without asking the hub."""
ASK_BURST = 200
"""Unknown tokens that may be checked at once before the rate applies (a class arriving together)."""
REFUSED_SIZE = 1024
"""Most refused tokens whose refusal is kept at once, apart from the accepted ones, so tokens the
hub refuses (forged ones) cannot push the class's identities out of the cache."""
HUB_TIMEOUT_S = 10.0
"""Longest wait for the hub's API; then 503 (the hub is the one who knows)."""
INSTRUCTOR_GROUP = "labkit-instructors"
"""The hub group whose members are the class's instructors (as are the hub's admins)."""
STATE_MAX_AGE_S = 600
"""Seconds a browser has to come back from the hub's login page."""
SERVICE_NAME = "labkit"


@dataclass(frozen=True)
class HubSettings:
    """What the hub told the service in its environment (see the module docstring)."""

    name: str
    prefix: str
    host: str
    port: int
    api_url: str
    api_token: str = field(repr=False)
    client_id: str
    callback_url: str
    base_url: str = "/"
    public_url: str | None = None
    instructor_group: str = INSTRUCTOR_GROUP

    @property
    def cookie_name(self) -> str:
        return f"labkit-hub-{self.name}"

    @property
    def state_cookie_name(self) -> str:
        return f"labkit-hub-{self.name}-state"

    @property
    def public_origin(self) -> str | None:
        """The origin of the hub's public URL (scheme://host[:port], default port left out)."""
        return _origin(self.public_url) if self.public_url else None

    @property
    def access_scopes(self) -> frozenset[str]:
        return frozenset({"access:services", f"access:services!service={self.name}"})


def _origin(url: str) -> str | None:
    """scheme://host[:port] of `url`, lower case, without the scheme's default port, as browsers
    send it in `Origin`; None for something that is no origin ("null", no host)."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https", "ws", "wss") or not host:
        return None
    scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


def _prefix(path: str) -> str:
    return "/" + path.strip("/") + "/" if path.strip("/") else "/"


def hub_settings(environ=None, *, instructor_group: str = INSTRUCTOR_GROUP) -> HubSettings:
    """The service's settings from the hub's environment; ValueError naming what is missing (the
    command was not started by a hub as a managed service)."""
    env = os.environ if environ is None else environ
    missing = [n for n in ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_SERVICE_URL")
               if not env.get(n)]
    if missing:
        raise ValueError(f"--hub-service runs as a JupyterHub managed service: the hub sets "
                         f"{', '.join(missing)} (see instructors/jupyterhub.md)")
    name = env.get("JUPYTERHUB_SERVICE_NAME") or SERVICE_NAME
    bind = urlsplit(env["JUPYTERHUB_SERVICE_URL"])
    prefix = _prefix(env.get("JUPYTERHUB_SERVICE_PREFIX") or f"/services/{name}/")
    return HubSettings(
        name=name, prefix=prefix, host=bind.hostname or "127.0.0.1", port=bind.port or 80,
        api_url=env["JUPYTERHUB_API_URL"].rstrip("/"), api_token=env["JUPYTERHUB_API_TOKEN"],
        client_id=env.get("JUPYTERHUB_CLIENT_ID") or f"service-{name}",
        callback_url=env.get("JUPYTERHUB_OAUTH_CALLBACK_URL") or prefix + "oauth_callback",
        base_url=_prefix(env.get("JUPYTERHUB_BASE_URL") or "/"),
        public_url=env.get("JUPYTERHUB_PUBLIC_URL") or None, instructor_group=instructor_group)


# -- who a hub token is ----------------------------------------------------------------------------
class HubIdentities:
    """(role, principal) of a hub user's token, asked of the hub and kept briefly (bounded)."""

    def __init__(self, settings: HubSettings, *, ttl: float = CACHE_TTL_S, size: int = CACHE_SIZE,
                 refused_size: int = REFUSED_SIZE, rate: float = ASK_RATE_PER_S,
                 burst: int = ASK_BURST):
        self.settings, self.ttl, self.size, self.refused_size = settings, ttl, size, refused_size
        self.cache: OrderedDict[str, tuple[float, tuple[str, str] | None]] = OrderedDict()
        """Accepted tokens (by SHA-256) -> (kept until, who)."""
        self.refused: OrderedDict[str, tuple[float, tuple[str, str] | None]] = OrderedDict()
        """Refused tokens, kept apart (at most refused_size) so they cannot evict accepted ones."""
        self.pending: dict[str, asyncio.Future] = {}
        """Tokens being checked with the hub now: concurrent callers share the one round trip."""
        self.rate, self.burst = rate, burst
        self.allowance, self.last = float(burst), time.monotonic()
        self.asked = 0
        """Round trips made to the hub (the cache's misses)."""
        self.throttled = 0
        """Unknown tokens answered 503 without asking the hub (over the rate)."""
        self.session: ClientSession | None = None

    def http(self) -> ClientSession:
        if self.session is None or self.session.closed:
            self.session = ClientSession(timeout=ClientTimeout(total=HUB_TIMEOUT_S))
        return self.session

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def who(self, model: dict) -> tuple[str, str] | None:
        """(role, principal) for the hub's whoami reply, or None when it may not use the service."""
        if model.get("kind", "user") != "user" or not isinstance(model.get("name"), str):
            return None
        if not self.settings.access_scopes & set(model.get("scopes") or ()):
            return None
        groups = model.get("groups") or ()
        role = "instructor" if model.get("admin") is True or self.settings.instructor_group in groups \
            else "student"
        return role, "hub:" + model["name"]

    async def ask_hub(self, token: str) -> tuple[str, str] | None:
        from labkit.server.problem import ProblemError

        self.asked += 1
        try:
            async with self.http().get(f"{self.settings.api_url}/user",
                                           headers={"Authorization": f"token {token}"}) as reply:
                if reply.status in (401, 403, 404):
                    return None
                if reply.status != 200:
                    raise ProblemError(503, f"the hub answered {reply.status} when asked who this is",
                                       headers={"Retry-After": "5"})
                model = await reply.json(content_type=None)
        except (ClientError, TimeoutError, ValueError) as exc:
            raise ProblemError(503, f"could not ask the hub who this is ({type(exc).__name__})",
                               headers={"Retry-After": "5"}) from None
        return self.who(model) if isinstance(model, dict) else None

    def _spend(self) -> None:
        """Take one hub round trip from the token bucket, or refuse (503) without asking the hub."""
        from labkit.server.problem import ProblemError

        now = time.monotonic()
        self.allowance = min(float(self.burst), self.allowance + (now - self.last) * self.rate)
        self.last = now
        if self.allowance < 1.0:
            self.throttled += 1
            raise ProblemError(503, "too many unknown tokens are being checked with the hub right "
                                    "now; try again in a moment", headers={"Retry-After": "1"})
        self.allowance -= 1.0

    def _keep(self, key: str, who: tuple[str, str] | None) -> None:
        store, size = (self.cache, self.size) if who is not None else (self.refused, self.refused_size)
        store[key] = (time.monotonic() + self.ttl, who)
        store.move_to_end(key)
        while len(store) > size:
            store.popitem(last=False)

    async def _ask_and_keep(self, key: str, token: str) -> tuple[str, str] | None:
        who = await self.ask_hub(token)
        self._keep(key, who)
        return who

    async def identify_token(self, token: str) -> tuple[str, str] | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        for store in (self.cache, self.refused):
            kept = store.get(key)
            if kept is not None and kept[0] > now:
                store.move_to_end(key)
                return kept[1]
        flight = self.pending.get(key)
        if flight is None:
            self._spend()
            flight = asyncio.ensure_future(self._ask_and_keep(key, token))
            self.pending[key] = flight
            flight.add_done_callback(lambda done: (self.pending.pop(key, None),
                                                   done.cancelled() or done.exception()))
        return await asyncio.shield(flight)

    async def source(self, request: web.Request, token: str | None) -> tuple[str, str] | None:
        """The `auth.IDENTITIES` source: the presented token, else the service's OAuth cookie (only
        for a request a page of the hub's own origin may have sent: `cookie_request_allowed`)."""
        if not token:
            token = request.cookies.get(self.settings.cookie_name)
            if not token:
                return None
            cookie_request_allowed(request, self.settings)
        return await self.identify_token(token)


SAFE_METHODS = frozenset({"GET", "HEAD"})


def hub_origin(request: web.Request, settings: HubSettings) -> str | None:
    """The hub's public origin: from its public URL, else the one the browser reached (the proxy
    keeps `Host`; `X-Forwarded-Proto` says whether it was https). A page cannot set either on a
    cross-origin request."""
    if settings.public_origin:
        return settings.public_origin
    scheme = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() \
        or request.scheme
    return _origin(f"{scheme}://{request.host}")


def cookie_request_allowed(request: web.Request, settings: HubSettings) -> None:
    """Refuse (403) a request that relies on the service's cookie but may come from a page of
    another origin (cross-site request forgery): only GET/HEAD pass whatever their `Origin`; a
    WebSocket handshake, and every other method, needs `Origin` equal to the hub's public origin
    (browsers always send it on both). A request with a token in a header needs neither."""
    websocket = request.headers.get("Upgrade", "").lower() == "websocket"
    if request.method in SAFE_METHODS and not websocket:
        return
    from labkit.server.problem import ProblemError

    origin = request.headers.get("Origin")
    expected = hub_origin(request, settings)
    if origin is not None and expected is not None and _origin(origin) == expected:
        return
    what = "a WebSocket handshake" if websocket else f"a {request.method} request"
    raise ProblemError(403, f"{what} signed in by the class server's cookie must come from a page of "
                            f"the hub ({expected or 'its public URL'}), not from "
                            f"{origin or 'a page that sent no Origin'}; scripts send their token "
                            "in Authorization instead")


# -- browsers: the hub's OAuth login, the path prefix ---------------------------------------------
def _safe_next(settings: HubSettings, target: str | None) -> str:
    """Where to send the browser after login: a path under the prefix only (no open redirect)."""
    if target and target.startswith(settings.prefix) and not target.startswith("//") \
            and "\\" not in target:
        return target
    return settings.prefix


def _https(request: web.Request, settings: HubSettings) -> bool | None:
    """Whether the browser reached the hub over https (TLS usually ends at the hub's proxy, so the
    service itself sees http): then its cookies are Secure."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    if request.secure or forwarded == "https" or (settings.public_url or "").startswith("https:"):
        return True
    return None


def _login_redirect(request: web.Request, settings: HubSettings, target: str) -> web.Response:
    state = secrets.token_urlsafe(24)
    query = urlencode({"client_id": settings.client_id, "redirect_uri": settings.callback_url,
                       "response_type": "code", "state": state})
    response = web.HTTPFound(f"{settings.base_url}hub/api/oauth2/authorize?{query}")
    response.set_cookie(settings.state_cookie_name,
                        f"{state}|{_safe_next(settings, target)}", path=settings.prefix,
                        max_age=STATE_MAX_AGE_S, httponly=True, samesite="Lax",
                        secure=_https(request, settings))
    return response


async def _oauth_callback(request: web.Request, settings: HubSettings,
                          identities: HubIdentities) -> web.StreamResponse:
    from labkit.server.problem import ProblemError

    state, _, target = request.cookies.get(settings.state_cookie_name, "").partition("|")
    code = request.query.get("code", "")
    if not state or not code or not hmac.compare_digest(state, request.query.get("state", "")):
        raise ProblemError(400, "this OAuth callback does not match a login started here; open "
                                f"{settings.prefix}oauth_login again")
    form = {"client_id": settings.client_id, "client_secret": settings.api_token,
            "grant_type": "authorization_code", "code": code, "redirect_uri": settings.callback_url}
    try:
        async with identities.http().post(f"{settings.api_url}/oauth2/token", data=form) as reply:
            body = await reply.json(content_type=None)
            status = reply.status
    except (ClientError, TimeoutError, ValueError) as exc:
        raise ProblemError(503, f"could not reach the hub to finish the login ({type(exc).__name__})",
                           headers={"Retry-After": "5"}) from None
    token = body.get("access_token") if isinstance(body, dict) and status == 200 else None
    if not isinstance(token, str) or await identities.identify_token(token) is None:
        raise ProblemError(403, "the hub did not grant this user access to the class server")
    response = web.HTTPFound(_safe_next(settings, target))
    response.set_cookie(settings.cookie_name, token, path=settings.prefix, httponly=True,
                        samesite="Lax", secure=_https(request, settings))
    response.del_cookie(settings.state_cookie_name, path=settings.prefix)
    return response


def _has_credentials(request: web.Request, settings: HubSettings) -> bool:
    return bool(request.headers.get("Authorization") or request.query.get("token")
                or request.cookies.get(settings.cookie_name))


def hub_middleware(settings: HubSettings, identities: HubIdentities):
    """Middleware (before the classroom's): the OAuth login and callback, a browser without
    credentials sent to log in, and the prefix put back on `Location` headers."""

    @web.middleware
    async def hub_login(request: web.Request, handler):
        path = request.path
        if path == "/oauth_callback":
            return await _oauth_callback(request, settings, identities)
        if path == "/oauth_login":
            return _login_redirect(request, settings, request.query.get("next", settings.prefix))
        if (request.method == "GET" and "text/html" in request.headers.get("Accept", "")
                and request.headers.get("Upgrade", "").lower() != "websocket"
                and not _has_credentials(request, settings)):
            return _login_redirect(request, settings, settings.prefix.rstrip("/") + request.path_qs)
        response = await handler(request)
        location = response.headers.get("Location", "")
        if location.startswith("/") and not location.startswith("//") \
                and not location.startswith(settings.prefix):
            response.headers["Location"] = settings.prefix.rstrip("/") + location
        return response

    return hub_login


def strip_prefix(factory, prefix: str):
    """A request factory that drops `prefix` from each request's path before routing (the hub's
    proxy forwards `/services/labkit/api/clock` as it is; the lab's route is `/api/clock`)."""
    bare = prefix.rstrip("/")

    def make(message, payload, protocol, writer, task):
        request = factory(message, payload, protocol, writer, task)
        rel = request.rel_url
        raw = rel.raw_path
        if raw == bare or raw.startswith(bare + "/"):
            rest = raw[len(bare):] or "/"
            request = request.clone(rel_url=URL.build(path=rest, query_string=rel.raw_query_string,
                                                      encoded=True))
        return request

    return make


# -- the service ----------------------------------------------------------------------------------
def serve_hub_service(db: str | None, *, instructor_token_file: str | None = None, origins=(),
                      limits: dict | None = None, instructor_group: str = INSTRUCTOR_GROUP,
                      environ=None) -> int:
    """Run the class server as the hub's managed service until SIGTERM (the hub stops it so)."""
    from labkit.server.app import make_app
    from labkit.server.auth import IDENTITIES, auth_middleware
    from labkit.server.guard import serve_app

    from .classroom import classroom_config, default_token_file, instructor_secret

    try:
        settings = hub_settings(environ, instructor_group=instructor_group)
    except ValueError as exc:
        print(f"labkit serve: {exc}", file=sys.stderr)
        return 2
    token_file = Path(instructor_token_file) if instructor_token_file else default_token_file()
    try:
        instructor_token = instructor_secret(token_file)
    except OSError as exc:
        print(f"labkit serve: cannot keep the instructor token in {token_file}: {exc}", file=sys.stderr)
        return 2
    public = [u for u in (settings.public_url, *origins) if u]
    hosts = tuple(sorted({h for u in public if (h := urlsplit(u).hostname)}))

    async def _main() -> int:
        workdir = None if db else tempfile.TemporaryDirectory(prefix="labkit-hub-")
        path = str(Path(workdir.name) / "lab.db") if workdir is not None else str(db)
        # every connection comes from the hub's proxy: one address, so no per-peer share (the
        # per-identity stream limit, max_streams_per_identity, keeps one student from the rest)
        config = classroom_config(settings.host, settings.port, path, (), instructor_token,
                                  tuple(origins), False, {"per_peer_share": 1.0, **(limits or {})})
        if hosts:
            from dataclasses import replace

            config = replace(config, allowed_hosts=tuple(sorted({*config.allowed_hosts, *hosts})))
        identities = HubIdentities(settings)
        app = make_app(config)
        app[IDENTITIES] = identities.source
        app.middlewares.insert(app.middlewares.index(auth_middleware),
                               hub_middleware(settings, identities))
        try:
            served = await serve_app(app, settings.host, settings.port, config=config)
        except OSError as exc:
            print(f"labkit serve: cannot bind {settings.host}:{settings.port}: {exc.strerror or exc}.",
                  file=sys.stderr)
            return 2
        server = served.runner.server
        assert server is not None
        server.request_factory = strip_prefix(server.request_factory, settings.prefix)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(json.dumps({"labkit": "hub service", "prefix": settings.prefix, "port": served.port,
                          "instructors": f"hub admins and the group {settings.instructor_group!r}",
                          "instructor_token_file": str(token_file)}), file=sys.stderr, flush=True)
        await stop.wait()
        await served.close()
        await identities.close()
        if workdir is not None:
            workdir.cleanup()
        return 0

    return asyncio.run(_main())


# -- the student's side: lk.join() in a hub kernel ------------------------------------------------
def in_hub(environ=None) -> bool:
    """True in a kernel of a JupyterHub single-user server (the hub set its API token and URL)."""
    env = os.environ if environ is None else environ
    return bool(env.get("JUPYTERHUB_API_TOKEN") and env.get("JUPYTERHUB_API_URL"))


def on_this_hub(url: str, environ=None) -> bool:
    """True when `url` is on this kernel's hub (the origin of JUPYTERHUB_PUBLIC_URL or
    LABKIT_CLASS_URL), scheme included, so an http:// URL of an https hub does not get the token
    in clear: the only place `lk.join` sends the kernel's hub token to."""
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    where = (parts.scheme.lower(), parts.netloc.lower())
    known = {(p.scheme.lower(), p.netloc.lower()) for n in ("JUPYTERHUB_PUBLIC_URL", "LABKIT_CLASS_URL")
             if (p := urlsplit(env.get(n) or "")).netloc}
    return bool(parts.netloc) and "://" in url and where in known


def hub_join_url(url: str | None = None, environ=None, *, service: str = SERVICE_NAME) -> str:
    """The class server's URL for `lk.join()` in a hub kernel.

    `url` absolute: itself. Else (None, or a path such as "/services/labkit/") the path on the
    hub's public origin: the origin of LABKIT_CLASS_URL if the hub's config sets it for every
    server (`c.Spawner.environment`), else of JUPYTERHUB_PUBLIC_URL (set when the hub's
    `public_url` is). The default path: JUPYTERHUB_BASE_URL + "services/labkit/".
    """
    env = os.environ if environ is None else environ
    if url and "://" in url:
        return url
    configured = env.get("LABKIT_CLASS_URL")
    if not url and configured:
        return configured
    origin_of = configured or env.get("JUPYTERHUB_PUBLIC_URL") or ""
    parts = urlsplit(origin_of)
    if not parts.scheme or not parts.netloc:
        raise ValueError("lk.join() on a JupyterHub needs the hub's address: ask the instructor to "
                         "set c.JupyterHub.public_url (or LABKIT_CLASS_URL) in jupyterhub_config.py, "
                         "or give it: lk.join('https://hub.example.edu/services/labkit/')")
    path = url or _prefix(env.get("JUPYTERHUB_BASE_URL") or "/") + f"services/{service}/"
    return f"{parts.scheme}://{parts.netloc}{_prefix(path)}"


def page_path(join_url: str, environ=None) -> str | None:
    """The service's path relative to this kernel's Jupyter base URL (JUPYTERHUB_SERVICE_PREFIX),
    e.g. "../../services/labkit/" from "/user/ann/": what a browser widget on the student's
    Jupyter page appends to that base URL to reach the service on the same origin. None when the
    kernel is not on that hub (the widget then uses the direct URL)."""
    env = os.environ if environ is None else environ
    base = env.get("JUPYTERHUB_SERVICE_PREFIX")
    target = urlsplit(join_url)
    public = urlsplit(env.get("JUPYTERHUB_PUBLIC_URL") or "")
    if not base or (public.netloc and public.netloc != target.netloc):
        return None
    depth = len([p for p in base.split("/") if p])
    return "../" * depth + _prefix(target.path).lstrip("/")
