"""Reference galleries: teach wildscan a category from a few example photos, without retraining.

A gallery holds, per category and per model (embeddings only mean something to the model
that made them, so everything is keyed by the model's SHA-256): each example photo's
L2-normalised embedding (float32), its SHA-256, who added it and when. It never holds the
photos. Every change (photos added or removed, a gallery imported, the negative pool
rebuilt) raises the gallery's ``version``, and every result names the version it used.

Galleries live in one SQLite file beside the model (``models/galleries.db``, or
``$WILDSCAN_GALLERIES``). Each gallery's threshold is chosen from its own photos against a
fixed *negative pool* (:mod:`vision.matching` states the rule); the pool's embeddings are
stored in the same file, keyed by the model, built on first use from a fixed list of
non-wildlife photos of the shared data set (:func:`default_negative_photos`) or from
photos given to ``wildscan gallery negatives``.

Export/import (``wildscan gallery export/import``) writes a JSON file with embeddings
(base64 of the exact float32 bytes), hashes, who/when, the version and the calibration,
so a gallery can be shared between agencies without sharing a single photo.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .errors import WildscanError
from .matching import TARGET_FALSE_MATCH, Gallery, GalleryIndex, calibrate, normalise
from .records import Result
from .taxonomy import get_category

GALLERY_FORMAT = "wildscan-gallery/1"
DB_NAME = "galleries.db"
NEGATIVES_PER_CLASS = 40
_REPO = Path(__file__).resolve().parent.parent

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


class GalleryError(WildscanError):
    """A gallery operation that cannot be done (unknown category, no negative pool, wrong model...)."""

    reason = "gallery_error"


def utc_now() -> str:
    """The current time, ISO 8601 UTC with a ``Z`` suffix, to the millisecond."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def gallery_db_path(onnx_path: str | Path | None = None) -> Path:
    """Where galleries are kept: ``$WILDSCAN_GALLERIES``, else ``galleries.db`` beside the model."""
    env = os.environ.get("WILDSCAN_GALLERIES")
    if env:
        return Path(env).expanduser()
    if onnx_path is not None:
        return Path(onnx_path).parent / DB_NAME
    from .registry import models_dir

    return models_dir() / DB_NAME


def snapshot(source: str | Path, dest: str | Path) -> Path:
    """Copy the gallery database ``source`` to ``dest`` consistently (SQLite's online
    backup: a gallery being edited meanwhile is copied as it was before or after the edit,
    never half-way); returns ``dest``."""
    dest = Path(dest)
    reader = sqlite3.connect(f"file:{Path(source).resolve()}?mode=ro", uri=True)
    try:
        writer = sqlite3.connect(dest)
        try:
            reader.backup(writer)
        finally:
            writer.close()
    finally:
        reader.close()
    return dest


def check_category(category: str) -> str:
    """``category`` if it is a known taxonomy id; :class:`GalleryError` naming the known ids otherwise."""
    try:
        return get_category(category).id
    except KeyError as e:
        raise GalleryError(e.args[0], "unknown_category") from None


@dataclass(frozen=True)
class GalleryInfo:
    """A gallery's summary: category, version, size, threshold and its evidence."""

    category: str
    version: int
    references: int
    threshold: float | None
    calibration: dict
    updated_at: str

    def as_dict(self) -> dict:
        return {"category": self.category, "version": self.version, "references": self.references,
                "threshold": self.threshold, "calibration": self.calibration, "updated_at": self.updated_at}


@dataclass(frozen=True)
class Reference:
    """One example photo of a gallery: its hash, who added it, when, and its embedding."""

    sha256: str
    added_by: str
    added_at: str
    embedding: np.ndarray


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def _vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


