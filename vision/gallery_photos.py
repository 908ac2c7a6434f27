"""Photos into reference galleries: embed photos with the model, build the negative pool,
open a classifier's gallery store."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .gallery import GalleryError, GalleryStore, gallery_db_path
from .matching import normalise
from .records import Result
from .settings import photos_dir


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
    shas: list[str] = []
    rows: list[np.ndarray] = []
    failures: list[tuple[str, str]] = []
    seen: set[str] = set()
    for start in range(0, len(items), batch):
        ready = []
        for name, data in items[start : start + batch]:
            prepared = classifier.prepare(name, data)
            if isinstance(prepared, Result):
                failures.append((name, prepared.error_message))
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


def negatives_list_path(bundle: str | Path) -> Path:
    """``NAME.negatives.csv`` beside a bundle (``NAME.onnx`` / ``NAME.json`` / ``NAME``)."""
    bundle = Path(bundle)
    stem = bundle.with_suffix("") if bundle.suffix in (".onnx", ".json") else bundle
    return stem.parent / f"{stem.name}.negatives.csv"


def default_negative_photos(bundle: str | Path, data_dir: Path | None = None) -> list[Path]:
    """The default negative pool's photos: the list written beside the bundle by training
    (``NAME.negatives.csv``, :mod:`training.negatives`), under the shared photos
    (``$WILDSCAN_PHOTOS``). Raises :class:`GalleryError` when the list or the photos are missing."""
    listing = negatives_list_path(bundle)
    if not listing.is_file():
        raise GalleryError(
            f"cannot build the default negative pool: {listing} is missing; "
            "give non-wildlife photos to `wildscan gallery negatives PHOTO...`",
            "no_negative_pool",
        )
    data_dir = data_dir or photos_dir()
    with open(listing, newline="", encoding="utf-8") as f:
        paths = [data_dir / row["path"] for row in csv.DictReader(f)]
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise GalleryError(
            f"cannot build the default negative pool: {len(absent)} photos missing under {data_dir} "
            f"(e.g. {absent[0]}); set WILDSCAN_PHOTOS or give photos to `wildscan gallery negatives`",
            "no_negative_pool",
        )
    return paths


def build_negative_pool(store: GalleryStore, classifier, photos: Sequence[str | Path] | None = None) -> dict:
    """Embed the negative photos (default: :func:`default_negative_photos`) and store them for the model."""
    paths = list(photos) if photos else default_negative_photos(classifier.bundle.onnx_path)
    done = embed_files(classifier, paths)
    source = "given photos" if photos else f"default: {negatives_list_path(classifier.bundle.onnx_path).name}"
    store.set_negatives(done.shas, done.embeddings, f"{source} ({len(done.shas)} photos)")
    return {**(store.negative_pool_info() or {}), "failures": done.failures}


def ensure_negative_pool(store: GalleryStore, classifier) -> None:
    """Build the default negative pool unless this model already has one."""
    if store.negative_pool_info() is None:
        build_negative_pool(store, classifier)


def open_for(classifier, path: str | Path | None = None) -> GalleryStore:
    """The gallery store of a classifier's model, at ``path`` or :func:`gallery_db_path`."""
    path = Path(path) if path else gallery_db_path(classifier.bundle.onnx_path)
    return GalleryStore(path, classifier.model_info(), dim=classifier.config.embedding_dim)
