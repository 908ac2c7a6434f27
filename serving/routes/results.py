"""``GET /v1/results``: earlier results from the audit store (users see only their own), and
``POST /v1/results/{id}/feedback``: an officer says a result is correct, or wrong and what it shows."""

from __future__ import annotations

import re
from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from vision.taxonomy import UNCERTAIN, list_categories

from ..deps import AppState, authenticate, get_state
from ..errors import ERRORS, api_error
from ..records import describe
from ..store import KeyInfo

router = APIRouter()
_RESULT_ID = re.compile(r"^[0-9a-f]{32}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def visible_result(result_id: str, key: KeyInfo, state: AppState) -> dict:
    """The stored record ``result_id`` if this key may see it (its own, or any for an admin); else 404."""
    record = None
    if _RESULT_ID.match(result_id):
        record = state.store.get_result(result_id, key_name=None if key.is_admin else key.name)
    if record is None:
        raise api_error(404, "not_found", f"no result with id {result_id!r} for this key")
    return record


@router.get(
    "/v1/results/{result_id}", tags=["results"], responses={401: ERRORS[401], 404: {"description": "no such result"}}
)
def get_result(
    result_id: str,
    lang: str | None = Query(None, pattern="^(en|fr|de|nl)$"),
    key: KeyInfo = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> dict:
    """An earlier result record. Keys with role ``user`` see only their own results."""
    record = visible_result(result_id, key, state)
    record["feedback"] = state.store.feedback_for(result_id)
    return describe(record, lang) if lang else record


class Feedback(BaseModel):
    """An officer's verdict on one result."""

    verdict: Literal["correct", "wrong"] = Field(description="is the result's category right?")
    label: str | None = Field(
        None,
        max_length=64,
        description="the category the photo really shows (a category id from GET /v1/labels); required when "
        "the verdict is 'wrong'; with 'correct', the category confirmed (default: the result's label, or "
        "its possible match)",
        examples=["ceramic_porcelain"],
    )
    note: str | None = Field(None, max_length=2000, examples=["resin copy, seen in the hand"])


@router.post(
    "/v1/results/{result_id}/feedback",
    tags=["results"],
    status_code=201,
    responses={
        401: ERRORS[401],
        404: {"description": "no such result for this key"},
        409: {"description": "the result has no prediction (the photo could not be read)"},
        422: {"description": "unknown category, or 'wrong' without the right category"},
    },
)
def give_feedback(
    result_id: str,
    feedback: Feedback,
    key: KeyInfo = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> dict:
    """Mark a result correct, or wrong with the category the photo really shows. Stored with who
    and when in the audit store; ``wildscan feedback export`` turns it into labelled data."""
    record = visible_result(result_id, key, state)
    if not record.get("label"):
        raise api_error(409, "no_prediction", "this result has no prediction to confirm or correct")
    label = feedback.label or (record["label"] if feedback.verdict == "correct" else None)
    if feedback.verdict == "correct" and not feedback.label and record["label"] == UNCERTAIN:
        label = record.get("possible")
    if not label:
        raise api_error(422, "bad_feedback", "say which category the photo really shows ('label')")
    if label not in _CATEGORY_IDS:
        raise api_error(422, "bad_feedback", f"unknown category {label!r}; see GET /v1/labels")
    if feedback.verdict == "correct" and label not in (record["label"], record.get("possible")):
        raise api_error(
            422, "bad_feedback", f"'correct' confirms the result's own category, not {label!r}: use 'wrong'"
        )
    if feedback.verdict == "wrong" and label == record["label"]:
        raise api_error(422, "bad_feedback", f"'wrong' needs a category other than the result's own ({label})")
    return state.store.add_feedback(
        result_id, verdict=feedback.verdict, label=label, note=(feedback.note or "").strip() or None, key_name=key.name
    )


_CATEGORY_IDS = frozenset(c.id for c in list_categories())


@router.get("/v1/results", tags=["results"], responses={401: ERRORS[401]})
def find_results(
    sha256: str | None = Query(None, description="SHA-256 of the image bytes (64 hex digits)"),
    case_id: str | None = Query(None, max_length=200),
    limit: int = Query(100, ge=1, le=1000),
    lang: str | None = Query(None, pattern="^(en|fr|de|nl)$"),
    key: KeyInfo = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> dict:
    """Earlier results for an image (by SHA-256) or a case, newest first."""
    if sha256 is None and case_id is None:
        raise api_error(422, "no_filter", "give sha256=… or case_id=…")
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not _SHA256.match(sha256):
            raise api_error(422, "bad_sha256", "sha256 must be 64 hexadecimal digits")
    records = state.store.find_results(
        sha256=sha256, case_id=case_id, limit=limit, key_name=None if key.is_admin else key.name
    )
    return {"results": [describe(r, lang) if lang else r for r in records]}
