"""The one SQLite helper: private files, WAL, and a write transaction that rolls back."""

import sqlite3
import stat
import threading

import pytest

from serving.store import Store
from vision import sqlite


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_databases_and_their_folders_are_private(tmp_path):
    with Store(tmp_path / "var" / "wildscan.db") as store:
        store.add_key("officer", role="user")
    assert mode(tmp_path / "var") == 0o700
    assert mode(tmp_path / "var" / "wildscan.db") == 0o600
    wal = tmp_path / "var" / "wildscan.db-wal"
    assert not wal.exists() or mode(wal) == 0o600


def test_write_transaction_commits_or_rolls_back(tmp_path):
    conn = sqlite.connect(tmp_path / "t.db", schema="CREATE TABLE IF NOT EXISTS t (x INTEGER);")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    lock = threading.Lock()
    with sqlite.write_transaction(conn, lock) as db:
        db.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError), sqlite.write_transaction(conn, lock) as db:
        db.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("half-way")
    assert [row[0] for row in conn.execute("SELECT x FROM t")] == [1]
    assert not lock.locked()


def test_migrations_run_once_in_order_and_a_newer_file_is_refused(tmp_path):
    steps = ["CREATE TABLE a (x INTEGER)", "ALTER TABLE a ADD COLUMN y TEXT"]
    path = tmp_path / "m.db"
    conn = sqlite.connect(path, migrations=steps[:1])
    conn.execute("INSERT INTO a VALUES (1)")
    conn.close()
    conn = sqlite.connect(path, migrations=steps)  # a later wildscan: one more step, data kept
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert conn.execute("SELECT x, y FROM a").fetchall() == [(1, None)]
    assert sqlite.migrate(conn, steps) == 2  # nothing left to run
    conn.close()
    with pytest.raises(sqlite3.DatabaseError, match="schema version 2"):
        sqlite.connect(path, migrations=steps[:1])  # an older wildscan on a newer file
