"""Errors with a short machine-readable reason and a message a person can act on."""

from __future__ import annotations


class WildscanError(Exception):
    """Base class: ``reason`` is a stable code, ``str(err)`` the human message."""

    reason = "error"

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason

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

    reason = "corrupt"


class BundleError(WildscanError):
    """A model bundle that is missing, inconsistent or unreadable."""

    reason = "bad_bundle"
