"""The decision rule's parts for one-vs-rest scores (model 2): calibration, per-class
thresholds with floors, the crop cascade's start and how views are aggregated.

Pure numpy on score arrays; :func:`training.heads.choose_rule` applies them to a trained head.
"""

from __future__ import annotations

import numpy as np

from vision.runtime import best_view

from . import metrics

# Object labels: scored by their maximum over the whole photo and its crops (a small carving
# in a cluttered listing photo). Here live animals keep the whole photo's score: their
# thresholds are chosen on whole-photo features. Which animals read their best crop too is
# chosen after export on the ONNX file's own outputs of every view (training.view_rule).
OBJECT_LABELS = (
    "ivory",
    "reptile_skin_product",
    "ceramic_porcelain",
    "figurine",
    "antique",
    "jewellery",
    "leather_goods",
    "toy",
)
MAX_CROP_FRACTION = 0.2  # the cascade runs crops for at most this share of validation photos: <= 2x cost
# The ivory threshold chosen on real ads is never lower than the score at which ivory would
# flag more than this share of the validation look-alike and ordinary photos (carvings,
# figurines, ceramics, antiques: the hard negatives), all views and crops included.
IVORY_MAX_FALSE_FLAG = 0.05
POSSIBLE_RATIO = 0.5


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the mean binary cross-entropy over every label (log grid)."""

    def bce(t: float) -> float:
        p = np.clip(sigmoid(logits / t), 1e-7, 1 - 1e-7)
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())

    grid = np.exp(np.linspace(np.log(0.25), np.log(4.0), 81))
    return round(float(min(grid, key=bce)), 4)


def ovr_thresholds(
    probs: np.ndarray,
    y: np.ndarray,
    labels: list[str],
    wildlife: np.ndarray,
    *,
    target_precision: float = 0.95,
    floor: float = 0.5,
    max_false_flag: float = 0.002,
) -> dict[str, float]:
    """Per wildlife label: the lowest threshold whose precision (that label against every
    other photo) reaches ``target_precision``, raised to ``floor`` and to the score that keeps
    the label's false flags on non-wildlife photos at ``max_false_flag`` or below, so that an
    easy class can never be given a threshold at false-flag levels."""
    negatives = ~(y[:, wildlife].any(1))
    out = {}
    for k, label in enumerate(labels):
        if not wildlife[k]:
            continue
        s = probs[:, k]
        t = metrics.threshold_at_precision(s, y[:, k] > 0, target_precision)
        neg = np.sort(s[negatives])[::-1]
        fpr_t = float(neg[int(max_false_flag * len(neg))]) + 1e-6 if len(neg) else 0.0
        out[label] = round(min(0.99, max(t, floor, fpr_t)), 4)
    return out


def aggregate(views: np.ndarray, objects: np.ndarray, run_crops: np.ndarray) -> np.ndarray:
    """Scores per photo from cached view scores (V x N x C, view 0 the whole photo), as the
    runtime aggregates them (:func:`vision.runtime.best_view`), crops counted only where
    ``run_crops``."""
    per_photo = np.moveaxis(views, 0, 1).copy()
    per_photo[~run_crops, 1:] = np.nan
    return best_view(per_photo, objects)


def choose_crops_from(
    whole: np.ndarray, objects: np.ndarray, flagged: np.ndarray, max_fraction: float = MAX_CROP_FRACTION
) -> float:
    """The lowest wildlife-object score (``objects``: those labels) from which crops are run
    such that at most ``max_fraction`` of the photos (scores ``whole``, N x C) need them."""
    if not objects.any():
        return 1.0  # nothing starts the cascade
    best = np.where(flagged, -1.0, whole[:, objects].max(1))
    for c in np.round(np.arange(0.02, 1.0, 0.01), 2):
        if (best >= c).mean() <= max_fraction:
            return float(c)
    return 1.0
