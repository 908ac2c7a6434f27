"""Scan analysis for the research notebooks: read any ``wildscan scan`` output (JSONL, CSV,
Parquet), aggregate it as ``wildscan report`` does, and show flags, sellers, platforms and
near-duplicate clusters as tables (:class:`vision.tables.Table`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from vision.preprocess import load_image
from vision.tables import Table, category_name, is_wildlife

from .outputs import read_rows
from .report import as_bool, as_int, build_report


def load_results(path: str | Path) -> list[dict]:
    """The rows of a ``wildscan scan`` results file (JSONL, CSV or Parquet), typed alike.

    CSV text is turned back into numbers and booleans for the record columns (``score``,
    ``score_*``, ``flagged``, ``width``, ``height``, ``cluster_*``); metadata columns are
    left as the file holds them. Raises :class:`serving.scan.outputs.OutputError` for a
    missing file or unknown format.
    """
    rows = []
    for row in read_rows(path):
        row = dict(row)
        row["flagged"] = as_bool(row.get("flagged"))
        for key in ("width", "height", "cluster_id", "cluster_size"):
            if key in row:
                row[key] = as_int(row[key])
        for key in row:
            if key == "score" or key.startswith("score_"):
                row[key] = _as_float(row[key])
        rows.append(row)
    return rows


def _as_float(value) -> float | None:
    return None if value in (None, "") else float(value)


def scan_report(rows: Iterable[dict]):
    """The aggregation ``wildscan report`` prints (:class:`serving.scan.report.Report`)."""
    return build_report(rows)


def flagged_by_category(report) -> Table:
    """Flagged items per reported category, most first."""
    rows = [[label, category_name(label) if label else "(failed)", n] for label, n in report.by_category.most_common()]
    return Table(["category", "name", "flagged"], rows, f"{report.flagged} of {report.total} items flagged")


def flagged_by(report, column: str, top: int = 10) -> Table:
    """Flagged items per ``seller`` or ``platform`` (top ``top``), with their categories.

    Raises ``ValueError`` for another column; the table is empty (with a note in its
    title) when the results have no such column.
    """
    groups = {"seller": (report.has_seller, report.by_seller), "platform": (report.has_platform, report.by_platform)}
    if column not in groups:
        raise ValueError(f"column must be 'seller' or 'platform', got {column!r}")
    present, counts = groups[column]
    if not present:
        return Table([column, "flagged", "categories"], [], f"the results have no {column!r} column")
    ranked = sorted(counts.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:top]
    rows = [[name, sum(c.values()), ", ".join(f"{lab} {n}" for lab, n in c.most_common())] for name, c in ranked]
    return Table([column, "flagged", "categories"], rows, f"flagged items by {column} (top {top})")


def cluster_table(report, top: int = 10) -> Table:
    """The largest near-duplicate clusters (two or more photos): size, flags, labels, reach."""
    rows = [
        [
            c.cluster_id,
            c.size,
            c.flagged,
            ", ".join(f"{lab or '(failed)'} {n}" for lab, n in c.labels.most_common()),
            len(c.sellers),
            len(c.platforms),
            c.examples[0] if c.examples else "",
        ]
        for c in report.largest_clusters(top)
    ]
    return Table(
        ["cluster", "photos", "flagged", "labels", "sellers", "platforms", "example"],
        rows,
        f"largest near-duplicate clusters (top {top})",
    )


def cluster_members(rows: Iterable[dict], cluster_id: int) -> list[dict]:
    """The rows of one cluster, in file order."""
    return [row for row in rows if row.get("cluster_id") == cluster_id]


def image_path(row: dict) -> Path | None:
    """The image file a result row points at, or ``None`` (bytes from a manifest, file gone)."""
    path = Path(str(row.get("path") or ""))
    return path if row.get("path") and path.is_file() else None


def row_image(row: dict, size: int | None = 160):
    """The photo of a result row (EXIF-oriented RGB, thumbnailed to ``size``), or ``None``
    when there is no readable file (bytes from a manifest, a moved file, a failure row)."""
    from vision.errors import WildscanError

    path = image_path(row)
    if path is None:
        return None
    try:
        img = load_image(path.read_bytes()).image
    except (OSError, WildscanError):
        return None
    if size:
        img.thumbnail((size, size))
    return img


def score_distribution(rows: Iterable[dict]) -> dict[str, np.ndarray]:
    """Reported scores of the scored rows, split into ``flagged``, ``not flagged`` and ``uncertain``."""
    groups: dict[str, list[float]] = {"flagged": [], "not flagged": [], "uncertain": []}
    for row in rows:
        if row.get("error_reason") or row.get("score") is None:
            continue
        key = "flagged" if row["flagged"] else "uncertain" if row.get("label") == "uncertain" else "not flagged"
        groups[key].append(float(row["score"]))
    return {k: np.array(v) for k, v in groups.items()}


def wildlife_scores(rows: Iterable[dict]) -> np.ndarray:
    """Each scored row's total probability of wildlife categories (from its ``score_*`` columns),
    kept even below every threshold: the distribution the thresholds cut."""
    out = []
    for row in rows:
        scores = {k[len("score_") :]: v for k, v in row.items() if k.startswith("score_") and v is not None}
        if scores and not row.get("error_reason"):
            out.append(sum(v for lab, v in scores.items() if is_wildlife(lab)))
    return np.array(out)


def scan_manifest(
    manifest: str | Path, model: str | Path | None = None, *, outputs: Sequence[str] = ("results.jsonl",)
) -> Path:
    """Scan ``manifest`` with the real scanner into ``outputs`` (file names beside it:
    ``.jsonl``, ``.csv``, ``.parquet``); returns the first.

    Runs :func:`serving.scan.api.scan` (what ``wildscan scan crawl.csv --out
    results.jsonl`` runs) with ``model`` (``None``: the shipped one). Earlier results
    beside the manifest are removed first (a fresh scan, not the resumption of an older
    one). Raises what the scan raises (:class:`vision.errors.WildscanError` subclasses).
    """
    from .api import scan

    manifest = Path(manifest)
    outs = [manifest.parent / name for name in outputs]
    for out in outs:
        for stale in (out, out.with_suffix(".db")):
            stale.unlink(missing_ok=True)
    scan([str(manifest)], outs, model=str(model) if model is not None else None, quiet=True)
    return outs[0]