class GalleryStore:
    """The galleries of one model in a SQLite file. Thread-safe; other processes may write too.

    ``model`` is the model's ``model_info()`` (``name``, ``version``, ``sha256``); ``dim``
    its embedding size, checked on every write when given.
    """

    def __init__(self, path: str | Path, model: dict, *, dim: int | None = None):
        self.path = Path(path)
        self.model = dict(model)
        self.model_sha = model["sha256"]
        self.dim = dim
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._index: GalleryIndex | None = None
        self._index_revision: int | None = None

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> "GalleryStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that also bumps the file-wide revision (readers reload on change)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'revision'")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
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
            "WHERE g.model_sha256 = ? GROUP BY g.category ORDER BY g.category", (self.model_sha,))
        return [GalleryInfo(c, v, n, t, json.loads(cal), u) for c, v, n, t, cal, u in rows]

    def info(self, category: str) -> GalleryInfo | None:
        """One gallery's summary, or ``None`` if it never existed for this model."""
        return next((g for g in self.list() if g.category == category), None)

    def references(self, category: str) -> list[Reference]:
        """A gallery's references, in the order they were added."""
        rows = self._rows("SELECT sha256, added_by, added_at, embedding FROM refs WHERE model_sha256 = ? "
                          "AND category = ? ORDER BY added_at, rowid", (self.model_sha, category))
        return [Reference(s, b, a, _vector(e)) for s, b, a, e in rows]

    def negatives(self) -> np.ndarray | None:
        """The negative pool's embeddings for this model (normalised), or ``None`` if not built."""
        rows = self._rows("SELECT embedding FROM negatives WHERE model_sha256 = ? ORDER BY sha256", (self.model_sha,))
        return np.stack([_vector(r[0]) for r in rows]) if rows else None

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
            db.executemany("INSERT OR REPLACE INTO negatives VALUES (?, ?, ?)",
                           [(self.model_sha, s, _blob(e)) for s, e in zip(shas, embeddings)])
            db.execute("INSERT OR REPLACE INTO negative_pools VALUES (?, ?, ?)", (self.model_sha, source, utc_now()))
            for (category,) in db.execute("SELECT category FROM galleries WHERE model_sha256 = ?",
                                          (self.model_sha,)).fetchall():
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
            db.executemany("INSERT OR IGNORE INTO refs VALUES (?, ?, ?, ?, ?, ?)",
                           [(self.model_sha, category, s, _blob(e), added_by, now) for s, e in zip(shas, embeddings)])
            if db.total_changes > before or not self._exists(db, category):
                self._bump(db, category)
                self._recalibrate(db, category, negatives)
        return self.info(category)

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
                db.executemany("DELETE FROM refs WHERE model_sha256 = ? AND category = ? AND sha256 = ?",
                               [(self.model_sha, category, s) for s in shas])
            self._bump(db, category)
            left = db.execute("SELECT COUNT(*) FROM refs WHERE model_sha256 = ? AND category = ?",
                              (self.model_sha, category)).fetchone()[0]
            negatives = self.negatives_in(db)
            if not left:  # an empty gallery matches nothing, whatever threshold it had
                db.execute("UPDATE galleries SET threshold = NULL WHERE model_sha256 = ? AND category = ?",
                           (self.model_sha, category))
            elif negatives is not None:
                self._recalibrate(db, category, negatives)
        return self.info(category)

    def _checked(self, embeddings: np.ndarray) -> np.ndarray:
        embeddings = normalise(embeddings)
        if self.dim is not None and embeddings.shape[1] != self.dim:
            raise GalleryError(f"embeddings have {embeddings.shape[1]} dimensions; the model makes {self.dim}")
        return embeddings

    def _require_negatives(self) -> np.ndarray:
        negatives = self.negatives()
        if negatives is None:
            raise GalleryError("this model has no negative pool yet: run `wildscan gallery negatives` "
                               "(it embeds a fixed set of non-wildlife photos once)", "no_negative_pool")
        return negatives

    def negatives_in(self, db: sqlite3.Connection) -> np.ndarray | None:
        """The negative pool read inside an open transaction (the lock is held)."""
        rows = db.execute("SELECT embedding FROM negatives WHERE model_sha256 = ? ORDER BY sha256",
                          (self.model_sha,)).fetchall()
        return np.stack([_vector(r[0]) for r in rows]) if rows else None

    def _exists(self, db: sqlite3.Connection, category: str) -> bool:
        return db.execute("SELECT 1 FROM galleries WHERE model_sha256 = ? AND category = ?",
                          (self.model_sha, category)).fetchone() is not None

    def _bump(self, db: sqlite3.Connection, category: str, at_least: int = 0) -> None:
        """Raise the gallery's version by one (or to ``at_least``), creating the gallery at version 1."""
        db.execute(
            "INSERT INTO galleries (model_sha256, category, version, updated_at) VALUES (?, ?, MAX(1, ?), ?) "
            "ON CONFLICT (model_sha256, category) DO UPDATE SET version = MAX(version + 1, excluded.version), "
            "updated_at = excluded.updated_at", (self.model_sha, category, at_least, utc_now()))

    def _recalibrate(self, db: sqlite3.Connection, category: str, negatives: np.ndarray) -> None:
        rows = db.execute("SELECT embedding FROM refs WHERE model_sha256 = ? AND category = ?",
                          (self.model_sha, category)).fetchall()
        if not rows:
            db.execute("UPDATE galleries SET threshold = NULL, calibration = '{}', negative_scores = NULL "
                       "WHERE model_sha256 = ? AND category = ?", (self.model_sha, category))
            return
        choice, negative_scores = calibrate(np.stack([_vector(r[0]) for r in rows]), negatives, TARGET_FALSE_MATCH)
        db.execute("UPDATE galleries SET threshold = ?, calibration = ?, negative_scores = ? "
                   "WHERE model_sha256 = ? AND category = ?",
                   (choice.threshold, json.dumps(choice.as_dict()), _blob(negative_scores), self.model_sha, category))

    # --- matching --------------------------------------------------------------------------

    def index(self) -> GalleryIndex:
        """The searchable galleries, reloaded only when the file changed since the last call."""
        revision = self.revision()
        if self._index is None or revision != self._index_revision:
            self._index, self._index_revision = self._load_index(), revision
        return self._index

    def _load_index(self) -> GalleryIndex:
        rows = self._rows("SELECT category, version, threshold, negative_scores FROM galleries "
                          "WHERE model_sha256 = ? AND threshold IS NOT NULL ORDER BY category", (self.model_sha,))
        galleries = []
        for category, version, threshold, negative_scores in rows:
            refs = self.references(category)
            if not refs:  # emptied by remove(): nothing to match against
                continue
            galleries.append(Gallery(category, version, threshold, [r.sha256 for r in refs],
                                     np.stack([r.embedding for r in refs]), _vector(negative_scores)))
        return GalleryIndex(galleries)

    # --- export / import -------------------------------------------------------------------

    def export_dict(self, categories: Sequence[str] | None = None) -> dict:
        """Every non-empty gallery (or those named) as a JSON-ready dict: embeddings, hashes, no photos."""
        wanted = set(categories) if categories else None
        out = []
        for info in self.list():
            if info.references and (wanted is None or info.category in wanted):
                out.append(self._export_gallery(info))
        missing = sorted((wanted or set()) - {g["category"] for g in out})
        if missing:
            raise GalleryError(f"no non-empty gallery for: {', '.join(missing)}", "not_found")
        return {"format": GALLERY_FORMAT, "model": self.model, "embedding_dim": self.dim,
                "exported_at": utc_now(), "galleries": out}

    def _export_gallery(self, info: GalleryInfo) -> dict:
        blob = self._rows("SELECT negative_scores FROM galleries WHERE model_sha256 = ? AND category = ?",
                          (self.model_sha, info.category))[0][0]
        return {
            "category": info.category, "version": info.version, "threshold": info.threshold,
            "calibration": info.calibration, "negative_scores": _b64(blob) if blob else None,
            "references": [{"sha256": r.sha256, "added_by": r.added_by, "added_at": r.added_at,
                            "embedding": _b64(_blob(r.embedding))} for r in self.references(info.category)],
        }

    def export(self, path: str | Path, categories: Sequence[str] | None = None) -> dict:
        """Write :meth:`export_dict` to ``path`` as JSON; returns what was written."""
        data = self.export_dict(categories)
        Path(path).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        return data

    def import_dict(self, data: dict, *, replace: bool = False) -> list[GalleryInfo]:
        """Merge (or, with ``replace``, substitute) the galleries of an export into this store.

        Photos already present are skipped. A gallery that was empty here, or replaced,
        takes the file's threshold and calibration as they are (an exact round trip); a
        merge with local photos is recalibrated against the local negative pool. The
        version becomes ``max(local version + 1, file version)`` when anything changed.
        Raises :class:`GalleryError` for another format or another model's embeddings.
        """
        self._check_import(data)
        galleries = [self._parse_gallery(g) for g in data.get("galleries", [])]
        with self._write() as db:
            for g in galleries:
                self._import_gallery(db, g, replace)
        return [self.info(g["category"]) for g in galleries]

    def import_file(self, path: str | Path, *, replace: bool = False) -> list[GalleryInfo]:
        """:meth:`import_dict` from a JSON file; :class:`GalleryError` when it is not one."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise GalleryError(f"cannot read gallery file {path}: {e}", "bad_gallery_file") from e
        return self.import_dict(data, replace=replace)

    def _check_import(self, data: dict) -> None:
        if not isinstance(data, dict) or data.get("format") != GALLERY_FORMAT:
            raise GalleryError(f"not a wildscan gallery file (format {GALLERY_FORMAT!r} expected)", "bad_gallery_file")
        theirs = (data.get("model") or {}).get("sha256")
        if theirs != self.model_sha:
            raise GalleryError(
                f"the galleries were made with model {data.get('model')}, not {self.model}: embeddings of "
                "different models cannot be compared; add the photos again with this model", "wrong_model")

    def _parse_gallery(self, g: dict) -> dict:
        try:
            category = check_category(g["category"])
            refs = [(r["sha256"], _unb64(r["embedding"]), r["added_by"], r["added_at"]) for r in g["references"]]
            parsed = {"category": category, "version": int(g["version"]), "threshold": g.get("threshold"),
                      "calibration": g.get("calibration") or {}, "refs": refs,
                      "negative_scores": _unb64(g["negative_scores"]) if g.get("negative_scores") else None}
        except (KeyError, TypeError, ValueError) as e:
            raise GalleryError(f"malformed gallery in file: {e!r}", "bad_gallery_file") from e
        for _, blob, _, _ in refs:
            if self.dim is not None and len(blob) != 4 * self.dim:
                raise GalleryError(f"{category}: embedding of {len(blob) // 4} dimensions; the model makes {self.dim}",
                                   "bad_gallery_file")
        return parsed

    def _import_gallery(self, db: sqlite3.Connection, g: dict, replace: bool) -> None:
        key = (self.model_sha, g["category"])
        local = db.execute("SELECT COUNT(*) FROM refs WHERE model_sha256 = ? AND category = ?", key).fetchone()[0]
        if replace:
            db.execute("DELETE FROM refs WHERE model_sha256 = ? AND category = ?", key)
        before = db.total_changes
        db.executemany("INSERT OR IGNORE INTO refs VALUES (?, ?, ?, ?, ?, ?)",
                       [(*key, s, blob, by, at) for s, blob, by, at in g["refs"]])
        changed = db.total_changes > before or (replace and local) or not self._exists(db, g["category"])
        if not changed:
            return
        self._bump(db, g["category"], at_least=g["version"])
        if (replace or not local) and g["threshold"] is not None and g["negative_scores"] is not None:
            db.execute("UPDATE galleries SET threshold = ?, calibration = ?, negative_scores = ? "
                       "WHERE model_sha256 = ? AND category = ?",
                       (g["threshold"], json.dumps(g["calibration"]), g["negative_scores"], *key))
            return
        negatives = self.negatives_in(db)
        if negatives is None:
            raise GalleryError(f"merging into the local {g['category']!r} gallery needs a negative pool: "
                               "run `wildscan gallery negatives` first", "no_negative_pool")
        self._recalibrate(db, g["category"], negatives)


def _b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


# --- photos -> embeddings --------------------------------------------------------------------

@dataclass(frozen=True)
class Embedded:
    """Photos turned into embeddings: their hashes and rows, and the ones that failed (path, reason)."""

    shas: list[str]
    embeddings: np.ndarray
    failures: list[tuple[str, str]]


def embed_photos(classifier, items: Sequence[tuple[str, bytes]], *, batch: int = 32) -> Embedded:
    """Embed ``(name, bytes)`` photos with the classifier's model; unusable photos become failures.

    Repeats of the same bytes are embedded once. Raises :class:`GalleryError` when the model
    has no embedding output.
    """
    if not classifier.has_embedding:
        raise GalleryError("this model has no embedding output, so it cannot use reference galleries", "no_embedding")
    shas, rows, failures, seen = [], [], [], set()
    for start in range(0, len(items), batch):
        ready = []
        for name, data in items[start : start + batch]:
            prepared = classifier.prepare(name, data)
            if isinstance(prepared, Result):
                failures.append((name, prepared.error["message"]))
            elif prepared.sha256 not in seen:
                seen.add(prepared.sha256)
                ready.append(prepared)
        if ready:
            rows.append(classifier.run(np.stack([p.tensor for p in ready]))[1])
            shas.extend(p.sha256 for p in ready)
    dim = classifier.config.embedding_dim or 0
    embeddings = normalise(np.concatenate(rows)) if rows else np.zeros((0, dim), np.float32)
    return Embedded(shas, embeddings, failures)


def embed_files(classifier, paths: Sequence[str | Path], *, batch: int = 32) -> Embedded:
    """:func:`embed_photos` for files; unreadable files become failures."""
    items, failures = [], []
    for path in paths:
        try:
            items.append((str(path), Path(path).read_bytes()))
        except OSError as e:
            failures.append((str(path), f"cannot read the file: {e.strerror or e}"))
    done = embed_photos(classifier, items, batch=batch)
    return Embedded(done.shas, done.embeddings, failures + done.failures)


def default_negative_rows(dataset_dir: Path | None = None, per_class: int | None = None) -> list[dict]:
    """The fixed negative pool's rows of ``splits.csv``: per non-wildlife class of the wildtrade
    *train* split, the ``per_class`` photos with the smallest SHA-256 (a stable, content-chosen
    sample). Raises :class:`GalleryError` when the dataset definition is not there."""
    per_class = per_class or NEGATIVES_PER_CLASS
    splits = (dataset_dir or _REPO / "datasets" / "wildtrade-v1") / "splits.csv"
    if not splits.is_file():
        raise GalleryError(f"cannot build the default negative pool: {splits} is missing; "
                           "give non-wildlife photos to `wildscan gallery negatives PHOTO...`", "no_negative_pool")
    with open(splits, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train" and not get_category(r["class"]).is_wildlife]
    by_class: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["sha256"]):
        by_class.setdefault(row["class"], []).append(row)
    return [r for cls in sorted(by_class) for r in by_class[cls][:per_class]]


def default_negative_photos(dataset_dir: Path | None = None, data_dir: Path | None = None,
                            per_class: int | None = None) -> list[Path]:
    """The files of :func:`default_negative_rows` under the shared photos (``$WILDSCAN_DATA``).

    Raises :class:`GalleryError` when the dataset definition or the photos are not there.
    """
    data_dir = data_dir or Path(os.environ.get("WILDSCAN_DATA", _REPO.parent / "shared" / "data"))
    paths = [data_dir / r["path"] for r in default_negative_rows(dataset_dir, per_class)]
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise GalleryError(f"cannot build the default negative pool: {len(absent)} photos missing under {data_dir} "
                           f"(e.g. {absent[0]}); set WILDSCAN_DATA or give photos to `wildscan gallery negatives`",
                           "no_negative_pool")
    return paths


def build_negative_pool(store: GalleryStore, classifier, photos: Sequence[str | Path] | None = None) -> dict:
    """Embed the negative photos (default: :func:`default_negative_photos`) and store them for the model."""
    paths = list(photos) if photos else default_negative_photos()
    done = embed_files(classifier, paths)
    source = "given photos" if photos else f"default: wildtrade-v1 train, non-wildlife, {NEGATIVES_PER_CLASS} per class"
    store.set_negatives(done.shas, done.embeddings, f"{source} ({len(done.shas)} photos)")
    return {**store.negative_pool_info(), "failures": done.failures}


def ensure_negative_pool(store: GalleryStore, classifier) -> None:
    """Build the default negative pool unless this model already has one."""
    if store.negative_pool_info() is None:
        build_negative_pool(store, classifier)


def open_for(classifier, path: str | Path | None = None) -> GalleryStore:
    """The gallery store of a classifier's model, at ``path`` or :func:`gallery_db_path`."""
    path = Path(path) if path else gallery_db_path(classifier.bundle.onnx_path)
    return GalleryStore(path, classifier.model_info(), dim=classifier.config.embedding_dim)
