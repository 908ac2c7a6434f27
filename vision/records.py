"""The result record: one per image, the same in the CLI, the API and bulk scans."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .errors import WildscanError


@dataclass
class Result:
    """What wildscan said about one image, and exactly which bytes and model said it.

    ``label`` is a category id, ``uncertain`` or ``None`` (on error); ``score`` its
    calibrated probability; ``scores`` every model category's probability; ``flagged``
    is true when a wildlife category passed its threshold; ``error`` is ``None`` or
    ``{"reason": code, "message": text}``.
    """

    path: str
    sha256: str | None = None
    pdq: str | None = None
    width: int | None = None
    height: int | None = None
    label: str | None = None
    score: float | None = None
    flagged: bool = False
    scores: dict[str, float] = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    error: dict | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def failure(cls, path: str, error: WildscanError, *, sha256: str | None = None, model: dict | None = None) -> "Result":
        """A record for an input that could not be classified, with the reason."""
        return cls(path=path, sha256=sha256, model=model or {}, error=error.as_dict())
