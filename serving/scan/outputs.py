"""Scan results as flat rows, written as JSONL, CSV or Parquet, atomically.

One row per item, in input order. Columns: ``item_id``, ``path``, ``sha256``, ``pdq``,
``width``, ``height``, ``label``, ``score``, ``flagged``, one ``score_<label>`` per model
label (kept even when below the threshold), ``model_name``/``model_version``/
``model_sha256``, ``error_reason``/``error_message`` (set on failure rows),
``scanned_at``, ``cluster_id``/``cluster_size`` (PDQ near-duplicate group); the
reference-gallery evidence, always present and null when no gallery was consulted
(``matched_by``, ``gallery_versions`` as JSON text, ``gallery_category``,
``gallery_version``, ``gallery_similarity``, ``gallery_threshold``,
``gallery_confidence``, ``references`` as JSON text, ``head_label``, ``head_score``,
``head_flagged``), so results of any two scans concatenate; then any further fields of
the record (a dict field becomes ``FIELD_KEY`` columns, lists are JSON text); then the
input's metadata columns (``url``, ``seller``, ...). A metadata
column whose name is taken gets a ``meta_`` prefix (a manifest's ``label`` becomes
``meta_label``).

A file is written to a temporary name in the same folder, flushed to disk and renamed
over the target: a reader never sees half a file, and a crash leaves the old one.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vision.errors import Reason, WildscanError
from vision.records import describe

from .clusters import cluster_labels, cluster_sizes
from .store import StoredRecord
from .work import batched

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
HEAD = [
    "item_id",
    "path",
    "sha256",
    "pdq",
    "width",
    "height",
    "label",
    "label_name",
    "score",
    "flagged",
    "possible",
    "legal_note",
]
# What a scan adds on top of the record every command writes (JSONL: the input's metadata under ``metadata``).
SCAN_FIELDS = ("item_id", "scanned_at", "cluster_id", "cluster_size", "metadata")
TAIL = [
    "model_name",
    "model_version",
    "model_sha256",
    "model_runtime",
    "model_precision",
    "error_reason",
    "error_message",
    "scanned_at",
    "cluster_id",
    "cluster_size",
]
# Reference-gallery evidence: fixed columns, whether or not a gallery existed for the scan.
GALLERY_COLUMNS = [
    "matched_by",
    "gallery_versions",
    "gallery_category",
    "gallery_version",
    "gallery_similarity",
    "gallery_threshold",
    "gallery_confidence",
    "references",
    "head_label",
    "head_score",
    "head_flagged",
]
# The record's fields that have their own columns (HEAD, or flattened on purpose): the rest are extras.
RECORD_FIELDS = (set(HEAD) - {"item_id"}) | {"scores", "model", "error", "matched_by", "gallery", "references", "head"}
_INT = {"width", "height", "cluster_id", "cluster_size", "gallery_version"}
_FLOAT = {"score", "gallery_similarity", "gallery_threshold", "gallery_confidence", "head_score"}
_BOOL = {"flagged", "head_flagged"}
_PARQUET_ROWS = 4096

Relabel = Callable[[dict], dict]


class OutputError(WildscanError):
    """An output path with an unknown format."""

    reason = Reason.BAD_OUTPUT


def output_format(path: str | Path) -> str:
    """``jsonl``, ``csv`` or ``parquet`` from the file name; raises :class:`OutputError`."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise OutputError(f"cannot tell the format of {path}: use one of {', '.join(sorted(FORMATS))}")
    return fmt


def relabeller(classifier, thresholds_changed: bool) -> Relabel:
    """A function re-applying ``classifier``'s decision rule to a stored record's scores.

    Needed only when this run's thresholds differ from those the records were made with
    (``--threshold``); otherwise records are returned as the classifier wrote them. A
    recorded reference-gallery match is combined with the new head decision by the same
    rule as at inference (:func:`vision.matching.combine`).
    """
    if not thresholds_changed:
        return lambda record: record
    labels = list(classifier.labels)

    def relabel(record: dict) -> dict:
        scores = record.get("scores") or {}
        if record.get("error") or not scores:
            return record
        probs = np.array([scores.get(label, 0.0) for label in labels], dtype=np.float32)
        label, score, flagged = classifier.decide(probs)
        out = {
            **record,
            "label": label,
            "score": round(score, 6),
            "flagged": flagged,
            "possible": classifier.possible(probs, flagged),
        }
        match = recorded_match(record)
        if match is not None:
            from vision.matching import combine

            decision = combine((label, score, flagged), match)
            out.update(
                label=decision.label,
                score=round(decision.score, 6),
                flagged=decision.flagged,
                possible=None if decision.flagged else out["possible"],
                matched_by=decision.matched_by,
                head={"label": label, "score": round(score, 6), "flagged": flagged},
            )
        elif "matched_by" in record:
            out["matched_by"] = "model"
        return out

    return relabel


