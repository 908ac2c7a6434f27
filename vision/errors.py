"""Errors with a short machine-readable reason and a message a person can act on."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Every failure reason wildscan reports: in a record's ``error``, an API error body, a
    CLI message. A ``StrEnum``: each member is its string, so JSON and comparisons with
    plain strings are unchanged. The README lists the record reasons (:data:`RECORD_REASONS`)."""

    # an input that is not a usable image (a record's error; a 413/415/422 when no file is usable)
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    TOO_MANY_PIXELS = "too_many_pixels"
    BAD_DIMENSIONS = "bad_dimensions"
    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    UNREADABLE = "unreadable"
    # bulk scans: a manifest row without usable image data; a file that crashed its worker
    BAD_MANIFEST_VALUE = "bad_manifest_value"
    WORKER_CRASHED = "worker_crashed"
    # a photo given to a reference gallery that could not be used
    UNUSABLE = "unusable"
    # API requests
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    NOT_READY = "not_ready"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    BAD_REQUEST = "bad_request"
    TIMEOUT = "timeout"
    INVALID_REQUEST = "invalid_request"
    REQUEST_TOO_LARGE = "request_too_large"
    TOO_MANY_FILES = "too_many_files"
    NO_FILES = "no_files"
    NO_FILTER = "no_filter"
    BAD_FORM = "bad_form"
    BAD_FIELD = "bad_field"
    BAD_LANGUAGE = "bad_language"
    BAD_SHA256 = "bad_sha256"
    FIELD_TOO_LONG = "field_too_long"
    # officers' feedback on a result
    NO_PREDICTION = "no_prediction"
    BAD_FEEDBACK = "bad_feedback"
    # reference galleries
    GALLERY_ERROR = "gallery_error"
    UNKNOWN_CATEGORY = "unknown_category"
    NO_EMBEDDING = "no_embedding"
    NO_NEGATIVE_POOL = "no_negative_pool"
    NO_PHOTOS = "no_photos"
    WRONG_MODEL = "wrong_model"
    BAD_GALLERY_FILE = "bad_gallery_file"
    # set-up: models, settings, options, files, databases
    ERROR = "error"
    BAD_BUNDLE = "bad_bundle"
    BUNDLE_NOT_FOUND = "bundle_not_found"
    BAD_SETTINGS = "bad_settings"
    BAD_OPTION = "bad_option"
    BAD_INPUT = "bad_input"
    BAD_OUTPUT = "bad_output"
    BAD_DATABASE = "bad_database"
    STORE_ERROR = "store_error"
    ENGINE_FAILED = "engine_failed"
    # training: data definitions that do not match the photos, exports that fail their checks
    BAD_DATA = "bad_data"
    EXPORT_FAILED = "export_failed"


# The reasons a result record's ``error`` can carry (the README lists exactly these).
RECORD_REASONS = (
    Reason.EMPTY, Reason.TOO_LARGE, Reason.TOO_MANY_PIXELS, Reason.BAD_DIMENSIONS, Reason.NOT_AN_IMAGE,
    Reason.UNSUPPORTED_FORMAT,
    Reason.TRUNCATED, Reason.CORRUPT, Reason.UNREADABLE, Reason.BAD_MANIFEST_VALUE, Reason.WORKER_CRASHED,
)  # fmt: skip


def mib(n: int | float) -> str:
    """A byte count as the limits are written: ``25 MiB``, ``26.5 MiB``."""
    value = n / 2**20
    return f"{value:.0f} MiB" if abs(value - round(value)) < 0.05 else f"{value:.1f} MiB"


class WildscanError(Exception):
    """Base class: ``reason`` is a stable code (a :class:`Reason`), ``str(err)`` the human message."""

    reason: Reason = Reason.ERROR

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = Reason(reason)  # an unknown reason is a bug: ValueError

    @property
    def message(self) -> str:
        return str(self)

    def as_dict(self) -> dict:
        return {"reason": self.reason, "message": self.message}


class ImageError(WildscanError):
    """An input that is not a usable image. Reasons:

    ``empty``, ``too_large`` (bytes), ``too_many_pixels``, ``not_an_image``,
    ``unsupported_format``, ``truncated``, ``corrupt``, ``unreadable`` (I/O).
    """

    reason = Reason.CORRUPT


class BundleError(WildscanError):
    """A model bundle that is missing, inconsistent or unreadable."""

    reason = Reason.BAD_BUNDLE
