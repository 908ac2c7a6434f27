"""What to scan: folders, lists of paths and crawl manifests, as items with stable ids.

An input argument is read as:

- a folder: every image file below it (recursively, by suffix), in sorted order;
- an image file: itself;
- ``.txt`` / ``.lst`` / ``.list``: one path per line (blank lines and ``#`` comments
  skipped; relative paths are relative to the list file's folder);
- ``.csv`` / ``.jsonl`` / ``.ndjson`` / ``.parquet`` / ``.pq``: a manifest, one item per
  row. A path column (``path``, ``image_path``, ``file``, ...) names the image file
  (relative to the manifest's folder), or a bytes column (``image``, ``image_bytes``,
  ``bytes``, ...) holds the image itself (binary in Parquet, base64 text in CSV/JSONL, or
  a ``{"bytes": ...}`` struct as Hugging Face datasets export it). Every other column
  (``url``, ``title``, ``price``, ``seller``, ``platform``, ``captured_at``, ...) is
  metadata, carried into the output rows.

Item ids are stable across runs, which is what makes a scan resumable: a file's absolute
path, or ``MANIFEST#ROW`` (1-based data row) for a manifest row. The same file reached
twice (a folder and a list) is one item.
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vision.errors import Reason, WildscanError
from vision.formats import IMAGE_SUFFIXES

LIST_SUFFIXES = {".txt", ".lst", ".list"}
MANIFEST_SUFFIXES = {".csv", ".jsonl", ".ndjson", ".parquet", ".pq"}
PATH_COLUMNS = ("path", "image_path", "file", "filepath", "file_path", "local_path", "filename")
BYTES_COLUMNS = ("image", "image_bytes", "bytes", "content", "data")


class InputError(WildscanError):
    """An input argument that cannot be scanned (unknown kind, unreadable manifest)."""

    reason = Reason.BAD_INPUT


@dataclass(frozen=True)
class ScanItem:
    """One thing to score: where its bytes are and what the crawl said about it.

    ``data`` holds the image bytes when the manifest carried them, else ``None`` and the
    bytes are read from ``path``. ``error`` is set when the manifest row itself is
    unusable (e.g. invalid base64); the item then becomes a failure record.
    """

    item_id: str
    path: str
    data: bytes | None = field(default=None, repr=False)
    metadata: dict = field(default_factory=dict)
    error: dict | None = None


@dataclass(frozen=True)
class Columns:
    """Which manifest columns hold the image; ``None`` means detect from the header."""

    path: str | None = None
    bytes: str | None = None


def iter_items(inputs: Iterable[str | os.PathLike], columns: Columns = Columns()) -> Iterator[ScanItem]:
    """Every item of every input, in order. Raises :class:`InputError` for a bad input.

    Items are produced lazily (a manifest of a million rows is never held in memory);
    duplicates (the same id twice) are left to the caller to skip.
    """
    for raw in inputs:
        yield from _items_of(Path(raw), columns)


def _items_of(path: Path, columns: Columns) -> Iterator[ScanItem]:
    suffix = path.suffix.lower()
    if path.is_dir():
        yield from folder_items(path)
    elif suffix in MANIFEST_SUFFIXES:
        yield from manifest_items(path, columns)
    elif suffix in LIST_SUFFIXES:
        yield from list_items(path)
    elif suffix in IMAGE_SUFFIXES:
        yield file_item(path)  # a missing file becomes a failure record, not a crash
    elif not path.exists():
        raise InputError(f"input not found: {path}")
    else:
        raise InputError(
            f"cannot scan {path}: expected a folder, an image, a list of paths "
            f"({', '.join(sorted(LIST_SUFFIXES))}) or a manifest ({', '.join(sorted(MANIFEST_SUFFIXES))})"
        )


def file_item(path: Path) -> ScanItem:
    """The item for one image file, identified by its absolute path."""
    absolute = os.path.abspath(path)
    return ScanItem(item_id=absolute, path=absolute)


def folder_items(folder: Path) -> Iterator[ScanItem]:
    """Image files below ``folder`` (by suffix, recursively), sorted by path."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield file_item(Path(root) / name)


def list_items(list_file: Path) -> Iterator[ScanItem]:
    """One item per line of a text file of paths."""
    base = list_file.parent
    for line in _open_text(list_file):
        entry = line.strip()
        if entry and not entry.startswith("#"):
            yield file_item(base / entry)


