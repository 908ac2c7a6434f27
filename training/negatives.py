"""The default negative pool of reference galleries, chosen from the training data.

Each gallery's threshold is calibrated against non-wildlife photos (:mod:`vision.matching`).
Which photos: per non-wildlife class of the wildtrade *train* split, the ``per_class``
photos with the smallest SHA-256 (a stable, content-chosen sample). Training knows the
dataset; the inference core does not: ``wildscan export`` writes the list beside the bundle
(``NAME.negatives.csv``: path under the shared photos, SHA-256, class) and the gallery code
reads only that list (:func:`vision.gallery_photos.default_negative_photos`).
"""

from __future__ import annotations

import csv
from pathlib import Path

from vision.gallery_photos import negatives_list_path
from vision.taxonomy import get_category

from . import data

NEGATIVES_PER_CLASS = 40


def negative_rows(per_class: int = NEGATIVES_PER_CLASS) -> list[data.Example]:
    """The default negative photos: ``per_class`` per non-wildlife train class, by SHA-256."""
    by_class: dict[str, list[data.Example]] = {}
    for ex in sorted(data.load_split("train"), key=lambda e: e.sha256):
        if not get_category(ex.cls).is_wildlife:
            by_class.setdefault(ex.cls, []).append(ex)
    return [ex for cls in sorted(by_class) for ex in by_class[cls][:per_class]]


def write_negative_list(bundle: str | Path, per_class: int = NEGATIVES_PER_CLASS) -> Path:
    """Write ``NAME.negatives.csv`` beside the bundle; returns its path."""
    path = negatives_list_path(bundle)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["path", "sha256", "class"])
        writer.writerows((ex.path, ex.sha256, ex.cls) for ex in negative_rows(per_class))
    return path
