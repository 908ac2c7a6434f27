"""Reference galleries: teach wildscan a category from a few example photos, without retraining.

A gallery holds, per category and per model (embeddings only mean something to the model
that made them, so everything is keyed by the model's SHA-256): each example photo's
L2-normalised embedding (float32), its SHA-256, who added it and when. It never holds the
photos. Every change (photos added or removed, a gallery imported, the negative pool
rebuilt) raises the gallery's ``version``, and every result names the version it used.

Galleries live in one SQLite file beside the model (``models/galleries.db``, or
``$WILDSCAN_GALLERIES``). Each gallery's threshold is chosen from its own photos against a
fixed *negative pool* (:mod:`vision.matching` states the rule); the pool's embeddings are
stored in the same file, keyed by the model, built on first use from the list of
non-wildlife photos that training wrote beside the model (``NAME.negatives.csv``,
:func:`vision.gallery_photos.default_negative_photos`) or from photos given to
``wildscan gallery negatives``.

Export/import: :mod:`vision.gallery_exchange`; embedding photos and the negative pool:
:mod:`vision.gallery_photos`; data types: :mod:`vision.gallery_types`.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import sqlite
from .gallery_exchange import GalleryExchange
from .gallery_types import GALLERY_FORMAT, GalleryError, GalleryInfo, Reference, check_category, from_blob, to_blob
from .matching import TARGET_FALSE_MATCH, Gallery, GalleryIndex, calibrate, normalise
from .records import utc_now
from .settings import GALLERY_DB_NAME, galleries_path, models_dir

DB_NAME = GALLERY_DB_NAME
__all__ = [
    "DB_NAME",
    "GALLERY_FORMAT",
    "GalleryError",
    "GalleryInfo",
    "GalleryStore",
    "Reference",
    "check_category",
    "gallery_db_path",
    "snapshot",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', '0');
CREATE TABLE IF NOT EXISTS galleries (
    model_sha256    TEXT NOT NULL,
    category        TEXT NOT NULL,
    version         INTEGER NOT NULL,
    threshold       REAL,
    calibration     TEXT NOT NULL DEFAULT '{}',
    negative_scores BLOB,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (model_sha256, category)
);
CREATE TABLE IF NOT EXISTS refs (
    model_sha256 TEXT NOT NULL,
    category     TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    embedding    BLOB NOT NULL,
    added_by     TEXT NOT NULL,
    added_at     TEXT NOT NULL,
    PRIMARY KEY (model_sha256, category, sha256)
);
CREATE TABLE IF NOT EXISTS negatives (
    model_sha256 TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    embedding    BLOB NOT NULL,
    PRIMARY KEY (model_sha256, sha256)
);
CREATE TABLE IF NOT EXISTS negative_pools (
    model_sha256 TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    built_at     TEXT NOT NULL
);
"""


def gallery_db_path(onnx_path: str | Path | None = None) -> Path:
    """Where galleries are kept: ``$WILDSCAN_GALLERIES``, else ``galleries.db`` beside the model."""
    env = galleries_path()
    if env:
        return env
    if onnx_path is not None:
        return Path(onnx_path).parent / DB_NAME
    return models_dir() / DB_NAME


def snapshot(source: str | Path, dest: str | Path) -> Path:
    """Copy the gallery database ``source`` to ``dest`` consistently (SQLite's online
    backup: a gallery being edited meanwhile is copied as it was before or after the edit,
    never half-way); returns ``dest``."""
    dest = Path(dest)
    reader = sqlite.read_only(source)
    try:
        writer = sqlite3.connect(dest)
        try:
            reader.backup(writer)
        finally:
            writer.close()
    finally:
        reader.close()
    return dest


