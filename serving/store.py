"""The audit store: every result and every API key, in one SQLite file (WAL mode).

A result row says when, which key, which bytes (SHA-256, PDQ), which model and what
answer, with the full record as JSON; the image itself is never stored here.

API keys look like ``wsk_<id>_<secret>``: the id finds the row, the secret is checked
against a salted SHA-256 in constant time. Keys are random 256-bit values, so a fast
salted hash is enough (a slow password hash protects guessable secrets, which these
are not). The plain key is shown once, by :meth:`Store.add_key`, and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from vision import sqlite
from vision.errors import Reason, WildscanError
from vision.records import utc_now

ROLES = ("admin", "user")
KEY_PREFIX = "wsk_"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    result_id     TEXT PRIMARY KEY,
    received_at   TEXT NOT NULL,
    key_name      TEXT,
    sha256        TEXT,
    pdq           TEXT,
    model_name    TEXT,
    model_version TEXT,
    model_sha256  TEXT,
    label         TEXT,
    score         REAL,
    flagged       INTEGER NOT NULL DEFAULT 0,
    error_reason  TEXT,
    record        TEXT NOT NULL,
    source_url    TEXT,
    case_id       TEXT,
    note          TEXT
);
CREATE INDEX IF NOT EXISTS results_sha256 ON results (sha256);
CREATE INDEX IF NOT EXISTS results_case ON results (case_id);
CREATE TABLE IF NOT EXISTS api_keys (
    name     TEXT PRIMARY KEY,
    key_id   TEXT NOT NULL UNIQUE,
    salt     BLOB NOT NULL,
    key_hash BLOB NOT NULL,
    created  TEXT NOT NULL,
    role     TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    revoked  TEXT
);
"""
# Changes to a file made by an earlier wildscan, applied once each, in order (vision.sqlite.migrate).
MIGRATIONS = (
    # officers' feedback on results: "correct", or "wrong" and the right category
    """CREATE TABLE feedback (
        feedback_id INTEGER PRIMARY KEY,
        result_id   TEXT NOT NULL REFERENCES results (result_id),
        given_at    TEXT NOT NULL,
        key_name    TEXT,
        verdict     TEXT NOT NULL CHECK (verdict IN ('correct', 'wrong')),
        label       TEXT NOT NULL,
        note        TEXT
    );
    CREATE INDEX feedback_result ON feedback (result_id)""",
)
VERDICTS = ("correct", "wrong")


class StoreError(WildscanError):
    """A key or result operation that cannot be done (duplicate name, unknown key, ...)."""

    reason = Reason.STORE_ERROR


@dataclass(frozen=True)
class KeyInfo:
    """Who is calling: a key's name and role (``anonymous`` in demo mode)."""

    name: str
    role: str = "user"

    @property
    def is_admin(self) -> bool:
        """Admins may read every key's results."""
        return self.role == "admin"


def new_result_id() -> str:
    """A random, unguessable result id (128 bits, hex)."""
    return secrets.token_hex(16)