def manifest_items(manifest: Path, columns: Columns = Columns()) -> Iterator[ScanItem]:
    """One item per row of a CSV, JSONL or Parquet manifest, with its metadata."""
    rows = _manifest_rows(manifest)
    prefix = os.path.abspath(manifest)
    image_column = None
    for number, row in enumerate(rows, start=1):
        if image_column is None:
            image_column = _image_column(manifest, row.keys(), columns)
        yield _row_item(f"{prefix}#{number}", manifest.parent, row, image_column)


def _manifest_rows(manifest: Path) -> Iterator[dict]:
    suffix = manifest.suffix.lower()
    if not manifest.is_file():
        raise InputError(f"manifest not found: {manifest}")
    if suffix == ".csv":
        return _csv_rows(manifest)
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl_rows(manifest)
    return _parquet_rows(manifest)


def _csv_rows(manifest: Path) -> Iterator[dict]:
    with open(manifest, newline="", encoding="utf-8-sig") as f:
        csv.field_size_limit(1 << 30)  # base64 images make long fields
        yield from csv.DictReader(f)


def _jsonl_rows(manifest: Path) -> Iterator[dict]:
    for number, line in enumerate(_open_text(manifest), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise InputError(f"{manifest}, line {number}: not JSON ({e})") from e
        if not isinstance(row, dict):
            raise InputError(f"{manifest}, line {number}: expected a JSON object")
        yield row


def _parquet_rows(manifest: Path) -> Iterator[dict]:
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(manifest)
    except Exception as e:
        raise InputError(f"{manifest}: not a readable Parquet file ({e})") from e
    for batch in reader.iter_batches(batch_size=512):
        yield from batch.to_pylist()


def _open_text(path: Path) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8-sig") as f:
            yield from f
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from e


def _image_column(manifest: Path, keys: Iterable[str], columns: Columns) -> tuple[str, str]:
    """``("path" | "bytes", column name)`` for a manifest, from options or its header."""
    keys = list(keys)
    for kind, wanted in (("path", columns.path), ("bytes", columns.bytes)):
        if wanted is not None:
            if wanted not in keys:
                raise InputError(f"{manifest}: no column {wanted!r}; columns are {', '.join(keys)}")
            return kind, wanted
    lowered = {k.lower(): k for k in keys}
    for kind, candidates in (("path", PATH_COLUMNS), ("bytes", BYTES_COLUMNS)):
        for name in candidates:
            if name in lowered:
                return kind, lowered[name]
    raise InputError(
        f"{manifest}: no image column; expected a path column ({', '.join(PATH_COLUMNS)}) or a bytes "
        f"column ({', '.join(BYTES_COLUMNS)}); columns are {', '.join(keys)}"
    )


def _row_item(item_id: str, base: Path, row: dict, image_column: tuple[str, str]) -> ScanItem:
    kind, column = image_column
    value = row.get(column)
    metadata = {k: clean_value(v) for k, v in row.items() if k != column}
    if kind == "path":
        if value in (None, ""):
            missing = {"reason": "bad_manifest_value", "message": f"the manifest row has no {column!r}"}
            return ScanItem(item_id, item_id, data=b"", metadata=metadata, error=missing)
        return ScanItem(item_id, os.path.abspath(base / str(value)), metadata=metadata)
    data, error = _image_bytes(value)
    return ScanItem(item_id, item_id, data=data, metadata=metadata, error=error)


def _image_bytes(value) -> tuple[bytes, dict[str, str] | None]:
    """Bytes from a manifest cell: raw bytes, base64 text or a ``{"bytes": ...}`` struct."""
    if isinstance(value, dict):
        value = value.get("bytes")
    if value is None:
        return b"", None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), None
    try:
        return base64.b64decode(str(value), validate=True), None
    except (binascii.Error, ValueError):
        message = "the manifest's image column holds neither bytes nor base64 text"
        return b"", {"reason": "bad_manifest_value", "message": message}


def clean_value(value):
    """A metadata value as JSON can hold it: dates as ISO text, NaN as ``None``, no bytes."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return None
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):  # numpy scalars
        return value.item()
    if isinstance(value, (list, tuple)):
        return [clean_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): clean_value(v) for k, v in value.items()}
    return value
