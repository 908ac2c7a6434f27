"""The reference galleries' data types and small codecs (:mod:`vision.gallery` stores them)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from .errors import Reason, WildscanError
from .taxonomy import get_category

GALLERY_FORMAT = "wildscan-gallery/1"


class GalleryError(WildscanError):
    """A gallery operation that cannot be done (unknown category, no negative pool, wrong model...)."""

    reason = Reason.GALLERY_ERROR


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
        return {
            "category": self.category,
            "version": self.version,
            "references": self.references,
            "threshold": self.threshold,
            "calibration": self.calibration,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class Reference:
    """One example photo of a gallery: its hash, who added it, when, and its embedding."""

    sha256: str
    added_by: str
    added_at: str
    embedding: np.ndarray


def to_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