def recorded_match(record: dict):
    """The reference-gallery match a record holds (a :class:`vision.matching.Match`), or ``None``."""
    gallery = record.get("gallery") or {}
    if "category" not in gallery:
        return None
    from vision.matching import Match

    closest = tuple((ref["sha256"], ref["similarity"]) for ref in record.get("references") or [])
    return Match(
        category=gallery["category"],
        version=gallery["version"],
        similarity=gallery["similarity"],
        threshold=gallery["threshold"],
        confidence=gallery["confidence"],
        closest=closest,
    )


def model_and_error_columns(record: dict) -> dict:
    """A record's ``model`` and ``error`` dicts as the flat ``model_*`` and ``error_*`` columns."""
    model, error = record.get("model") or {}, record.get("error") or {}
    return {
        "model_name": model.get("name"),
        "model_version": model.get("version"),
        "model_sha256": model.get("sha256"),
        "model_runtime": model.get("runtime"),
        "model_precision": model.get("precision"),
        "error_reason": error.get("reason"),
        "error_message": error.get("message"),
    }


def gallery_columns(record: dict) -> dict:
    """The fixed reference-gallery columns of a record (nulls when no gallery was consulted)."""
    gallery, head = record.get("gallery") or {}, record.get("head") or {}
    versions, references = gallery.get("versions"), record.get("references")
    return {
        "matched_by": record.get("matched_by"),
        "gallery_versions": json.dumps(versions, sort_keys=True) if versions else None,
        **{
            f"gallery_{key}": gallery.get(key)
            for key in ("category", "version", "similarity", "threshold", "confidence")
        },
        "references": json.dumps(references) if references else None,
        "head_label": head.get("label"),
        "head_score": head.get("score"),
        "head_flagged": head.get("flagged"),
    }


def extra_fields(record: dict) -> dict:
    """The record's fields beyond the basic ones, one level flattened (``gallery_category``)."""
    out = {}
    for key, value in record.items():
        if key in RECORD_FIELDS:
            continue
        if isinstance(value, dict):
            out.update({f"{key}_{sub}": v for sub, v in value.items()})
        else:
            out[key] = value
    return out


@dataclass
class Survey:
    """A first pass over the stored records: what the rows will hold, and the counts."""

    labels: list[str]
    total: int = 0
    flagged: int = 0
    label_counts: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    extra_types: dict[str, set] = field(default_factory=dict)
    metadata_types: dict[str, set] = field(default_factory=dict)
    cluster_ids: list[int | None] = field(default_factory=list)
    cluster_sizes: list[int | None] = field(default_factory=list)

    @property
    def record_columns(self) -> list[str]:
        """The columns that come from the record (before the metadata)."""
        extras = [key for key in self.extra_types if key not in set(HEAD) | set(TAIL) | set(GALLERY_COLUMNS)]
        return HEAD + [f"score_{label}" for label in self.labels] + TAIL + GALLERY_COLUMNS + extras

    @property
    def columns(self) -> list[str]:
        return self.record_columns + list(self.metadata_columns.values())

    @property
    def metadata_columns(self) -> dict[str, str]:
        """Metadata key -> output column name."""
        taken = set(self.record_columns)
        return {key: (f"meta_{key}" if key in taken else key) for key in self.metadata_types}

    @property
    def clusters(self) -> Counter:
        """Cluster id -> number of records, for clusters of two or more."""
        return Counter(c for c, n in zip(self.cluster_ids, self.cluster_sizes) if n and n > 1)


def survey(records: Iterable[StoredRecord], labels: list[str], relabel: Relabel) -> Survey:
    """Count labels, flags and failures, learn the metadata columns and cluster the PDQ hashes."""
    result = Survey(labels=list(labels))
    pdqs: list[str | None] = []
    for stored in records:
        record = relabel(stored.record)
        result.total += 1
        if record.get("error"):
            result.failures[record["error"].get("reason", "error")] += 1
        else:
            result.label_counts[record.get("label")] += 1
            result.flagged += bool(record.get("flagged"))
        _note_types(result.extra_types, extra_fields(record))
        _note_types(result.metadata_types, stored.metadata)
        pdqs.append(record.get("pdq"))
    result.cluster_ids = cluster_labels(pdqs)
    result.cluster_sizes = cluster_sizes(result.cluster_ids)
    return result


def _note_types(types: dict[str, set], values: dict) -> None:
    for key, value in values.items():
        kinds = types.setdefault(key, set())
        if value is not None:
            kinds.add(type(value))


def output_rows(records: Iterable[StoredRecord], info: Survey, relabel: Relabel, nested: bool) -> Iterator[dict]:
    """One row per stored record (same order as the survey saw them): the nested record
    (:func:`nested_record`, for JSONL) or its flat row (:func:`flattened`, for CSV and Parquet)."""
    names = info.metadata_columns
    for stored, cluster_id, size in zip(records, info.cluster_ids, info.cluster_sizes):
        record = nested_record(stored, describe(relabel(stored.record)), cluster_id, size)
        yield record if nested else flattened(record, info.labels, names)


def nested_record(stored: StoredRecord, record: dict, cluster_id: int | None, cluster_size: int | None) -> dict:
    """A scan's JSONL record: the record ``wildscan classify`` and the API write (same keys and
    nesting), the scan's fields on top and the input's metadata under ``metadata``."""
    return {
        "item_id": stored.item_id,
        **record,
        "scanned_at": stored.scanned_at,
        "cluster_id": cluster_id,
        "cluster_size": cluster_size,
        "metadata": dict(stored.metadata),
    }


