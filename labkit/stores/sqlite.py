"""Create tables in the lab's SQLite file safely when several processes start at once, and run a
store's writes in one immediate transaction (`write_transaction`).

Each store (notes, idempotency keys, the bank) creates its tables when a lab starts. A cluster
starts several worker processes on one file at the same moment, and two things can then fail at
once instead of waiting: switching the file to WAL, and a `CREATE TABLE IF NOT EXISTS` script that
began as a reader and must become a writer (SQLite refuses that upgrade with "database is locked"
without calling the busy handler, to avoid a deadlock). So the script takes the write lock first
(`BEGIN IMMEDIATE`, which does wait), and a refusal is retried until `timeout_s` has passed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

RETRY_S = 0.05


def create_schema(path: str | Path, schema: str, timeout_s: float = 10.0) -> None:
    """Switch the file at `path` to WAL (a setting the file keeps) and run `schema` (CREATE ... IF
    NOT EXISTS statements) in one write transaction, retrying while another process holds the lock."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with closing(sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None)) as con:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(f"BEGIN IMMEDIATE;\n{schema}\nCOMMIT;")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(RETRY_S)


def connect(path: str | Path, timeout_s: float = 10.0, *, rows: bool = False) -> sqlite3.Connection:
    """A connection to the lab's SQLite file in autocommit mode (each store opens one per call and
    begins its own transactions), waiting up to `timeout_s` for a lock; rows=True returns
    sqlite3.Row rows (by column name)."""
    con = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None)
    if rows:
        con.row_factory = sqlite3.Row
    return con


def write_transaction(connect: Callable[[], sqlite3.Connection], work: Callable[[sqlite3.Connection], T]
                      ) -> T:
    """Run `work(con)` in one write transaction on a new connection from `connect` (autocommit
    mode): `BEGIN IMMEDIATE` takes the write lock first (waiting, where a deferred transaction
    that began as a reader could fail to upgrade), COMMIT on success, ROLLBACK on any error."""
    with closing(connect()) as con:
        con.execute("BEGIN IMMEDIATE")
        try:
            result = work(con)
            con.execute("COMMIT")
            return result
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
