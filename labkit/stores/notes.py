"""NotesStore: the notes resource kept in SQLite (WAL), one connection per operation.

Every call opens its own connection, so the store holds no state of its own: the file is the state.
That is what lets several server processes share one database file (WAL lets readers and one
writer work at once), and what lets a restarted server carry on where the last one stopped.
Writes run inside `BEGIN IMMEDIATE`, so a read-check-write (an If-Match) is atomic across threads
and processes. Calls block: the HTTP layer runs them in a worker thread.

Bounds: with `max_store_bytes`, a write that would take the store past it raises `StoreFull` and
writes nothing (checked inside the write's transaction). The store is what `store_used_bytes`
counts: the notes' titles, bodies and tags (UTF-8 bytes) and the idempotency keys kept in the same
file (labkit/stores/idempotency.py: each stored answer, or the room reserved for one being made), so
neither can grow the file past the bound behind the other's back.
`representation_bytes(fields)` is the size a note with these fields has in the API, at most.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .sqlite import connect, create_schema

BUSY_TIMEOUT_S = 10.0
"""Seconds a writer waits for another writer's lock before giving up."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    tags TEXT NOT NULL,
    votes INTEGER NOT NULL,
    version INTEGER NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
"""

EDITABLE = ("title", "body", "tags", "votes")
"""Fields a client sets; id, version, created and updated belong to the server."""

_STORED_BYTES = ("LENGTH(CAST(title AS BLOB)) + LENGTH(CAST(body AS BLOB)) "
                 "+ LENGTH(CAST(tags AS BLOB))")
"""SQL: the bytes one row's client data takes (what `max_store_bytes` counts)."""

KEYS_TABLE = "idempotency_keys"
"""The idempotency store's table in the same file; its `size` column counts toward the bound."""


def store_used_bytes(con: sqlite3.Connection) -> int:
    """The bytes `max_store_bytes` bounds, read on `con` (inside the caller's transaction): the notes'
    client data plus the `size` of every idempotency key row (stored answer or reservation). A
    table that is not there (yet) counts 0."""
    tables = {row[0] for row in con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('notes', ?)", (KEYS_TABLE,))}
    used = 0
    if "notes" in tables:
        used += con.execute(f"SELECT COALESCE(SUM({_STORED_BYTES}), 0) FROM notes").fetchone()[0]
    if KEYS_TABLE in tables:
        # an older file's key table has no `size` until the idempotency store migrates it
        with contextlib.suppress(sqlite3.OperationalError):
            used += con.execute(f"SELECT COALESCE(SUM(size), 0) FROM {KEYS_TABLE}").fetchone()[0]
    return used


class StoreFull(Exception):
    """A write would take the store past its byte limit; nothing was written."""

    def __init__(self, used: int, adding: int, limit: int):
        super().__init__(f"the notes store holds {used} of its {limit} bytes; this write needs {adding}")
        self.used, self.adding, self.limit = used, adding, limit


def stored_bytes(fields: dict) -> int:
    """Bytes a note's fields take in the store (same measure as `_STORED_BYTES`)."""
    return (len(fields["title"].encode()) + len(fields["body"].encode())
            + len(json.dumps(fields["tags"]).encode()))


def iso(ts: float) -> str:
    """Epoch seconds as an ISO 8601 UTC timestamp with microseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Note:
    """One stored note, as the API shows it."""

    id: int
    title: str
    body: str
    tags: tuple[str, ...]
    votes: int
    version: int
    created: float
    updated: float

    def fields(self) -> dict:
        """The client-editable fields only."""
        return {"title": self.title, "body": self.body, "tags": list(self.tags), "votes": self.votes}

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            **self.fields(),
            "version": self.version,
            "created": iso(self.created),
            "updated": iso(self.updated),
        }

    def json_bytes(self) -> bytes:
        """The JSON representation exactly as the API sends it."""
        return json.dumps(self.as_dict(), ensure_ascii=False).encode()

    @property
    def etag(self) -> str:
        """Strong entity tag: a hash of the JSON representation's bytes."""
        return strong_etag(self.json_bytes())


def representation_bytes(fields: dict) -> int:
    """The largest size (bytes of JSON) a note with these fields can have in the API."""
    widest = 2**63 - 1
    note = Note(id=widest, title=fields["title"], body=fields["body"], tags=tuple(fields["tags"]),
                votes=fields["votes"], version=widest, created=9999999999.999999,
                updated=9999999999.999999)
    return len(note.json_bytes())


def strong_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:24] + '"'


