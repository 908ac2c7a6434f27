"""The API's result record: the vision result plus request fields and words in the caller's language."""

from __future__ import annotations

from vision.records import Result
from vision.records import describe as describe_in

from .store import new_result_id


def describe(record: dict, lang: str) -> dict:
    """``record`` with ``label_name``, ``legal_note`` and ``lang`` in the requested language."""
    record["lang"] = lang
    return describe_in(record, lang)


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
