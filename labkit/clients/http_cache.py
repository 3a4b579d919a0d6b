"""HttpCache: a small private HTTP cache (RFC 9111) that a RestClient can use for its GETs.

It keeps 200 answers to GET, honours the response's `Cache-Control` (`no-store`: never keep;
`no-cache`, `max-age=0`, `must-revalidate` once stale: ask the server first; `max-age=N`: reuse for
N seconds without asking) and revalidates with the validators the server gave (`ETag` ->
`If-None-Match`, `Last-Modified` -> `If-Modified-Since`). A 304 answer refreshes the stored copy,
whose body is then reused. Unsafe methods (POST, PUT, PATCH, DELETE) drop the stored copy of their
URL (RFC 9111 section 4.4). The entries are kept per URL and per `Accept` (the lab varies on it).

Why not a library: aiohttp-client-cache (the maintained cache for aiohttp) drops expired entries
instead of revalidating them, treats a response's `no-cache` as "fresh forever", and answers a
revalidation with the stored 200, so the 304 never shows up in the request log that the lessons
are about. The rules used here fit on one screen and are listed above.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from multidict import CIMultiDict


def cache_directives(value: str | None) -> dict[str, str | None]:
    """Cache-Control "no-cache, max-age=60" -> {"no-cache": None, "max-age": "60"}."""
    directives: dict[str, str | None] = {}
    for part in (value or "").split(","):
        name, sep, arg = part.strip().partition("=")
        if name:
            directives[name.lower()] = arg.strip('"') if sep else None
    return directives


@dataclass
class CacheEntry:
    """One stored answer: status, headers, body, and when it was stored."""

    status: int
    headers: CIMultiDict
    body: bytes
    stored_at: float = field(default_factory=time.monotonic)

    @property
    def directives(self) -> dict[str, str | None]:
        return cache_directives(self.headers.get("Cache-Control"))

    def max_age(self) -> float:
        """Seconds this answer stays fresh (0 when it must be revalidated on every use)."""
        d = self.directives
        if "no-cache" in d:
            return 0.0
        try:
            age = float(self.headers.get("Age", 0) or 0)
            return max(0.0, float(d.get("max-age") or 0) - age)
        except ValueError:
            return 0.0

    def is_fresh(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return now - self.stored_at < self.max_age()

    def validators(self) -> dict[str, str]:
        """The conditional headers that ask the server "has it changed?"."""
        out = {}
        if "ETag" in self.headers:
            out["If-None-Match"] = self.headers["ETag"]
        if "Last-Modified" in self.headers:
            out["If-Modified-Since"] = self.headers["Last-Modified"]
        return out


class HttpCache:
    """Stored GET answers by (URL, Accept). `lookup`, `store`, `refresh`, `invalidate`."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], CacheEntry] = {}

    @staticmethod
    def key(url: str, request_headers) -> tuple[str, str]:
        return url, CIMultiDict(request_headers or {}).get("Accept", "")

    def lookup(self, url: str, request_headers) -> CacheEntry | None:
        """The stored answer for this request, unless the request itself says no-store/no-cache."""
        request_cc = cache_directives(CIMultiDict(request_headers or {}).get("Cache-Control"))
        if "no-store" in request_cc:
            return None
        entry = self.entries.get(self.key(url, request_headers))
        if entry is not None and "no-cache" in request_cc:
            entry = CacheEntry(entry.status, entry.headers, entry.body, stored_at=float("-inf"))
        return entry

    def store(self, url: str, request_headers, status: int, headers, body: bytes) -> bool:
        """Keep a 200 answer to GET unless it says no-store; True when kept."""
        headers = CIMultiDict(headers)
        if status != 200 or "no-store" in cache_directives(headers.get("Cache-Control")):
            return False
        self.entries[self.key(url, request_headers)] = CacheEntry(status, headers, body)
        return True

    def refresh(self, url: str, request_headers, not_modified_headers) -> CacheEntry:
        """After a 304: update the stored headers with the new ones and restart its freshness."""
        key = self.key(url, request_headers)
        entry = self.entries[key]
        headers = CIMultiDict(entry.headers)
        for name, value in CIMultiDict(not_modified_headers).items():
            if name.lower() not in ("content-length", "content-type", "transfer-encoding"):
                headers[name] = value
        self.entries[key] = CacheEntry(entry.status, headers, entry.body)
        return self.entries[key]

    def invalidate(self, url: str) -> None:
        """Forget every stored answer for `url` (after an unsafe method on it)."""
        for key in [k for k in self.entries if k[0] == url]:
            del self.entries[key]

    def __len__(self) -> int:
        return len(self.entries)
