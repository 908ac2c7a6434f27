"""``GET /v1/me``: who a key belongs to; the page checks a key with it before using it."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ..deps import authenticate
from ..errors import ERRORS
from ..store import KeyInfo

router = APIRouter()


@router.get("/v1/me", tags=["account"], responses={401: ERRORS[401]})
def me(key: KeyInfo = Depends(authenticate)) -> dict:
    """The caller's key name and role (``user`` or ``admin``); 401 for a missing or refused key."""
    return {"name": key.name, "role": key.role}