class Store:
    """A SQLite audit database. One connection guarded by a lock; safe to share across threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite.connect(self.path, schema=_SCHEMA, migrations=MIGRATIONS)
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlite.write_transaction(self._db, self._lock)

    def _query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # --- results ---------------------------------------------------------------------

    def add_results(self, records: list[dict], *, key_name: str | None) -> None:
        """Append result records (each with ``result_id`` and ``received_at``) in one transaction."""
        rows = [_result_row(r, key_name) for r in records]
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO results (result_id, received_at, key_name, sha256, pdq, model_name, model_version, "
                "model_sha256, label, score, flagged, error_reason, record, source_url, case_id, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def get_result(self, result_id: str, *, key_name: str | None = None) -> dict | None:
        """The stored record with this id (only if made by ``key_name``, when given), else ``None``."""
        sql = "SELECT record FROM results WHERE result_id = ?"
        params: tuple[str, ...] = (result_id,)
        if key_name is not None:
            sql, params = sql + " AND key_name = ?", (result_id, key_name)
        rows = self._query(sql, params)
        return json.loads(rows[0]["record"]) if rows else None

    def find_results(
        self, *, sha256: str | None = None, case_id: str | None = None, key_name: str | None = None, limit: int = 100
    ) -> list[dict]:
        """Stored records matching every given filter, newest first, at most ``limit``."""
        clauses, params = [], []
        for column, value in (("sha256", sha256), ("case_id", case_id), ("key_name", key_name)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = self._query(
            f"SELECT record FROM results{where} ORDER BY received_at DESC, rowid DESC LIMIT ?", (*params, int(limit))
        )
        return [json.loads(r["record"]) for r in rows]

    def count_results(self) -> int:
        """How many result rows the store holds."""
        return int(self._query("SELECT COUNT(*) AS n FROM results")[0]["n"])

    # --- officers' feedback ----------------------------------------------------------------

    def add_feedback(
        self, result_id: str, *, verdict: str, label: str, note: str | None = None, key_name: str | None = None
    ) -> dict:
        """Record that the result ``result_id`` is ``correct`` or ``wrong`` (``label``: the right
        category) as said by ``key_name``, now; returns the stored feedback. The latest one counts."""
        if verdict not in VERDICTS:
            raise StoreError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
        given_at = utc_now()
        with self._transaction() as db:
            if not db.execute("SELECT 1 FROM results WHERE result_id = ?", (result_id,)).fetchone():
                raise StoreError(f"no result with id {result_id!r}")
            cursor = db.execute(
                "INSERT INTO feedback (result_id, given_at, key_name, verdict, label, note) VALUES (?, ?, ?, ?, ?, ?)",
                (result_id, given_at, key_name, verdict, label, note),
            )
        return {
            "feedback_id": cursor.lastrowid,
            "result_id": result_id,
            "given_at": given_at,
            "given_by": key_name,
            "verdict": verdict,
            "label": label,
            "note": note,
        }

    def feedback_for(self, result_id: str) -> list[dict]:
        """Every feedback given on one result, oldest first."""
        rows = self._query(
            "SELECT feedback_id, result_id, given_at, key_name AS given_by, verdict, label, note FROM feedback "
            "WHERE result_id = ? ORDER BY feedback_id",
            (result_id,),
        )
        return [dict(r) for r in rows]

    def latest_feedback(self) -> list[tuple[dict, dict]]:
        """``(feedback, result record)`` for every result that has feedback, its latest one only,
        oldest result first (what ``wildscan feedback export`` writes)."""
        rows = self._query(
            "SELECT f.feedback_id, f.result_id, f.given_at, f.key_name AS given_by, f.verdict, f.label, f.note, "
            "r.record FROM feedback f JOIN results r USING (result_id) "
            "WHERE f.feedback_id = (SELECT MAX(feedback_id) FROM feedback WHERE result_id = f.result_id) "
            "ORDER BY r.received_at, r.rowid"
        )
        pairs = [dict(r) for r in rows]
        return [(row, json.loads(row.pop("record"))) for row in pairs]

    # --- API keys --------------------------------------------------------------------

    def add_key(self, name: str, *, role: str = "user") -> str:
        """Create a key called ``name``; returns the plain key (shown once, never stored).

        Raises :class:`StoreError` when the name is taken or the role unknown.
        """
        if role not in ROLES:
            raise StoreError(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise StoreError(f"key name {name!r}: use 1-64 letters, digits, '-', '_' or '.'")
        key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_bytes(16)
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO api_keys (name, key_id, salt, key_hash, created, role) VALUES (?, ?, ?, ?, ?, ?)",
                    (name, key_id, salt, _hash_secret(salt, secret), utc_now(), role),
                )
        except sqlite3.IntegrityError as e:
            raise StoreError(f"a key named {name!r} already exists (revoke it or pick another name)") from e
        return f"{KEY_PREFIX}{key_id}_{secret}"

    def verify_key(self, key: str) -> KeyInfo | None:
        """The key's owner if ``key`` is valid and not revoked, else ``None``."""
        key_id, secret = _split_key(key)
        if key_id is None:
            return None
        rows = self._query("SELECT name, salt, key_hash, role, revoked FROM api_keys WHERE key_id = ?", (key_id,))
        if not rows:
            return None
        row = rows[0]
        if not hmac.compare_digest(row["key_hash"], _hash_secret(row["salt"], secret)) or row["revoked"]:
            return None
        return KeyInfo(row["name"], row["role"])

    def list_keys(self) -> list[dict]:
        """Every key's name, role, creation time and revocation time (never the key)."""
        rows = self._query("SELECT name, role, created, revoked FROM api_keys ORDER BY created, name")
        return [dict(r) for r in rows]

    def active_key_count(self) -> int:
        """How many keys are not revoked."""
        return int(self._query("SELECT COUNT(*) AS n FROM api_keys WHERE revoked IS NULL")[0]["n"])

    def revoke_key(self, name: str) -> None:
        """Revoke the key called ``name``; raises :class:`StoreError` if there is none active."""
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE api_keys SET revoked = ? WHERE name = ? AND revoked IS NULL", (utc_now(), name)
            ).rowcount
        if not changed:
            raise StoreError(f"no active key named {name!r}")


def _hash_secret(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode("utf-8")).digest()


def _split_key(key: str) -> tuple[str | None, str]:
    if not key.startswith(KEY_PREFIX):
        return None, ""
    key_id, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    return (key_id, secret) if sep and key_id and secret else (None, "")


def _result_row(record: dict, key_name: str | None) -> tuple:
    model = record.get("model") or {}
    error = record.get("error") or {}
    return (
        record["result_id"],
        record["received_at"],
        key_name,
        record.get("sha256"),
        record.get("pdq"),
        model.get("name"),
        model.get("version"),
        model.get("sha256"),
        record.get("label"),
        record.get("score"),
        int(bool(record.get("flagged"))),
        error.get("reason"),
        json.dumps(record, ensure_ascii=False),
        record.get("source_url"),
        record.get("case_id"),
        record.get("note"),
    )
