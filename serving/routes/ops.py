"""Operations and the page: ``/healthz``, ``/readyz``, ``/metrics`` and ``/``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vision import __version__

from ..deps import require_admin
from ..store import KeyInfo

router = APIRouter()
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


@router.get("/healthz", tags=["ops"])
def healthz() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"], responses={503: {"description": "model not loaded"}})
def readyz(request: Request) -> JSONResponse:
    """Readiness: 200 with the model's identity once it is loaded and the batcher runs, else 503."""
    state = getattr(request.app.state, "wildscan", None)
    if state is None or not state.batcher.alive:
        return JSONResponse({"ready": False}, 503)
    return JSONResponse(
        {
            "ready": True,
            "model": state.classifier.model_info(),
            "auth_required": state.settings.requires_key,
            "version": __version__,
        }
    )


@router.get("/metrics", tags=["ops"], response_class=Response)
def metrics(request: Request, _: KeyInfo = Depends(require_admin)) -> Response:
    """Prometheus metrics in the text exposition format (admin keys: the counts of flags per
    category say what officers are finding). Prometheus sends the key as a bearer token."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The officers' web page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")
