"""Who owns what, in the lab's SQLite file: the store behind `labkit/server/access.py`.

- `owner(kind, id, principal)`: one row per owned resource ("note" 12, "account" acc_1a2b3c4d,
  "payment" 7, "device" thermo-3, "name" <a chat name's comparison key>). A principal is the
  identity the class token stands for (`auth.identify`: "instructor", "student-<8 hex>", or "local"
  outside classroom mode); it is derived from the token itself, so a class server restarted on the
  same `--db` with the same tokens finds every owner again.
- `chat_identity(principal, name, removed)`: the chat name an identity holds (held while it is
  offline) and whether the instructor removed it from the room (it cannot rejoin until allowed).

Every write is one `BEGIN IMMEDIATE` transaction (read, check, write), so two workers of a cluster
sharing the file never both claim one device or one name. Calls block: the routes run them in a
worker thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path

from .sqlite import connect, create_schema, write_transaction

BUSY_TIMEOUT_S = 10.0
MAX_CLAIMS = 1_000
"""Resources of one kind one identity may claim by first use (IoT devices), so no client can grow
the table without bound."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS owner (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    principal TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX IF NOT EXISTS owner_by_principal ON owner (principal, kind);
CREATE TABLE IF NOT EXISTS chat_identity (
    principal TEXT PRIMARY KEY,
    name TEXT,
    removed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS personal_token (
    token_hash TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    made REAL NOT NULL
);
"""
MAX_PERSONAL_TOKENS = 5_000
"""Personal tokens one class server hands out (a class of 60, each kernel once or a few times,
with room to spare); then joining is refused with 507 until the instructor starts a new term."""


class ClaimLimit(Exception):
    """The identity already holds MAX_CLAIMS resources of this kind."""


class OwnerStore:
    """The owner table and the chat identities in one SQLite file (the lab's `--db`)."""

    def __init__(self, path: str | Path):
        self.path = str(path)

    def init(self) -> None:
        create_schema(self.path, SCHEMA, BUSY_TIMEOUT_S)

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path, BUSY_TIMEOUT_S)

    def _write(self, work):
        return write_transaction(self._connect, work)

    # -- resources ------------------------------------------------------------------------------
    def owner(self, kind: str, rid: str) -> str | None:
        with closing(self._connect()) as con:
            row = con.execute("SELECT principal FROM owner WHERE kind = ? AND id = ?",
                              (kind, rid)).fetchone()
        return row[0] if row else None

    def remember(self, kind: str, rid: str, principal: str) -> None:
        """`principal` owns the resource just created (a new resource replaces any stale row)."""
        self._write(lambda con: con.execute(
            "INSERT OR REPLACE INTO owner (kind, id, principal, created) VALUES (?, ?, ?, ?)",
            (kind, rid, principal, time.time())))

    def claim(self, kind: str, rid: str, principal: str, limit: int = MAX_CLAIMS) -> str:
        """The owner of (kind, rid) after `principal` asked for it: the existing owner, or
        `principal` when nobody had it (first use claims). ClaimLimit past `limit` claims."""

        def work(con: sqlite3.Connection) -> str:
            row = con.execute("SELECT principal FROM owner WHERE kind = ? AND id = ?",
                              (kind, rid)).fetchone()
            if row:
                return row[0]
            held = con.execute("SELECT COUNT(*) FROM owner WHERE principal = ? AND kind = ?",
                               (principal, kind)).fetchone()[0]
            if held >= limit:
                raise ClaimLimit(f"{principal} already holds {held} of kind {kind}")
            con.execute("INSERT INTO owner (kind, id, principal, created) VALUES (?, ?, ?, ?)",
                        (kind, rid, principal, time.time()))
            return principal

        return self._write(work)

    def owned(self, kind: str, principal: str) -> set[str]:
        with closing(self._connect()) as con:
            rows = con.execute("SELECT id FROM owner WHERE kind = ? AND principal = ?",
                               (kind, principal)).fetchall()
        return {r[0] for r in rows}

    # -- personal tokens (the class join code exchanged for one identity each) ---------------------
    def add_personal(self, token_hash: str, principal: str, limit: int = MAX_PERSONAL_TOKENS) -> bool:
        """Keep a personal token (its SHA-256 only); False when `limit` are kept already."""

        def work(con: sqlite3.Connection) -> bool:
            if con.execute("SELECT COUNT(*) FROM personal_token").fetchone()[0] >= limit:
                return False
            con.execute("INSERT INTO personal_token (token_hash, principal, made) VALUES (?, ?, ?)",
                        (token_hash, principal, time.time()))
            return True

        return self._write(work)

    def personal_tokens(self) -> dict[str, str]:
        """token SHA-256 -> principal, for every personal token handed out."""
        with closing(self._connect()) as con:
            return dict(con.execute("SELECT token_hash, principal FROM personal_token").fetchall())

    # -- chat names -----------------------------------------------------------------------------
    def bind_name(self, principal: str, name: str, keys: Iterable[str],
                  one_per_identity: bool) -> tuple[str, str | None]:
        """Bind the chat name `name` (compared by `keys`) to `principal`:
        ("ok", None); ("taken", holder) when another identity holds a key; ("other", held name)
        when `one_per_identity` and the identity already holds another name."""
        keys = sorted(set(keys))

        def work(con: sqlite3.Connection) -> tuple[str, str | None]:
            for key in keys:
                row = con.execute("SELECT principal FROM owner WHERE kind = 'name' AND id = ?",
                                  (key,)).fetchone()
                if row and row[0] != principal:
                    return "taken", row[0]
            if one_per_identity:
                mine = {r[0] for r in con.execute(
                    "SELECT id FROM owner WHERE kind = 'name' AND principal = ?", (principal,))}
                if mine and not mine & set(keys):
                    row = con.execute("SELECT name FROM chat_identity WHERE principal = ?",
                                      (principal,)).fetchone()
                    return "other", (row[0] if row else None)
            now = time.time()
            con.executemany("INSERT OR IGNORE INTO owner (kind, id, principal, created) "
                            "VALUES ('name', ?, ?, ?)", [(k, principal, now) for k in keys])
            con.execute("INSERT INTO chat_identity (principal, name) VALUES (?, ?) "
                        "ON CONFLICT (principal) DO UPDATE SET name = excluded.name",
                        (principal, name))
            return "ok", None

        return self._write(work)

    def name_holder(self, keys: Iterable[str]) -> str | None:
        """The identity holding any of `keys`, or None."""
        with closing(self._connect()) as con:
            for key in sorted(set(keys)):
                row = con.execute("SELECT principal FROM owner WHERE kind = 'name' AND id = ?",
                                  (key,)).fetchone()
                if row:
                    return row[0]
        return None

    def held_name(self, principal: str) -> str | None:
        with closing(self._connect()) as con:
            row = con.execute("SELECT name FROM chat_identity WHERE principal = ?",
                              (principal,)).fetchone()
        return row[0] if row else None

    def set_removed(self, principal: str, removed: bool) -> None:
        self._write(lambda con: con.execute(
            "INSERT INTO chat_identity (principal, removed) VALUES (?, ?) "
            "ON CONFLICT (principal) DO UPDATE SET removed = excluded.removed",
            (principal, int(removed))))

    def is_removed(self, principal: str) -> bool:
        with closing(self._connect()) as con:
            row = con.execute("SELECT removed FROM chat_identity WHERE principal = ?",
                              (principal,)).fetchone()
        return bool(row and row[0])
