"""``GET /v1/results``: earlier results from the audit store (users see only their own)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Query

from ..deps import AppState, authenticate, get_state
from ..errors import ERRORS, api_error
from ..records import describe
from ..store import KeyInfo

router = APIRouter()
_RESULT_ID = re.compile(r"^[0-9a-f]{32}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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
    record = None
    if _RESULT_ID.match(result_id):
        record = state.store.get_result(result_id, key_name=None if key.is_admin else key.name)
    if record is None:
        raise api_error(404, "not_found", f"no result with id {result_id!r} for this key")
    return describe(record, lang) if lang else record


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
