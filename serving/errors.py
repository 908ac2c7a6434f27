"""The API's refusals: one body shape, ``{"detail": {"reason", "message", ...}}``, for every 4xx/5xx."""

from __future__ import annotations

import re
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from vision.errors import Reason, mib
from vision.records import Result

# The HTTP status of each reason that a refusal can carry without naming its own.
STATUS_BY_REASON: dict[Reason, int] = {
    Reason.TOO_LARGE: 413,
    Reason.TOO_MANY_PIXELS: 413,
    Reason.BAD_DIMENSIONS: 422,
    Reason.TOO_MANY_FILES: 413,
    Reason.REQUEST_TOO_LARGE: 413,
    Reason.UNSUPPORTED_FORMAT: 415,
    Reason.NOT_AN_IMAGE: 415,
    Reason.EMPTY: 422,
    Reason.TRUNCATED: 422,
    Reason.CORRUPT: 422,
    Reason.UNREADABLE: 422,
    Reason.UNKNOWN_CATEGORY: 404,
    Reason.NOT_FOUND: 404,
    Reason.NO_NEGATIVE_POOL: 409,
    Reason.NO_EMBEDDING: 409,
    Reason.WRONG_MODEL: 422,
    Reason.BAD_GALLERY_FILE: 422,
    Reason.NO_PHOTOS: 422,
    Reason.NO_PREDICTION: 409,
    Reason.BAD_FEEDBACK: 422,
}


# The reason of a refusal raised by Starlette or FastAPI themselves (a plain string detail).
PLAIN_REFUSALS: dict[int, Reason] = {
    400: Reason.BAD_REQUEST,
    404: Reason.NOT_FOUND,
    405: Reason.METHOD_NOT_ALLOWED,
    413: Reason.REQUEST_TOO_LARGE,
    415: Reason.UNSUPPORTED_FORMAT,
}


def status_of(reason: str) -> int:
    """The HTTP status for ``reason`` (422 for reasons the table does not name)."""
    return STATUS_BY_REASON.get(Reason(reason), 422)


def api_error(status: int, reason: str, message: str, **extra) -> HTTPException:
    """An HTTPException whose body is ``{"detail": {"reason", "message", ...}}``."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return HTTPException(status, detail={"reason": reason, "message": message, **extra}, headers=headers)


class BodyTooLarge(StarletteHTTPException):
    """Raised while reading a request body that grows past the limit."""

    def __init__(self, limit: int):
        detail = {"reason": "request_too_large", "message": f"the request is larger than {mib(limit)}"}
        super().__init__(413, detail=detail)  # type: ignore[arg-type]  # Starlette types detail as str; a dict is sent as JSON


def image_error_response(result: Result) -> HTTPException:
    """The 4xx for a request none of whose files could be used (the first file's reason)."""
    reason = result.error_reason
    return api_error(status_of(reason), reason, result.error_message, file=result.path)


ERROR_EXAMPLE = {"detail": {"reason": "truncated", "message": "the file is cut off (truncated)", "file": "a.jpg"}}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "no valid API key",
        "content": {
            "application/json": {"example": {"detail": {"reason": "unauthorized", "message": "an API key is required"}}}
        },
    },
    413: {"description": "file, image or request too large"},
    415: {"description": "not an image, or an unsupported format"},
    422: {
        "description": "empty, truncated or corrupt image; bad form field",
        "content": {"application/json": {"example": ERROR_EXAMPLE}},
    },
}


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()]
    message = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
    return JSONResponse({"detail": {"reason": "invalid_request", "message": message, "errors": errors}}, 422)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail: Any = exc.detail
    if not isinstance(detail, dict):  # Starlette's and FastAPI's own refusals: a Reason by status
        detail = {"reason": str(PLAIN_REFUSALS.get(exc.status_code, Reason.ERROR)), "message": str(detail)}
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:  # every method of every route on this path, not only the first route's
        headers["Allow"] = ", ".join(allowed_methods(request))
    return JSONResponse({"detail": detail}, exc.status_code, headers=headers or None)


def allowed_methods(request: Request) -> list[str]:
    """The methods allowed on the request's path: those of its path in the OpenAPI (a literal
    path before a templated one, as OpenAPI matches them); for paths outside the API (the
    page, static files), the methods some route accepts (sorted)."""
    path = request.url.path
    paths = request.app.openapi().get("paths", {})
    literal = paths.get(path)
    templated = [ops for template, ops in paths.items() if "{" in template and _template(template).fullmatch(path)]
    operations = literal if literal is not None else (templated[0] if templated else None)
    if operations is not None:
        methods = {m.upper() for m in operations if m.upper() in _METHODS}
    else:  # mounts (static files) answer every method themselves: only routes count
        routes = [r for r in request.app.router.routes if not isinstance(r, Mount)]
        methods = {
            m for m in _METHODS if any(r.matches({**request.scope, "method": m})[0] == Match.FULL for r in routes)
        }
    return sorted(methods | ({"HEAD"} if "GET" in methods else set()))


_METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")


def _template(template: str) -> re.Pattern:
    return re.compile(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)))
