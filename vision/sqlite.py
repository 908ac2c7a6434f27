"""One way to open wildscan's SQLite files (audit, galleries, scans): WAL, a busy timeout,
private permissions, the schema applied; and one write transaction.

The files hold case numbers, notes, source URLs and key hashes: a new database file is
created readable by its owner only (0600), in a folder made 0700 when wildscan creates it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def connect(
    path: str | Path,
    *,
    schema: str = "",
    migrations: Sequence[str] = (),
    synchronous: str = "NORMAL",
    autocommit: bool = True,
    shared: bool = True,
) -> sqlite3.Connection:
    """Open (creating) the database at ``path``: WAL journal, ``synchronous``, 5 s busy
    timeout, ``schema`` executed, then :func:`migrate`. ``autocommit``: transactions only where
    :func:`write_transaction` opens them; else Python's implicit transactions (``with conn:``).
    ``shared``: the connection may be used from several threads (callers hold a lock)."""
    path = Path(path)
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(path, check_same_thread=not shared, isolation_level=None if autocommit else "DEFERRED")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=5000")
    if schema:
        conn.executescript(schema)
    migrate(conn, migrations)
    return conn


def migrate(conn: sqlite3.Connection, migrations: Sequence[str]) -> int:
    """Apply the ``migrations`` (SQL scripts of plain ``;``-separated statements, oldest first)
    that this file has not had yet,
    each in one transaction, recording the count in ``PRAGMA user_version``; returns it. A
    file from a newer wildscan (more migrations than known) is refused."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations):
        raise sqlite3.DatabaseError(
            f"the database is at schema version {version}; this wildscan knows {len(migrations)}"
        )
    for number in range(version + 1, len(migrations) + 1):
        # the version is read again under the write lock: two processes upgrading one file at
        # the same moment apply each migration once (the second finds it done)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] < number:
                for statement in migrations[number - 1].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return max(version, len(migrations))


def read_only(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to an existing database."""
    return sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)


@contextmanager
def write_transaction(conn: sqlite3.Connection, lock: threading.Lock) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` under ``lock`` (``ROLLBACK`` on any error) on an
    autocommit connection: the write lock is taken up front, so two writers never deadlock."""
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
