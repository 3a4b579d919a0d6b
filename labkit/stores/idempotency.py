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

Keys belong to whoever sent them: each is scoped by the request's principal (labkit/server/auth.py:
a student token's owner, or the instructor; one shared scope, "local", when classroom mode is off),
so one student can neither replay another's answer (and with it take over the resource it names)
nor block another's key by using it first with another body.

Keys are bounded three ways, so they cannot grow the lab's file without limit:

- in number: at most MAX_KEYS_PER_IDENTITY per identity. A new key beyond that drops the identity's
  oldest *finished* key (its answer is forgotten; a retry of that old request would run again).
  Chosen over refusing with 429 because a refusal would lock a busy client (a loop of keyed POSTs)
  out of keyed requests for the whole KEY_TTL_S, and a retry is nearly always of a recent request;
  dropping never touches another identity's keys. Only when all of them are still in flight (no
  finished one to drop) is the new one refused, with 429 and Retry-After.
- in bytes per identity: its keys' rows take at most `max_store_bytes // IDENTITY_SHARE` (else
  IDENTITY_BYTES), dropping its own oldest finished keys the same way.
- in the store's bound: every row's `size` (its stored answer, or while the request runs, the room
  reserved for it: the request body's length + ANSWER_ROOM) counts toward the notes store's
  `max_store_bytes` (labkit/stores/notes.py `store_used_bytes`). A keyed request the store has no
  room for, even after dropping the sender's own old keys, gets 507 before its handler runs. An
  answer larger than its reservation that no longer fits is not kept (the key is released).

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
import logging
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from labkit.server.auth import PRINCIPAL
from labkit.server.keys import CONFIG
from labkit.server.problem import ProblemError

from .notes import KEYS_TABLE, StoreFull, store_used_bytes
from .sqlite import connect, create_schema, write_transaction

log = logging.getLogger("labkit.server")

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
SHARED = "local"
"""The one scope of every key when the lab has no classroom mode (auth's principal there)."""
MAX_KEYS_PER_IDENTITY = 1_000
"""Keys one identity may hold at once; a new one beyond drops its oldest finished key."""
IDENTITY_SHARE = 8
"""One identity's keys may take at most this fraction (1/N) of the store's bound."""
IDENTITY_BYTES = 8 * 1024 * 1024
"""One identity's key bytes when the store has no bound."""
ANSWER_ROOM = 1024
"""Reserved for a key's answer beyond the request body's length (headers, server-set fields)."""
KEPT_HEADERS = ("Content-Type", "Location", "Content-Location", "ETag", "Last-Modified")
"""Headers of the first answer that a replay repeats."""

_KEY = re.compile(r'^"([\x20-\x21\x23-\x5b\x5d-\x7e]{1,255})"$|^([\x21\x23-\x7e]{1,255})$')
"""An RFC 8941 sf-string (quoted, as the draft writes it), or, leniently, a bare token."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    principal TEXT NOT NULL,
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER,
    headers TEXT,
    body BLOB,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (principal, scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_by_age ON idempotency_keys (principal, created);
"""
"""`size`: the bytes the row holds (principal, scope, key, fingerprint, headers, body), or while its
request runs, that plus the room reserved for the answer; it counts toward the notes store's bound
(the table is notes.KEYS_TABLE)."""
_COLUMNS = {"principal", "size"}
"""Columns an older file's table lacks: such a table (of keys that live a day) is dropped at init."""


class TooManyKeys(Exception):
    """The identity holds its most keys, all still in flight: none can be dropped for a new one."""


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
    calls block, so the HTTP layer runs them in a worker thread. `principal` scopes every key (the
    module docstring says why); `max_store_bytes` is the notes store's bound, shared with it."""

    def __init__(self, path: str | Path, ttl_s: float = KEY_TTL_S, *,
                 max_store_bytes: int | None = None, max_keys_per_identity: int | None = None):
        self.path, self.ttl_s, self.max_store_bytes = str(path), ttl_s, max_store_bytes
        self._max_keys = max_keys_per_identity

    @property
    def max_keys(self) -> int:
        return self._max_keys if self._max_keys is not None else MAX_KEYS_PER_IDENTITY

    @property
    def identity_bytes(self) -> int:
        """Most bytes one identity's key rows may take."""
        if self.max_store_bytes is None:
            return IDENTITY_BYTES
        return self.max_store_bytes // IDENTITY_SHARE

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path, BUSY_TIMEOUT_S)

    def init(self) -> None:
        with closing(self._connect()) as con:
            con.execute("BEGIN IMMEDIATE")
            columns = {row[1] for row in con.execute(f"PRAGMA table_info({KEYS_TABLE})")}
            if columns and not columns >= _COLUMNS:
                con.execute(f"DROP TABLE {KEYS_TABLE}")
            con.execute("COMMIT")
        create_schema(self.path, SCHEMA, BUSY_TIMEOUT_S)

    def _transaction(self, work):
        return write_transaction(self._connect, work)

    def _make_room(self, con: sqlite3.Connection, principal: str, new_rows: int, adding: int,
                   keep: tuple[str, str] | None = None) -> None:
        """Drop `principal`'s oldest finished keys (never `keep`, never another identity's) until
        it may add `new_rows` rows taking `adding` more bytes: within its count, within its bytes,
        and within the store's bound. TooManyKeys or StoreFull when dropping cannot get there."""
        used = store_used_bytes(con) if self.max_store_bytes is not None else 0
        while True:
            count, own = con.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM idempotency_keys "
                                     "WHERE principal = ?", (principal,)).fetchone()
            over_count = count + new_rows > self.max_keys
            over_own = own > 0 and own + adding > self.identity_bytes
            over_store = self.max_store_bytes is not None and used + adding > self.max_store_bytes
            if not (over_count or over_own or over_store):
                return
            scope, key = keep or ("", "")
            oldest = con.execute("SELECT scope, key, size FROM idempotency_keys WHERE principal = ? "
                                 "AND status IS NOT NULL AND NOT (scope = ? AND key = ?) "
                                 "ORDER BY created LIMIT 1", (principal, scope, key)).fetchone()
            if oldest is None:
                if over_store and self.max_store_bytes is not None:  # over_store implies a bound
                    raise StoreFull(used, adding, self.max_store_bytes)
                raise TooManyKeys(principal)
            con.execute("DELETE FROM idempotency_keys WHERE principal = ? AND scope = ? AND key = ?",
                        (principal, oldest[0], oldest[1]))
            used -= oldest[2]

    def claim(self, scope: str, key: str, fingerprint: str, *, principal: str = SHARED,
              reserve: int = 0) -> tuple[str, Stored | None]:
        """Try to own `principal`'s `key`: ("new", None) if this request must run the handler (the
        row then holds `reserve` bytes for its answer); ("done", answer) to replay; ("busy", None)
        while another request holds it; ("mismatch", None) when the key was used for a different
        request. A new key may first drop the principal's oldest finished ones; StoreFull or
        TooManyKeys when no room can be made (nothing is claimed then)."""
        now = time.time()

        def work(con: sqlite3.Connection) -> tuple[str, Stored | None]:
            con.execute("DELETE FROM idempotency_keys WHERE expires < ? OR "
                        "(status IS NULL AND created < ?)", (now, now - IN_FLIGHT_LEASE_S))
            row = con.execute("SELECT fingerprint, status, headers, body FROM idempotency_keys "
                              "WHERE principal = ? AND scope = ? AND key = ?",
                              (principal, scope, key)).fetchone()
            if row is None:
                size = _row_bytes(principal, scope, key, fingerprint) + reserve
                self._make_room(con, principal, 1, size)
                con.execute("INSERT INTO idempotency_keys (principal, scope, key, fingerprint, size, "
                            "created, expires) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (principal, scope, key, fingerprint, size, now, now + self.ttl_s))
                return "new", None
            if row[0] != fingerprint:
                return "mismatch", None
            if row[1] is None:
                return "busy", None
            return "done", Stored(row[1], json.loads(row[2]), bytes(row[3]))

        return self._transaction(work)

    def finish(self, scope: str, key: str, answer: Stored, *, principal: str = SHARED) -> bool:
        """Store the answer of the request that owns `key`; its row's size becomes the answer's.
        False (and the key released) when the answer is larger than was reserved and no room can
        be made for it."""
        headers = json.dumps(answer.headers)

        def work(con: sqlite3.Connection) -> bool:
            row = con.execute("SELECT fingerprint, size FROM idempotency_keys WHERE principal = ? AND "
                              "scope = ? AND key = ? AND status IS NULL",
                              (principal, scope, key)).fetchone()
            if row is None:  # its claim lapsed (IN_FLIGHT_LEASE_S) or was dropped
                return False
            size = _row_bytes(principal, scope, key, row[0], headers, answer.body)
            if size > row[1]:
                try:
                    self._make_room(con, principal, 0, size - row[1], keep=(scope, key))
                except (StoreFull, TooManyKeys):
                    con.execute("DELETE FROM idempotency_keys WHERE principal = ? AND scope = ? "
                                "AND key = ?", (principal, scope, key))
                    return False
            con.execute("UPDATE idempotency_keys SET status = ?, headers = ?, body = ?, size = ? "
                        "WHERE principal = ? AND scope = ? AND key = ?",
                        (answer.status, headers, answer.body, size, principal, scope, key))
            return True

        return self._transaction(work)

    def release(self, scope: str, key: str, *, principal: str = SHARED) -> None:
        """Forget an unfinished claim (its request failed): a retry runs the handler again."""
        with closing(self._connect()) as con:
            con.execute("DELETE FROM idempotency_keys WHERE principal = ? AND scope = ? AND key = ? "
                        "AND status IS NULL", (principal, scope, key))

    def count(self, principal: str | None = None) -> int:
        """Keys stored (finished or in flight; `principal`'s only if given), expired ones included
        until the next claim."""
        with closing(self._connect()) as con:
            if principal is None:
                return con.execute("SELECT COUNT(*) FROM idempotency_keys").fetchone()[0]
            return con.execute("SELECT COUNT(*) FROM idempotency_keys WHERE principal = ?",
                               (principal,)).fetchone()[0]


def _row_bytes(principal: str, scope: str, key: str, fingerprint: str, headers: str = "",
               body: bytes = b"") -> int:
    """The bytes a key's row holds, by the measure the store's bound counts."""
    return (len(principal.encode()) + len(scope.encode()) + len(key.encode())
            + len(fingerprint.encode()) + len(headers.encode()) + len(body))


IDEMPOTENCY = web.AppKey("idempotency_store", IdempotencyStore)
_SET_UP = web.AppKey("idempotency_set_up", bool)


def setup(app: web.Application, db_path: Callable[[web.Application], str]) -> None:
    """Give `app` a key store in the SQLite file `db_path(app)` names (read at startup, so it may
    come from another family's startup hook that runs before). Calling it twice is harmless."""
    if _SET_UP in app:
        return
    app[_SET_UP] = True

    async def _open(app: web.Application) -> None:
        app[IDEMPOTENCY] = IdempotencyStore(db_path(app), max_store_bytes=app[CONFIG].max_store_bytes)
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
    """Run `handle()` at most once per Idempotency-Key of the request's sender (see the module
    docstring). Without the header it simply runs `handle()`."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return await handle()
    key = parse_key(raw)
    keys = request.app[IDEMPOTENCY]
    principal = request.get(PRINCIPAL) or SHARED
    body = await request.read()  # aiohttp keeps it: the handler reads the same bytes again
    fp = fingerprint(request.method, request.path, body)
    deadline = time.monotonic() + IN_FLIGHT_WAIT_S
    while True:
        try:
            state, stored = await asyncio.to_thread(keys.claim, scope, key, fp, principal=principal,
                                                    reserve=len(body) + ANSWER_ROOM)
        except StoreFull as exc:
            raise ProblemError(507, f"The store has no room to keep this request's answer for its "
                               f"retries ({exc.used} of {exc.limit} bytes used, {exc.adding} more "
                               "needed). Delete notes to make room, or send it without "
                               f"{HEADER}.", used=exc.used, limit=exc.limit) from None
        except TooManyKeys:
            raise ProblemError(429, f"You have {keys.max_keys} requests with an {HEADER} still "
                               "being handled; retry when they are done.",
                               headers={"Retry-After": "1"}) from None
        if state == "done":
            if stored is None:  # claim() returns "done" with the stored answer
                raise RuntimeError(f"key {key!r} is done but has no stored answer")
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
        await asyncio.shield(asyncio.to_thread(keys.release, scope, key, principal=principal))
        raise
    if not 200 <= response.status < 300 or not isinstance(response, web.Response):
        await asyncio.to_thread(keys.release, scope, key, principal=principal)
        return response
    kept = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
    answer_body = response.body
    if not isinstance(answer_body, bytes | bytearray):  # the idempotent handlers answer with JSON
        raise TypeError(f"an idempotent handler's answer must have a bytes body to be kept, not "
                        f"{type(answer_body).__name__}")
    answer = Stored(response.status, kept, bytes(answer_body))
    if not await asyncio.to_thread(keys.finish, scope, key, answer, principal=principal):
        log.warning("the answer to %s %s (%d bytes) was not kept for its %s: no room in the store",
                    request.method, request.path, len(answer_body), HEADER)
    return response


OPENAPI_PARAMETER = {
    "name": HEADER, "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY + 2,
               "pattern": '^(?:"[\\x20-\\x21\\x23-\\x5b\\x5d-\\x7e]{1,255}"|[\\x21\\x23-\\x7e]{1,255})$'},
    "description": "Makes a retried POST safe (IETF draft-ietf-httpapi-idempotency-key-header): "
                   "the same key with the same body replays the first answer "
                   f"(`{REPLAYED_HEADER}: true`) and creates nothing; with a different body: 422; "
                   "while the first request is still being handled: it waits, then 409. "
                   "Keys are each sender's own (a class token's); "
                   f"keep at most {MAX_KEYS_PER_IDENTITY} (a new one drops your oldest). "
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
