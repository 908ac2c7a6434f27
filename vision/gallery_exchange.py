"""Export and import of reference galleries (``wildscan gallery export/import``, the API).

A JSON file with embeddings (base64 of the exact float32 bytes), hashes, who/when, the
version and the calibration: a gallery can be shared between agencies without sharing a
single photo. :class:`GalleryExchange` is mixed into :class:`vision.gallery.GalleryStore`,
whose storage methods (``list``, ``references``, ``_write``...) it uses.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .gallery_types import GALLERY_FORMAT, GalleryError, GalleryInfo, b64, check_category, to_blob, unb64
from .records import utc_now


class GalleryExchange:
    """Export/import methods for a gallery store."""

    model_sha: str
    model: dict
    dim: int | None

    def __getattr__(self, name: str) -> Any:  # the store's methods, for the type checker
        raise AttributeError(name)

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
        return {
            "format": GALLERY_FORMAT,
            "model": self.model,
            "embedding_dim": self.dim,
            "exported_at": utc_now(),
            "galleries": out,
        }

    def _export_gallery(self, info: GalleryInfo) -> dict:
        blob = self._rows(
            "SELECT negative_scores FROM galleries WHERE model_sha256 = ? AND category = ?",
            (self.model_sha, info.category),
        )[0][0]
        return {
            "category": info.category,
            "version": info.version,
            "threshold": info.threshold,
            "calibration": info.calibration,
            "negative_scores": b64(blob) if blob else None,
            "references": [
                {
                    "sha256": r.sha256,
                    "added_by": r.added_by,
                    "added_at": r.added_at,
                    "embedding": b64(to_blob(r.embedding)),
                }
                for r in self.references(info.category)
            ],
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
                "different models cannot be compared; add the photos again with this model",
                "wrong_model",
            )

    def _parse_gallery(self, g: dict) -> dict:
        try:
            category = check_category(g["category"])
            refs = [(r["sha256"], unb64(r["embedding"]), r["added_by"], r["added_at"]) for r in g["references"]]
            parsed = {
                "category": category,
                "version": int(g["version"]),
                "threshold": g.get("threshold"),
                "calibration": g.get("calibration") or {},
                "refs": refs,
                "negative_scores": unb64(g["negative_scores"]) if g.get("negative_scores") else None,
            }
        except (KeyError, TypeError, ValueError) as e:
            raise GalleryError(f"malformed gallery in file: {e!r}", "bad_gallery_file") from e
        for _, blob, _, _ in refs:
            if self.dim is not None and len(blob) != 4 * self.dim:
                raise GalleryError(
                    f"{category}: embedding of {len(blob) // 4} dimensions; the model makes {self.dim}",
                    "bad_gallery_file",
                )
        return parsed

    def _import_gallery(self, db: sqlite3.Connection, g: dict, replace: bool) -> None:
        key = (self.model_sha, g["category"])
        local = db.execute("SELECT COUNT(*) FROM refs WHERE model_sha256 = ? AND category = ?", key).fetchone()[0]
        if replace:
            db.execute("DELETE FROM refs WHERE model_sha256 = ? AND category = ?", key)
        before = db.total_changes
        db.executemany(
            "INSERT OR IGNORE INTO refs VALUES (?, ?, ?, ?, ?, ?)",
            [(*key, s, blob, by, at) for s, blob, by, at in g["refs"]],
        )
        changed = db.total_changes > before or (replace and local) or not self._exists(db, g["category"])
        if not changed:
            return
        self._bump(db, g["category"], at_least=g["version"])
        if (replace or not local) and g["threshold"] is not None and g["negative_scores"] is not None:
            db.execute(
                "UPDATE galleries SET threshold = ?, calibration = ?, negative_scores = ? "
                "WHERE model_sha256 = ? AND category = ?",
                (g["threshold"], json.dumps(g["calibration"]), g["negative_scores"], *key),
            )
            return
        negatives = self.negatives_in(db)
        if negatives is None:
            raise GalleryError(
                f"merging into the local {g['category']!r} gallery needs a negative pool: "
                "run `wildscan gallery negatives` first",
                "no_negative_pool",
            )
        self._recalibrate(db, g["category"], negatives)
