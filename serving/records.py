"""The API's result record: the vision result plus request fields and words in the caller's language."""

from __future__ import annotations

from vision.records import Result
from vision.taxonomy import UNCERTAIN, get_category, label_name

from .store import new_result_id

UNCERTAIN_NOTE = {
    "en": "The model is not sure what this photo shows. Look at it yourself; do not rely on this result.",
    "fr": "Le modèle n'est pas sûr de ce que montre cette photo. "
    "Examinez-la vous-même ; ne vous fiez pas à ce résultat.",
    "de": "Das Modell ist sich nicht sicher, was dieses Foto zeigt. "
    "Prüfen Sie es selbst; verlassen Sie sich nicht auf dieses Ergebnis.",
    "nl": "Het model weet niet zeker wat deze foto toont. Bekijk hem zelf; vertrouw niet op dit resultaat.",
}


def describe(record: dict, lang: str) -> dict:
    """``record`` with ``label_name``, ``legal_note`` and ``lang`` in the requested language."""
    label = record.get("label")
    record["lang"] = lang
    record["label_name"] = label_name(label, lang) if label else None
    if label == UNCERTAIN:
        record["legal_note"] = UNCERTAIN_NOTE[lang]
    else:
        record["legal_note"] = get_category(label).legal_note(lang) if label else None
    return record


def build_record(result: Result, *, received_at: str, form: dict, lang: str) -> dict:
    """The API record: the vision result plus id, time, case fields and words in ``lang``."""
    record = result.to_dict()
    record.update(
        result_id=new_result_id(),
        received_at=received_at,
        source_url=form.get("source_url"),
        case_id=form.get("case_id"),
        note=form.get("note"),
    )
    return describe(record, lang)
