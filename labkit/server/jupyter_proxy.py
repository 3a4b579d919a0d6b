"""Reaching the lab from the student's browser through their own Jupyter server (jupyter-server-proxy).

On Binder or a JupyterHub the lab listens on the container's 127.0.0.1, which the student's browser
cannot reach. jupyter-server-proxy forwards `<Jupyter base URL>proxy/<port>/<path>` to
`http://localhost:<port>/<path>` after Jupyter has authenticated the request (token or login
cookie; an unauthenticated WebSocket upgrade gets 403) and, for WebSocket upgrades, after
Jupyter's own Origin check (the page's Origin must match the Host it addressed, unless Jupyter is
configured with allow_origin). The proxy copies the browser's request headers, `Host` and `Origin`
included, and adds `X-Forwarded-Context`/`X-Forwarded-Prefix` on plain HTTP (not on upgrades).

So a proxied request arrives at the lab with the *public* name of the student's Jupyter in `Host`
and, from a page of that Jupyter, the same origin in `Origin`. Locally that name is a loopback one
and the lab's loopback rules already accept it. On a hub it is the hub's public name, which the
lab accepts only when it knows that name as the student's Jupyter ("Jupyter origins"), learnt
from channels a foreign page cannot write to:
- the kernel's environment (`JUPYTERHUB_PUBLIC_URL`, `JUPYTERHUB_PUBLIC_HUB_URL`, `JUPYTERHUB_HOST`),
  set by the hub when it started the server;
- `location.origin` reported by a labkit browser widget over the kernel's comm channel, which
  itself runs through Jupyter's authenticated, origin-checked kernel WebSocket
  (`LabServer.trust_page_origin`).
A WebSocket is then accepted only when its Origin is such a Jupyter origin *and* its Host is that
same origin's host: the page is served by the Jupyter the request came through. A script cannot
set `Origin` or `Host` (browsers forbid both), so a foreign page always shows its own origin; the
one way to make Host match a foreign origin is DNS rebinding, and then the Host is the attacker's
name, which is neither loopback nor a Jupyter origin, so both the Host and the Origin rule refuse it.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from aiohttp import web

from .hostcheck import HOST_RULES

JUPYTER_ORIGINS = web.AppKey("jupyter_origins", set)
"""Public origins of the student's own Jupyter (scheme://host[:port]) this lab trusts for its pages."""

ENVIRONMENT_URLS = ("JUPYTERHUB_PUBLIC_URL", "JUPYTERHUB_PUBLIC_HUB_URL", "JUPYTERHUB_HOST")
"""Variables a JupyterHub sets in the single-user server (and so the kernel) naming its public URL."""

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normal_origin(url: str | None) -> str | None:
    """`scheme://host[:port]` in lower case without a default port, or None when `url` has none."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS[parts.scheme] else "")


def normal_host(host: str | None, scheme: str = "http") -> str:
    """A Host header in lower case, without the default port of `scheme`."""
    host = (host or "").strip().lower()
    default = f":{DEFAULT_PORTS.get(scheme, 80)}"
    return host[: -len(default)] if host.endswith(default) else host


def origins_from_environment(environ=None) -> set[str]:
    """The Jupyter origins a hub names in the environment (none on a laptop)."""
    environ = os.environ if environ is None else environ
    found = {normal_origin(environ.get(name)) for name in ENVIRONMENT_URLS}
    return {origin for origin in found if origin}


def _host_of(origin: str) -> tuple[str, str]:
    scheme, _, host = origin.partition("://")
    return scheme, host


def is_jupyter_host(app: web.Application, host: str | None) -> bool:
    """True when `host` (a Host header) is the host of one of the lab's Jupyter origins."""
    for origin in app.get(JUPYTER_ORIGINS, ()):
        scheme, origin_host = _host_of(origin)
        if normal_host(host, scheme) == origin_host:
            return True
    return False


def is_jupyter_page(origins, origin: str | None, host: str | None) -> bool:
    """True when `origin` is a Jupyter origin in `origins` and `host` addresses that same Jupyter."""
    wanted = normal_origin(origin)
    if wanted is None or wanted not in origins:
        return False
    scheme, origin_host = _host_of(wanted)
    return normal_host(host, scheme) == origin_host


def setup(app: web.Application) -> None:
    """Start with the origins the environment names; let the Host check accept their hosts."""
    app[JUPYTER_ORIGINS] = origins_from_environment()
    app.setdefault(HOST_RULES, []).append(is_jupyter_host)


def jupyter_base_url(environ=None) -> str | None:
    """The base URL of the Jupyter server this kernel belongs to, ending in "/", or None.

    On a hub: its public URL (when the hub names it) plus `JUPYTERHUB_SERVICE_PREFIX`, else that
    prefix alone (a path, which a page of that Jupyter resolves against its own origin).
    Elsewhere: the running Jupyter server whose pid is the kernel's parent (`JPY_PARENT_PID`, set
    by jupyter_client when it launches a kernel), or, without that variable, the only one running.
    None when no Jupyter server is found (a plain Python process).
    """
    environ = os.environ if environ is None else environ
    prefix = environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if prefix:
        prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
        public = normal_origin(environ.get("JUPYTERHUB_PUBLIC_URL"))
        return (public or "") + prefix
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:
        return None
    try:
        servers = list(list_running_servers())
    except OSError:
        return None
    parent = environ.get("JPY_PARENT_PID")
    if parent:
        chosen = [s for s in servers if str(s.get("pid")) == parent]
    else:
        chosen = servers if len(servers) == 1 else []
    if not chosen or not chosen[0].get("url"):
        return None
    return chosen[0]["url"].rstrip("/") + "/"
