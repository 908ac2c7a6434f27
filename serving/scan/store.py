"""The scan database: nothing committed is ever lost or written twice.

SQLite, one file (``--db``; by default beside the output, ``results.db``):

- ``results``: one row per (content SHA-256, scorer): the result record for those bytes
  (a score, or a decode failure such as ``truncated``), and when it was computed.
  Identical bytes under many paths are scored once. The *scorer* is the model's SHA-256,
  extended with a digest of its reference galleries' versions when it has any.
- ``items``: one row per (item id, scorer): the path or manifest row, its metadata and
  the SHA-256 it links to; or, when there were no bytes to hash (missing, empty or
  unreadable file), the item's own failure record.

Finished items are committed in batches, each in one transaction, with
``synchronous=FULL`` in WAL mode: a run killed at any moment (even SIGKILL or power loss)
keeps every committed batch and none of the uncommitted one, and primary keys make a
second insert impossible. A new run registers its items (in input order) in a temporary
table and works only on those the database does not hold yet.

The stored ``label``/``flagged`` reflect the bundle's own thresholds; outputs re-apply
the thresholds of the current run to the stored ``scores``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from vision import sqlite
from vision.errors import Reason, WildscanError
from vision.records import utc_now

from .inputs import ScanItem
from .work import Outcome, batched

SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    sha256 TEXT NOT NULL,
    scorer TEXT NOT NULL,
    record TEXT NOT NULL,
    scanned_at TEXT NOT NULL,
    PRIMARY KEY (sha256, scorer)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT NOT NULL,
    scorer TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT,
    failure TEXT,
    metadata TEXT NOT NULL,
    scanned_at TEXT NOT NULL,
    PRIMARY KEY (item_id, scorer)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_by_sha256 ON items (sha256);
"""
_BLOCK = 500  # ids per query (SQLite allows 32766 parameters; keep statements small)


class StoreError(WildscanError):
    """A scan database that cannot be opened or was written by an incompatible version."""

    reason = Reason.BAD_DATABASE


@dataclass(frozen=True)
class StoredRecord:
    """One item's final record: the result for its bytes, re-labelled with its own path."""

    item_id: str
    path: str
    metadata: dict
    record: dict
    scanned_at: str