class GalleryStore(GalleryExchange):
    """The galleries of one model in a SQLite file. Thread-safe; other processes may write too.

    ``model`` is the model's ``model_info()`` (``name``, ``version``, ``sha256``); ``dim``
    its embedding size, checked on every write when given.
    """

    def __init__(self, path: str | Path, model: dict, *, dim: int | None = None):
        self.path = Path(path)
        self.model = dict(model)
        self.model_sha = model["sha256"]
        self.dim = dim
        self._lock = threading.Lock()
        self._db = sqlite.connect(self.path, schema=_SCHEMA)
        self._index: GalleryIndex | None = None
        self._index_revision: int | None = None

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> GalleryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that also bumps the file-wide revision (readers reload on change)."""
        with sqlite.write_transaction(self._db, self._lock) as db:
            yield db
            db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'revision'")

    def _rows(self, sql: str, params: tuple = ()) -> builtins.list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def revision(self) -> int:
        """A counter raised by every write to the file (by any process)."""
        return int(self._rows("SELECT value FROM meta WHERE key = 'revision'")[0][0])

    # --- reading ---------------------------------------------------------------------------

    def list(self) -> list[GalleryInfo]:
        """Every gallery of this model (empty ones included, they keep their version), by category."""
        rows = self._rows(
            "SELECT g.category, g.version, COUNT(r.sha256), g.threshold, g.calibration, g.updated_at "
            "FROM galleries g LEFT JOIN refs r ON r.model_sha256 = g.model_sha256 AND r.category = g.category "
            "WHERE g.model_sha256 = ? GROUP BY g.category ORDER BY g.category",
            (self.model_sha,),
        )
        return [GalleryInfo(c, v, n, t, json.loads(cal), u) for c, v, n, t, cal, u in rows]

    def info(self, category: str) -> GalleryInfo | None:
        """One gallery's summary, or ``None`` if it never existed for this model."""
        return next((g for g in self.list() if g.category == category), None)

    def _info(self, category: str) -> GalleryInfo:
        """The summary of a gallery that exists (just written)."""
        info = self.info(category)
        if info is None:
            raise GalleryError(f"no {category!r} gallery for this model", "not_found")
        return info

    def references(self, category: str) -> builtins.list[Reference]:
        """A gallery's references, in the order they were added."""
        rows = self._rows(
            "SELECT sha256, added_by, added_at, embedding FROM refs WHERE model_sha256 = ? "
            "AND category = ? ORDER BY added_at, rowid",
            (self.model_sha, category),
        )
        return [Reference(s, b, a, from_blob(e)) for s, b, a, e in rows]

    def negatives(self) -> np.ndarray | None:
        """The negative pool's embeddings for this model (normalised), or ``None`` if not built."""
        rows = self._rows("SELECT embedding FROM negatives WHERE model_sha256 = ? ORDER BY sha256", (self.model_sha,))
        return np.stack([from_blob(r[0]) for r in rows]) if rows else None

    def negative_pool_info(self) -> dict | None:
        """``{"source", "built_at", "photos"}`` of this model's negative pool, or ``None``."""
        rows = self._rows("SELECT source, built_at FROM negative_pools WHERE model_sha256 = ?", (self.model_sha,))
        if not rows:
            return None
        count = self._rows("SELECT COUNT(*) FROM negatives WHERE model_sha256 = ?", (self.model_sha,))[0][0]
        return {"source": rows[0][0], "built_at": rows[0][1], "photos": int(count)}

    # --- writing ---------------------------------------------------------------------------

    def set_negatives(self, shas: Sequence[str], embeddings: np.ndarray, source: str) -> None:
        """Replace this model's negative pool and recalibrate every gallery (each gets a new version)."""
        embeddings = self._checked(embeddings)
        if len(shas) != len(embeddings) or not len(shas):
            raise GalleryError("the negative pool needs at least one photo and one embedding per photo")
        with self._write() as db:
            db.execute("DELETE FROM negatives WHERE model_sha256 = ?", (self.model_sha,))
            db.executemany(
                "INSERT OR REPLACE INTO negatives VALUES (?, ?, ?)",
                [(self.model_sha, s, to_blob(e)) for s, e in zip(shas, embeddings)],
            )
            db.execute("INSERT OR REPLACE INTO negative_pools VALUES (?, ?, ?)", (self.model_sha, source, utc_now()))
            for (category,) in db.execute(
                "SELECT category FROM galleries WHERE model_sha256 = ?", (self.model_sha,)
            ).fetchall():
                self._bump(db, category)
                self._recalibrate(db, category, embeddings)

    def add(self, category: str, shas: Sequence[str], embeddings: np.ndarray, *, added_by: str) -> GalleryInfo:
        """Add photos (by hash and embedding) to a gallery; photos already in it are skipped.

        Creates the gallery if needed, recalibrates its threshold and raises its version
        when anything was added. Raises :class:`GalleryError` for an unknown category, a
        wrong embedding size or a missing negative pool.
        """
        check_category(category)
        if not len(shas) or len(shas) != len(embeddings):
            raise GalleryError("no usable photos to add (one embedding per photo is needed)", "no_photos")
        embeddings = self._checked(embeddings)
        negatives = self._require_negatives()
        now = utc_now()
        with self._write() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO refs VALUES (?, ?, ?, ?, ?, ?)",
                [(self.model_sha, category, s, to_blob(e), added_by, now) for s, e in zip(shas, embeddings)],
            )
            if db.total_changes > before or not self._exists(db, category):
                self._bump(db, category)
                self._recalibrate(db, category, negatives)
        return self._info(category)

    def remove(self, category: str, shas: Sequence[str] | None = None) -> GalleryInfo:
        """Remove some photos (by SHA-256) or, without ``shas``, all photos of a gallery.

        The gallery keeps its row (and version history) so versions never go back.
        Raises :class:`GalleryError` when the gallery or a named photo is not there.
        """
        check_category(category)
        if self.info(category) is None:
            raise GalleryError(f"there is no {category!r} gallery for model {self.model.get('name')}", "not_found")
        present = {r.sha256 for r in self.references(category)}
        missing = sorted(set(shas or ()) - present)
        if missing:
            raise GalleryError(f"not in the {category!r} gallery: {', '.join(missing)}", "not_found")
        with self._write() as db:
            if shas is None:
                db.execute("DELETE FROM refs WHERE model_sha256 = ? AND category = ?", (self.model_sha, category))
            else:
                db.executemany(
                    "DELETE FROM refs WHERE model_sha256 = ? AND category = ? AND sha256 = ?",
                    [(self.model_sha, category, s) for s in shas],
                )
            self._bump(db, category)
            left = db.execute(
                "SELECT COUNT(*) FROM refs WHERE model_sha256 = ? AND category = ?", (self.model_sha, category)
            ).fetchone()[0]
            negatives = self.negatives_in(db)
            if not left:  # an empty gallery matches nothing, whatever threshold it had
                db.execute(
                    "UPDATE galleries SET threshold = NULL WHERE model_sha256 = ? AND category = ?",
                    (self.model_sha, category),
                )
            elif negatives is not None:
                self._recalibrate(db, category, negatives)
        return self._info(category)

    def _checked(self, embeddings: np.ndarray) -> np.ndarray:
        embeddings = normalise(embeddings)
        if self.dim is not None and embeddings.shape[1] != self.dim:
            raise GalleryError(f"embeddings have {embeddings.shape[1]} dimensions; the model makes {self.dim}")
        return embeddings

    def _require_negatives(self) -> np.ndarray:
        negatives = self.negatives()
        if negatives is None:
            raise GalleryError(
                "this model has no negative pool yet: run `wildscan gallery negatives` "
                "(it embeds a fixed set of non-wildlife photos once)",
                "no_negative_pool",
            )
        return negatives

    def negatives_in(self, db: sqlite3.Connection) -> np.ndarray | None:
        """The negative pool read inside an open transaction (the lock is held)."""
        rows = db.execute(
            "SELECT embedding FROM negatives WHERE model_sha256 = ? ORDER BY sha256", (self.model_sha,)
        ).fetchall()
        return np.stack([from_blob(r[0]) for r in rows]) if rows else None

    def _exists(self, db: sqlite3.Connection, category: str) -> bool:
        return (
            db.execute(
                "SELECT 1 FROM galleries WHERE model_sha256 = ? AND category = ?", (self.model_sha, category)
            ).fetchone()
            is not None
        )

    def _bump(self, db: sqlite3.Connection, category: str, at_least: int = 0) -> None:
        """Raise the gallery's version by one (or to ``at_least``), creating the gallery at version 1."""
        db.execute(
            "INSERT INTO galleries (model_sha256, category, version, updated_at) VALUES (?, ?, MAX(1, ?), ?) "
            "ON CONFLICT (model_sha256, category) DO UPDATE SET version = MAX(version + 1, excluded.version), "
            "updated_at = excluded.updated_at",
            (self.model_sha, category, at_least, utc_now()),
        )

    def _recalibrate(self, db: sqlite3.Connection, category: str, negatives: np.ndarray) -> None:
        rows = db.execute(
            "SELECT embedding FROM refs WHERE model_sha256 = ? AND category = ?", (self.model_sha, category)
        ).fetchall()
        if not rows:
            db.execute(
                "UPDATE galleries SET threshold = NULL, calibration = '{}', negative_scores = NULL "
                "WHERE model_sha256 = ? AND category = ?",
                (self.model_sha, category),
            )
            return
        choice, negative_scores = calibrate(np.stack([from_blob(r[0]) for r in rows]), negatives, TARGET_FALSE_MATCH)
        db.execute(
            "UPDATE galleries SET threshold = ?, calibration = ?, negative_scores = ? "
            "WHERE model_sha256 = ? AND category = ?",
            (choice.threshold, json.dumps(choice.as_dict()), to_blob(negative_scores), self.model_sha, category),
        )

    # --- matching --------------------------------------------------------------------------

    def index(self) -> GalleryIndex:
        """The searchable galleries, reloaded only when the file changed since the last call."""
        revision = self.revision()
        if self._index is None or revision != self._index_revision:
            self._index, self._index_revision = self._load_index(), revision
        return self._index

    def _load_index(self) -> GalleryIndex:
        rows = self._rows(
            "SELECT category, version, threshold, negative_scores FROM galleries "
            "WHERE model_sha256 = ? AND threshold IS NOT NULL ORDER BY category",
            (self.model_sha,),
        )
        galleries = []
        for category, version, threshold, negative_scores in rows:
            refs = self.references(category)
            if not refs:  # emptied by remove(): nothing to match against
                continue
            galleries.append(
                Gallery(
                    category,
                    version,
                    threshold,
                    [r.sha256 for r in refs],
                    np.stack([r.embedding for r in refs]),
                    from_blob(negative_scores),
                )
            )
        return GalleryIndex(galleries)