def _note(row: sqlite3.Row) -> Note:
    return Note(
        id=row["id"], title=row["title"], body=row["body"], tags=tuple(json.loads(row["tags"])),
        votes=row["votes"], version=row["version"], created=row["created"], updated=row["updated"],
    )


class NotesStore:
    """CRUD on the notes table of one SQLite file."""

    def __init__(self, path: str | Path, *, max_store_bytes: int | None = None):
        self.path = str(path)
        self.max_store_bytes = max_store_bytes

    def _check_room(self, con: sqlite3.Connection, adding: int, freeing: int = 0) -> None:
        """Raise StoreFull when `adding` bytes (after `freeing`) would pass the limit (in a write txn)."""
        if self.max_store_bytes is None or adding <= freeing:
            return
        used = store_used_bytes(con)
        if used - freeing + adding > self.max_store_bytes:
            raise StoreFull(used, adding - freeing, self.max_store_bytes)

    def used_bytes(self) -> int:
        """Bytes the store holds by the measure `max_store_bytes` bounds (`store_used_bytes`)."""
        with closing(self._connect()) as con:
            return store_used_bytes(con)

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path, BUSY_TIMEOUT_S, rows=True)

    def init(self) -> None:
        """Create the table if needed and switch the file to WAL (a setting the file keeps)."""
        create_schema(self.path, SCHEMA, BUSY_TIMEOUT_S)

    def journal_mode(self) -> str:
        with closing(self._connect()) as con:
            return con.execute("PRAGMA journal_mode").fetchone()[0]

    # -- reads -----------------------------------------------------------------------------
    def page(self, offset: int, limit: int) -> tuple[list[Note], int]:
        """Notes ordered by id from `offset`, at most `limit`, and the total count (one snapshot)."""
        with closing(self._connect()) as con:
            con.execute("BEGIN")
            total = con.execute("SELECT COUNT(*) FROM notes").fetchone()[0]
            rows = con.execute(
                "SELECT * FROM notes ORDER BY id LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
            con.execute("COMMIT")
        return [_note(r) for r in rows], total

    def get(self, note_id: int) -> Note | None:
        with closing(self._connect()) as con:
            row = con.execute("SELECT * FROM notes WHERE id = ?", (note_id,)).fetchone()
        return _note(row) if row else None

    # -- writes ----------------------------------------------------------------------------
    def create(self, fields: dict) -> Note:
        now = time.time()
        with closing(self._connect()) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                self._check_room(con, stored_bytes(fields))
                row = con.execute(
                    "INSERT INTO notes (title, body, tags, votes, version, created, updated) "
                    "VALUES (?, ?, ?, ?, 1, ?, ?) RETURNING *",
                    (fields["title"], fields["body"], json.dumps(fields["tags"]), fields["votes"],
                     now, now),
                ).fetchone()
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            return _note(row)

    @contextmanager
    def _locked_note(self, note_id: int):
        """A write transaction that holds the note from the first read: yields (connection, note or
        None). It commits when the block ends normally and rolls back when it raises, so a read,
        a check and a write inside the block are one atomic step across threads and processes."""
        with closing(self._connect()) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                row = con.execute("SELECT * FROM notes WHERE id = ?", (note_id,)).fetchone()
                yield con, (_note(row) if row is not None else None)
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise

    def update(self, note_id: int, change: Callable[[Note], dict]) -> tuple[Note, bool] | None:
        """Atomically read the note, compute its new fields with `change(current)`, write them.

        `change` may raise to abort (a failed precondition, invalid fields): nothing is written.
        An unchanged result writes nothing and keeps the version. Returns (note, changed), or None
        when there is no such note.
        """
        with self._locked_note(note_id) as (con, current):
            if current is None:
                return None
            fields = change(current)
            if fields == current.fields():
                return current, False
            self._check_room(con, stored_bytes(fields), stored_bytes(current.fields()))
            row = con.execute(
                "UPDATE notes SET title = ?, body = ?, tags = ?, votes = ?, "
                "version = version + 1, updated = ? WHERE id = ? RETURNING *",
                (fields["title"], fields["body"], json.dumps(fields["tags"]), fields["votes"],
                 max(time.time(), current.updated), note_id),
            ).fetchone()
        return _note(row), True

    def delete(self, note_id: int, check: Callable[[Note], None]) -> bool:
        """Atomically read the note, run `check(current)` (it may raise), delete it.

        Returns False when there is no such note.
        """
        with self._locked_note(note_id) as (con, current):
            if current is None:
                return False
            check(current)
            con.execute("DELETE FROM notes WHERE id = ?", (note_id,))
        return True
