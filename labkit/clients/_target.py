"""Turn "a lab, or a URL" into a base URL."""

from __future__ import annotations


def base_url(target, scheme: str = "http") -> str:
    """`target` is a LabServer (uses its url / ws_url) or a URL string; returns it without a trailing /."""
    if isinstance(target, str):
        return target.rstrip("/")
    attr = "ws_url" if scheme == "ws" else "url"
    url = getattr(target, attr, None)
    if url is None:
        raise TypeError(f"expected a lab server or a URL, got {target!r}")
    return url.rstrip("/")
