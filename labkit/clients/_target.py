"""Turn "a lab, or a URL" into a base URL."""

from __future__ import annotations

from urllib.parse import urlsplit


def base_url(target, scheme: str = "http") -> str:
    """`target` is a LabServer (uses its url / ws_url) or a URL string; returns it without a trailing /.
    Asked for "ws", an http(s):// URL string becomes its ws(s):// twin (same host and port)."""
    if isinstance(target, str):
        url = target.rstrip("/")
        if scheme == "ws" and url.startswith(("http://", "https://")):
            url = "ws" + url[4:]
        return url
    attr = "ws_url" if scheme == "ws" else "url"
    found = getattr(target, attr, None)
    if found is None:
        raise TypeError(f"expected a lab server or a URL, got {target!r}")
    return str(found).rstrip("/")


def through(target) -> tuple[str, str]:
    """What a proxy in front of `target` must add to its own URLs so that a client going through
    it still reaches the same lab as the same identity: ("student:TOKEN@", "/prefix") for a class
    server joined with lk.join (the token as user info, the path a hub service lives under), ("",
    "") for the kernel's own lab, a URL without them or (host, port)."""
    if isinstance(target, tuple):
        return "", ""
    url = target if isinstance(target, str) else getattr(target, "url", None)
    if callable(url):  # a proxy's url() (a tap in front of a class server): its own URL
        url = url()
    if not isinstance(url, str):
        return "", ""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    userinfo = ""
    if parts.password is not None:
        userinfo = f"{parts.username or ''}:{parts.password}@"
    return userinfo, parts.path.rstrip("/")


def lab_ssl_context(url: str):
    """For https/wss URLs: an SSLContext that also trusts the lab's local CA (`lk.start(tls=True)`)."""
    if not url.startswith(("https://", "wss://")):
        return None
    from labkit.net.tls import client_ssl_context

    return client_ssl_context()
