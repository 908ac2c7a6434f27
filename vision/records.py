"""The result record: one per image, the same in the CLI, the API and bulk scans."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

from .errors import WildscanError
from .taxonomy import UNCERTAIN, get_category, label_name

UNCERTAIN_NOTE = {
    "en": "The model is not sure what this photo shows. Look at it yourself; do not rely on this result.",
    "fr": "Le modèle n'est pas sûr de ce que montre cette photo. "
    "Examinez-la vous-même ; ne vous fiez pas à ce résultat.",
    "de": "Das Modell ist sich nicht sicher, was dieses Foto zeigt. "
    "Prüfen Sie es selbst; verlassen Sie sich nicht auf dieses Ergebnis.",
    "nl": "Het model weet niet zeker wat deze foto toont. Bekijk hem zelf; vertrouw niet op dit resultaat.",
}


def utc_now() -> str:
    """The current time, ISO 8601 UTC with a ``Z`` suffix, to the millisecond (every timestamp
    that wildscan writes: records, audit, galleries, scans)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Result:
    """What wildscan said about one image, and exactly which bytes and model said it.

    ``label`` is a category id, ``uncertain`` or ``None`` (on error); ``score`` its
    calibrated probability; ``scores`` every model category's probability; ``flagged``
    is true when a wildlife category passed its threshold; ``possible`` names a wildlife
    category whose score is in the "possible match" band just below its threshold (check
    by eye), when the photo is not flagged; ``error`` is ``None`` or
    ``{"reason": code, "message": text}``.

    With reference galleries (:mod:`vision.gallery`): ``matched_by`` says whether the
    trained head (``model``) or a gallery (``reference``) decided the label, and for a
    reference decision ``score`` is the reference confidence (:mod:`vision.matching`);
    ``gallery`` names the versions of the galleries consulted and, on a match, the
    gallery's category, version, similarity, threshold and confidence; ``references`` the
    closest reference photos (SHA-256 and similarity); ``head`` the head's own decision
    whenever a gallery matched, so both opinions are on record.
    """

    path: str
    sha256: str | None = None
    pdq: str | None = None
    width: int | None = None
    height: int | None = None
    label: str | None = None
    score: float | None = None
    flagged: bool = False
    possible: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    error: dict | None = None
    matched_by: str | None = None
    gallery: dict | None = None
    references: list[dict] = field(default_factory=list)
    head: dict | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def error_reason(self) -> str:
        """The failure's reason (``""`` when the image was classified)."""
        return (self.error or {}).get("reason", "")

    @property
    def error_message(self) -> str:
        """The failure's message (``""`` when the image was classified)."""
        return (self.error or {}).get("message", "")

    def to_dict(self) -> dict:
        """The record as plain JSON-ready data (nested dicts and lists copied)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def failure(
        cls, path: str, error: WildscanError, *, sha256: str | None = None, model: dict | None = None
    ) -> Result:
        """A record for an input that could not be classified, with the reason."""
        return cls(path=path, sha256=sha256, model=model or {}, error=error.as_dict())


def _plain(value):
    """A copy of JSON-like ``value`` (what ``dataclasses.asdict`` gives here, 8x faster)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def describe(record: dict, lang: str = "en") -> dict:
    """``record`` (a :meth:`Result.to_dict`) with ``label_name`` and ``legal_note`` in ``lang``,
    as every command writes it (``None`` for a failure)."""
    label = record.get("label")
    record["label_name"] = label_name(label, lang) if label else None
    if label == UNCERTAIN:
        record["legal_note"] = UNCERTAIN_NOTE[lang]
    else:
        record["legal_note"] = get_category(label).legal_note(lang) if label else None
    return record
