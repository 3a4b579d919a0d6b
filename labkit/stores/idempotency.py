"""Idempotency keys for POST: a retried request creates nothing new (IETF httpapi draft
`draft-ietf-httpapi-idempotency-key-header`).

A client that did not get an answer (a timeout, a reset connection) cannot know whether its POST
was carried out. If it sends the same `Idempotency-Key` header on every try, the server makes the
retries safe:

- first request with a key: the handler runs; its 2xx answer (status, chosen headers, body) is
  stored with the key and a fingerprint of the request (method, path and body bytes, SHA-256);
- same key, same fingerprint: the stored answer is sent again (`Idempotent-Replayed: true`) and
  the handler does not run, so nothing new is created;
- same key, different fingerprint: 422 problem+json (the draft's "key reused for another request");
- same key while the first request is still being handled: the later one waits for that answer
  (up to IN_FLIGHT_WAIT_S) and replays it; if it is still not there, 409 (as the draft says).
- a request that fails (4xx/5xx) stores nothing: the key is released and a corrected retry runs.

Keys expire KEY_TTL_S seconds after their first use (the stated expiry; after that the same key
counts as new). Keys are kept in the SQLite file of the notes (table `idempotency_keys`), claimed
with one INSERT, so every worker process that shares the file honours them, and 20 clients racing
with one key still create exactly one resource. A handler that crashes mid-way leaves a claim
that lapses after IN_FLIGHT_LEASE_S.

Use from any POST handler:

    return await idempotency.idempotent(request, "notes", lambda: really_create(request))
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from labkit.server.problem import ProblemError

from .sqlite import create_schema

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_TTL_S = 24 * 3600.0
"""A key is honoured this long after its first use (seconds); then it counts as new."""
IN_FLIGHT_WAIT_S = 10.0
"""How long a request with the key of one still being handled waits for that answer (s)."""
IN_FLIGHT_LEASE_S = 60.0
"""A claim whose handler never finished (a crashed process) lapses after this many seconds."""
POLL_S = 0.02
"""How often a waiting request looks for the first one's answer (seconds)."""
BUSY_TIMEOUT_S = 10.0
MAX_KEY = 255
KEPT_HEADERS = ("Content-Type", "Location", "Content-Location", "ETag", "Last-Modified")
"""Headers of the first answer that a replay repeats."""

_KEY = re.compile(r'^"([\x20-\x21\x23-\x5b\x5d-\x7e]{1,255})"$|^([\x21\x23-\x7e]{1,255})$')
"""An RFC 8941 sf-string (quoted, as the draft writes it), or, leniently, a bare token."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER,
    headers TEXT,
    body BLOB,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (scope, key)
);
"""


@dataclass(frozen=True)
class Stored:
    """A stored answer: status, the headers kept, the body bytes."""

    status: int
    headers: dict
    body: bytes

    def response(self) -> web.Response:
        headers = {**self.headers, REPLAYED_HEADER: "true"}
        return web.Response(status=self.status, body=self.body, headers=headers)


class IdempotencyStore:
    """Keys of one SQLite file. Every call opens its own connection (safe across processes);
    calls block, so the HTTP layer runs them in a worker thread."""

    def __init__(self, path: str | Path, ttl_s: float = KEY_TTL_S):
        self.path, self.ttl_s = str(path), ttl_s

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)

    def init(self) -> None:
        create_schema(self.path, SCHEMA, BUSY_TIMEOUT_S)

    def claim(self, scope: str, key: str, fingerprint: str) -> tuple[str, Stored | None]:
        """Try to own `key`: ("new", None) if this request must run the handler; ("done", answer)
        to replay; ("busy", None) while another request holds it; ("mismatch", None) when the key
        was used for a different request."""
        now = time.time()
        with closing(self._connect()) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute("DELETE FROM idempotency_keys WHERE expires < ? OR "
                            "(status IS NULL AND created < ?)", (now, now - IN_FLIGHT_LEASE_S))
                row = con.execute("SELECT fingerprint, status, headers, body FROM idempotency_keys "
                                  "WHERE scope = ? AND key = ?", (scope, key)).fetchone()
                if row is None:
                    con.execute("INSERT INTO idempotency_keys (scope, key, fingerprint, created, "
                                "expires) VALUES (?, ?, ?, ?, ?)",
                                (scope, key, fingerprint, now, now + self.ttl_s))
                    outcome: tuple[str, Stored | None] = ("new", None)
                elif row[0] != fingerprint:
                    outcome = ("mismatch", None)
                elif row[1] is None:
                    outcome = ("busy", None)
                else:
                    outcome = ("done", Stored(row[1], json.loads(row[2]), bytes(row[3])))
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        return outcome

    def finish(self, scope: str, key: str, answer: Stored) -> None:
        """Store the answer of the request that owns `key`."""
        with closing(self._connect()) as con:
            con.execute("UPDATE idempotency_keys SET status = ?, headers = ?, body = ? "
                        "WHERE scope = ? AND key = ?",
                        (answer.status, json.dumps(answer.headers), answer.body, scope, key))

    def release(self, scope: str, key: str) -> None:
        """Forget an unfinished claim (its request failed): a retry runs the handler again."""
        with closing(self._connect()) as con:
            con.execute("DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND status IS NULL",
                        (scope, key))

    def count(self) -> int:
        """Keys stored (finished or in flight), expired ones included until the next claim."""
        with closing(self._connect()) as con:
            return con.execute("SELECT COUNT(*) FROM idempotency_keys").fetchone()[0]


