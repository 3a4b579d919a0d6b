"""Turn "a lab, or a URL" into a base URL."""

from __future__ import annotations


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


def lab_ssl_context(url: str):
    """For https/wss URLs: an SSLContext that also trusts the lab's local CA (`lk.start(tls=True)`)."""
    if not url.startswith(("https://", "wss://")):
        return None
    from labkit.net.tls import client_ssl_context

    return client_ssl_context()
