"""``wildscan feedback export``: officers' verdicts on results, as labelled data.

Each result an officer marked "correct" or "wrong → category" (its latest verdict) becomes
one row of ``OUT/feedback.csv``; where the server kept evidence copies the photo is copied
to ``OUT/photos/<sha256>.<ext>`` and the row's ``path`` points at it. The training pipeline
reads the folder (:func:`training.data.load_feedback`) as extra labelled data or a dev set,
and ``wildscan gallery add`` can build a reference gallery from its photos.
"""

from __future__ import annotations

import csv
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .scan.outputs import csv_cell
from .store import Store

COLUMNS = (
    "path",
    "sha256",
    "pdq",
    "label",
    "verdict",
    "model_label",
    "possible",
    "matched_by",
    "model_name",
    "model_version",
    "model_sha256",
    "model_runtime",
    "model_precision",
    "result_id",
    "received_at",
    "given_at",
    "given_by",
    "case_id",
    "source_url",
    "note",
)
MANIFEST = "feedback.csv"


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote."""

    rows: int
    photos: int
    corrected: int
    manifest: Path


def export_feedback(store: Store, out: Path, evidence_dir: Path | None) -> ExportSummary:
    """Write ``out/feedback.csv`` (and ``out/photos/`` from ``evidence_dir`` where a copy exists)."""
    out.mkdir(parents=True, exist_ok=True, mode=0o700)  # the photos and notes may be evidence
    rows, photos = [], 0
    for feedback, record in store.latest_feedback():
        path = _copy_photo(record.get("sha256") or "", evidence_dir, out)
        photos += bool(path)
        model = record.get("model") or {}
        rows.append(
            {
                "path": path,
                "sha256": record.get("sha256"),
                "pdq": record.get("pdq"),
                "label": feedback["label"],
                "verdict": feedback["verdict"],
                "model_label": record.get("label"),
                "possible": record.get("possible"),
                "matched_by": record.get("matched_by"),
                "model_name": model.get("name"),
                "model_version": model.get("version"),
                "model_sha256": model.get("sha256"),
                "model_runtime": model.get("runtime"),
                "model_precision": model.get("precision"),
                "result_id": record.get("result_id"),
                "received_at": record.get("received_at"),
                "given_at": feedback["given_at"],
                "given_by": feedback["given_by"],
                "case_id": record.get("case_id"),
                "source_url": record.get("source_url"),
                "note": feedback["note"],
            }
        )
    manifest = out / MANIFEST
    partial = manifest.with_suffix(".csv.part")
    with open(partial, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
    os.replace(partial, manifest)
    corrected = sum(r["verdict"] == "wrong" for r in rows)
    return ExportSummary(rows=len(rows), photos=photos, corrected=corrected, manifest=manifest)


def _copy_photo(sha256: str, evidence_dir: Path | None, out: Path) -> str:
    """``photos/<sha256>.<ext>`` once copied from the evidence folder; ``""`` when there is no copy."""
    if len(sha256) != 64 or evidence_dir is None:
        return ""
    found = sorted((evidence_dir / sha256[:2]).glob(sha256 + ".*"))
    found = [p for p in found if not p.name.endswith(".part")]
    if not found:
        return ""
    target = out / "photos" / found[0].name
    if not target.exists():
        target.parent.mkdir(exist_ok=True, mode=0o700)
        shutil.copyfile(found[0], target)
    return f"photos/{target.name}"