IDEMPOTENCY = web.AppKey("idempotency_store", IdempotencyStore)
_SET_UP = web.AppKey("idempotency_set_up", bool)


def setup(app: web.Application, db_path: Callable[[web.Application], str]) -> None:
    """Give `app` a key store in the SQLite file `db_path(app)` names (read at startup, so it may
    come from another family's startup hook that runs before). Calling it twice is harmless."""
    if _SET_UP in app:
        return
    app[_SET_UP] = True

    async def _open(app: web.Application) -> None:
        app[IDEMPOTENCY] = IdempotencyStore(db_path(app))
        await asyncio.to_thread(app[IDEMPOTENCY].init)

    app.on_startup.append(_open)


def parse_key(raw: str) -> str:
    """The key of an Idempotency-Key header value; 400 problem+json when it is not a valid one."""
    match = _KEY.match(raw.strip())
    if not match:
        raise ProblemError(400, f"{HEADER} must be a quoted string of 1-{MAX_KEY} printable ASCII "
                           'characters, e.g. Idempotency-Key: "8e03978e-40d5-43e8"',
                           errors=[{"field": HEADER, "message": "malformed"}])
    return match.group(1) or match.group(2)


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


async def idempotent(request: web.Request, scope: str,
                     handle: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Run `handle()` at most once per Idempotency-Key (see the module docstring). Without the
    header it simply runs `handle()`."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return await handle()
    key = parse_key(raw)
    keys = request.app[IDEMPOTENCY]
    body = await request.read()  # aiohttp keeps it: the handler reads the same bytes again
    fp = fingerprint(request.method, request.path, body)
    deadline = time.monotonic() + IN_FLIGHT_WAIT_S
    while True:
        state, stored = await asyncio.to_thread(keys.claim, scope, key, fp)
        if state == "done":
            return stored.response()
        if state == "mismatch":
            raise ProblemError(422, f"This {HEADER} was already used with a different request "
                               "(method, path or body); use a new key for a new request.",
                               errors=[{"field": HEADER, "message": "reused for another request"}])
        if state == "new":
            break
        if time.monotonic() > deadline:
            raise ProblemError(409, "A request with this Idempotency-Key is still being handled; "
                               "retry a little later.", headers={"Retry-After": "1"})
        await asyncio.sleep(POLL_S)
    try:
        response = await handle()
    except BaseException:
        await asyncio.shield(asyncio.to_thread(keys.release, scope, key))
        raise
    if not 200 <= response.status < 300 or not isinstance(response, web.Response):
        await asyncio.to_thread(keys.release, scope, key)
        return response
    kept = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
    await asyncio.to_thread(keys.finish, scope, key, Stored(response.status, kept, response.body))
    return response


OPENAPI_PARAMETER = {
    "name": HEADER, "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY + 2,
               "pattern": '^(?:"[\\x20-\\x21\\x23-\\x5b\\x5d-\\x7e]{1,255}"|[\\x21\\x23-\\x7e]{1,255})$'},
    "description": "Makes a retried POST safe (IETF draft-ietf-httpapi-idempotency-key-header): "
                   "the same key with the same body replays the first answer "
                   f"(`{REPLAYED_HEADER}: true`) and creates nothing; with a different body: 422; "
                   "while the first request is still being handled: it waits, then 409. "
                   f"Keys expire {KEY_TTL_S / 3600:g} h after first use. Write it as a quoted "
                   'string, e.g. "8e03978e-40d5-43e8".',
    "example": '"8e03978e-40d5-43e8-bc93-6894a57f9324"',
}
"""The header as an OpenAPI parameter, for every route that uses `idempotent`."""
OPENAPI_RESPONSES = {
    "409": {"$ref": "#/components/responses/Problem",
            "description": "A request with this Idempotency-Key is still being handled"},
    "422": {"$ref": "#/components/responses/Problem",
            "description": "Invalid fields, or an Idempotency-Key reused with another body"},
}