class ScanStore:
    """The results of scans with one scorer (model), in one SQLite file. Use from one thread."""

    def __init__(self, path: str | Path, scorer: str):
        self.path = Path(path)
        self.scorer = scorer
        try:
            self.conn = sqlite.connect(self.path, schema=_SCHEMA, synchronous="FULL", autocommit=False, shared=False)
            self._check_version()
            self.conn.execute("CREATE TEMP TABLE scan_order (seq INTEGER PRIMARY KEY, item_id TEXT NOT NULL UNIQUE)")
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: not a usable scan database ({e})") from e

    def _check_version(self) -> None:
        with self.conn:
            self.conn.execute("INSERT OR IGNORE INTO info VALUES ('schema', ?)", (SCHEMA_VERSION,))
        (version,) = self.conn.execute("SELECT value FROM info WHERE key = 'schema'").fetchone()
        if version != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {version}; this wildscan reads {SCHEMA_VERSION}")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> ScanStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- what this run covers ------------------------------------------------------------

    def register(self, items: Iterable[ScanItem]) -> tuple[int, int]:
        """Record this run's items in input order; returns ``(distinct items, already done)``.

        An id seen twice (the same file reached through two inputs) counts once, at its
        first position.
        """
        rows = ((seq, item.item_id) for seq, item in enumerate(items))
        with self.conn:
            self.conn.execute("DELETE FROM scan_order")
            self.conn.executemany("INSERT OR IGNORE INTO scan_order VALUES (?, ?)", rows)
        (total,) = self.conn.execute("SELECT COUNT(*) FROM scan_order").fetchone()
        (done,) = self.conn.execute(
            "SELECT COUNT(*) FROM scan_order s JOIN items i ON i.item_id = s.item_id AND i.scorer = ?",
            (self.scorer,),
        ).fetchone()
        return total, done

    def pending(self, items: Iterable[ScanItem]) -> Iterator[ScanItem]:
        """The registered items not yet done, in the order ``items`` gives them.

        Items are matched by id, not by position, so a file added or removed between
        :meth:`register`'s walk of the inputs and this one shifts nothing; an id met twice
        is yielded once.
        """
        yielded: set[str] = set()
        for block in batched(items, _BLOCK):
            yield from self._undone(block, yielded)

    def _undone(self, block: list[ScanItem], yielded: set[str]) -> Iterator[ScanItem]:
        if not block:
            return
        ids = list({item.item_id for item in block})
        marks = ",".join("?" * len(ids))
        todo = {
            item_id
            for (item_id,) in self.conn.execute(
                f"SELECT s.item_id FROM scan_order s LEFT JOIN items i "
                f"ON i.item_id = s.item_id AND i.scorer = ? "
                f"WHERE s.item_id IN ({marks}) AND i.item_id IS NULL",
                (self.scorer, *ids),
            )
        }
        for item in block:
            if item.item_id in todo and item.item_id not in yielded:
                yielded.add(item.item_id)
                yield item

    # --- writing -------------------------------------------------------------------------

    def save(self, finished: Sequence[tuple[ScanItem, Outcome]]) -> None:
        """Commit finished items and their new results in one transaction."""
        now = utc_now()
        results = [
            (o.sha256, self.scorer, json.dumps(o.record, ensure_ascii=False), now)
            for _, o in finished
            if o.sha256 and o.record is not None
        ]
        items = [
            (
                item.item_id,
                self.scorer,
                item.path,
                o.sha256,
                None if o.sha256 else json.dumps(o.record, ensure_ascii=False),
                json.dumps(item.metadata, ensure_ascii=False, default=str),
                now,
            )
            for item, o in finished
        ]
        with self.conn:
            self.conn.executemany("INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?)", results)
            self.conn.executemany("INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?, ?, ?)", items)

    def known(self, digests: Iterable[str]) -> set[str]:
        """The digests among ``digests`` already scored by this scorer."""
        return known_digests(self.conn, self.scorer, digests)

    # --- reading -------------------------------------------------------------------------

    def records(self) -> Iterator[StoredRecord]:
        """Every registered item that is done, in input order, with its full record."""
        rows = self.conn.execute(
            "SELECT i.item_id, i.path, i.metadata, COALESCE(r.record, i.failure), COALESCE(r.scanned_at, i.scanned_at) "
            "FROM scan_order s JOIN items i ON i.item_id = s.item_id AND i.scorer = ? "
            "LEFT JOIN results r ON r.sha256 = i.sha256 AND r.scorer = i.scorer "
            "ORDER BY s.seq",
            (self.scorer,),
        )
        for item_id, path, metadata, record, scanned_at in rows:
            rec = json.loads(record)
            rec["path"] = path
            yield StoredRecord(item_id, path, json.loads(metadata), rec, scanned_at)


class Committer:
    """Buffers finished items and saves them every ``every`` items or ``seconds``."""

    def __init__(self, store: ScanStore, every: int = 64, seconds: float = 1.0):
        self._clock = time.monotonic
        self.store, self.every, self.seconds = store, every, seconds
        self._buffer: list[tuple[ScanItem, Outcome]] = []
        self._last = self._clock()

    def add(self, items: Sequence[ScanItem], outcomes: Sequence[Outcome]) -> None:
        """Queue a chunk (never split across transactions); save when due."""
        if [i.item_id for i in items] != [o.item_id for o in outcomes]:
            raise ValueError("outcomes do not match the chunk's items")
        self._buffer.extend(zip(items, outcomes))
        if len(self._buffer) >= self.every or self._clock() - self._last >= self.seconds:
            self.flush()

    def flush(self) -> None:
        """Save whatever is buffered."""
        if self._buffer:
            self.store.save(self._buffer)
            self._buffer = []
        self._last = self._clock()


def known_digests(conn: sqlite3.Connection, scorer: str, digests: Iterable[str]) -> set[str]:
    """The digests among ``digests`` with a stored result by ``scorer``."""
    wanted = list(set(digests))
    found: set[str] = set()
    for start in range(0, len(wanted), _BLOCK):
        part = wanted[start : start + _BLOCK]
        marks = ",".join("?" * len(part))
        found.update(
            row[0]
            for row in conn.execute(
                f"SELECT sha256 FROM results WHERE scorer = ? AND sha256 IN ({marks})", (scorer, *part)
            )
        )
    return found


def open_reader(path: str | Path) -> sqlite3.Connection:
    """A read-only connection (for worker processes checking what is already scored)."""
    return sqlite.read_only(path)


def default_db_path(out: str | Path) -> Path:
    """``results.db`` beside ``results.jsonl`` (or .csv / .parquet)."""
    return Path(out).with_suffix(".db")