# --- writing --------------------------------------------------------------------------------


def write_rows(path: str | Path, rows: Iterable[dict], info: Survey) -> Path:
    """Write ``rows`` to ``path`` in the format its suffix names; returns the path."""
    path = Path(path)
    writer = {"jsonl": _write_jsonl, "csv": _write_csv, "parquet": _write_parquet}[output_format(path)]
    with atomic_file(path) as tmp:
        writer(tmp, rows, info)
    return path


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it (after fsync) if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_jsonl(tmp: Path, rows: Iterable[dict], info: Survey) -> None:
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


def _write_csv(tmp: Path, rows: Iterable[dict], info: Survey) -> None:
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=info.columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: csv_cell(v) for k, v in row.items()})


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet reads such a cell as a formula


def csv_cell(value):
    """A CSV cell: JSON for nested values; text that a spreadsheet would run as a formula
    (crawled titles, sellers, URLs are untrusted) gets a leading apostrophe, as on the page."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _write_parquet(tmp: Path, rows: Iterable[dict], info: Survey) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema(info)
    text_columns = [f.name for f in schema if pa.types.is_string(f.type)]
    with pq.ParquetWriter(tmp, schema) as writer:
        for block in batched(rows, _PARQUET_ROWS):
            for row in block:
                for name in text_columns:
                    if row.get(name) is not None and not isinstance(row[name], str):
                        row[name] = _as_text(row[name])
            writer.write_table(pa.Table.from_pylist(block, schema=schema))


def parquet_schema(info: Survey):
    """Arrow types: fixed for the record's columns, inferred for metadata (text when mixed)."""
    import pyarrow as pa

    def record_type(name: str):
        if name in _INT:
            return pa.int64()
        if name in _BOOL:
            return pa.bool_()
        if name in _FLOAT or name.startswith("score_"):
            return pa.float64()
        return pa.string()

    fixed = HEAD + [f"score_{x}" for x in info.labels] + TAIL + GALLERY_COLUMNS
    fields = [pa.field(name, record_type(name)) for name in fixed]
    fields += [pa.field(name, _inferred_type(info.extra_types[name])) for name in info.record_columns[len(fixed) :]]
    for key, column in info.metadata_columns.items():
        fields.append(pa.field(column, _inferred_type(info.metadata_types[key])))
    return pa.schema(fields)


def _inferred_type(kinds: set):
    import pyarrow as pa

    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int}:
        return pa.int64()
    if kinds and kinds <= {int, float}:
        return pa.float64()
    return pa.string()


def _as_text(value) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else str(value)


# --- reading back (for ``wildscan report``) -------------------------------------------------


def flattened(record: dict, labels: list[str] | None = None, names: dict[str, str] | None = None) -> dict:
    """A nested record (any command: classify, the API, a scan's JSONL) as a flat row: the
    fixed columns, ``score_<label>`` for ``labels`` (default: the record's), ``model_*`` /
    ``error_*``, the gallery columns, further fields one level flattened, then the metadata
    (``names``: metadata key -> column; by default a ``meta_`` prefix where a name is taken).
    A row that is flat already (CSV, Parquet) is returned as it is."""
    if not any(isinstance(record.get(key), dict) for key in ("error", "model", "scores", "metadata")):
        return record
    scores = record.get("scores") or {}
    row = {key: record.get(key) for key in HEAD}
    row["flagged"] = bool(row["flagged"])
    row.update({f"score_{label}": scores.get(label) for label in (scores if labels is None else labels)})
    row.update(model_and_error_columns(record))
    row.update({key: record.get(key) for key in SCAN_FIELDS if key != "metadata"})
    row.update(gallery_columns(record))
    rest = {k: v for k, v in record.items() if k not in SCAN_FIELDS}
    row.update({k: v for k, v in extra_fields(rest).items() if k not in row})
    for key, value in (record.get("metadata") or {}).items():
        row[(names or {}).get(key) or (f"meta_{key}" if key in row else key)] = value
    return row


def read_rows(path: str | Path) -> Iterator[dict]:
    """The rows of a results file written by :func:`write_rows` (CSV values stay text)."""
    path = Path(path)
    if not path.is_file():
        raise OutputError(f"results file not found: {path}")
    fmt = output_format(path)
    if fmt == "jsonl":  # nested records: a failure has no scores, so a first pass finds every label
        labels: dict[str, None] = {}
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    labels.update(dict.fromkeys(json.loads(line).get("scores") or {}))
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    record = json.loads(line)
                    row = flattened(record, list(labels) if isinstance(record.get("scores"), dict) else None)
                    yield {**row, **{f"score_{k}": row.get(f"score_{k}") for k in labels}}
    elif fmt == "csv":
        with open(path, newline="", encoding="utf-8") as f:
            yield from csv.DictReader(f)
    else:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=_PARQUET_ROWS):
            yield from batch.to_pylist()
