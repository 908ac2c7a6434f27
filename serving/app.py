"""The officers' API and web page: ``create_app(settings)`` returns the FastAPI app.

The model is loaded once, at start-up (lifespan). A classify request is authenticated
before its body is read, each file is read up to the size limit and decoded in a worker
thread (never written to disk under a client's name), the images join the micro-batcher
and the results are appended to the audit store before the answer goes out. Every
refusal is a 4xx with ``{"detail": {"reason": ..., "message": ...}}``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import os
import re
import tempfile
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import numpy as np
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from vision import __version__
from vision.errors import ImageError
from vision.records import Result
from vision.runtime import PreparedImage, prepare_image
from vision.taxonomy import LANGUAGES, UNCERTAIN, get_category, label_name, list_categories

from .batcher import BatcherClosed, MicroBatcher
from .explain import explain as explain_image
from .settings import Settings, SettingsError
from .store import KeyInfo, Store, new_result_id, utc_now

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATUS_BY_REASON = {
    "too_large": 413, "too_many_pixels": 413, "too_many_files": 413, "request_too_large": 413,
    "unsupported_format": 415, "not_an_image": 415,
    "empty": 422, "truncated": 422, "corrupt": 422, "unreadable": 422,
}
UNCERTAIN_NOTE = {
    "en": "The model is not sure what this photo shows. Look at it yourself; do not rely on this result.",
    "fr": "Le modèle n'est pas sûr de ce que montre cette photo. Examinez-la vous-même ; ne vous fiez pas à ce résultat.",
    "de": "Das Modell ist sich nicht sicher, was dieses Foto zeigt. Prüfen Sie es selbst; verlassen Sie sich nicht auf dieses Ergebnis.",
    "nl": "Het model weet niet zeker wat deze foto toont. Bekijk hem zelf; vertrouw niet op dit resultaat.",
}
FORM_LIMITS = {"source_url": 2048, "case_id": 200, "note": 2000}
_RESULT_ID = re.compile(r"^[0-9a-f]{32}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "x-frame-options": "DENY",
}


# --- errors ------------------------------------------------------------------------------

def api_error(status: int, reason: str, message: str, **extra) -> HTTPException:
    """An HTTPException whose body is ``{"detail": {"reason", "message", ...}}``."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return HTTPException(status, detail={"reason": reason, "message": message, **extra}, headers=headers)


class BodyTooLarge(StarletteHTTPException):
    """Raised while reading a request body that grows past the limit."""

    def __init__(self, limit: int):
        super().__init__(413, detail={"reason": "request_too_large",
                                      "message": f"the request is larger than {limit / 1e6:.0f} MB"})


# --- metrics -----------------------------------------------------------------------------

class Metrics:
    """The Prometheus metrics of one app (its own registry, so apps in one process don't clash)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("wildscan_requests_total", "HTTP requests", ["method", "route", "status"], registry=r)
        self.latency = Histogram("wildscan_request_seconds", "HTTP request latency", ["route"], registry=r,
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.images = Counter("wildscan_images_total", "Images received for classification", registry=r)
        self.results = Counter("wildscan_results_total", "Images classified, per label", ["label"], registry=r)
        self.flagged = Counter("wildscan_flagged_total", "Images flagged, per category", ["label"], registry=r)
        self.errors = Counter("wildscan_image_errors_total", "Images refused, per reason", ["reason"], registry=r)
        self.batch_size = Histogram("wildscan_batch_size", "Images per model call", registry=r,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.inference = Histogram("wildscan_inference_seconds", "Seconds per model call", registry=r,
                                   buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))

    def observe_batch(self, size: int, seconds: float) -> None:
        """Record one model call (the batcher's observer)."""
        self.batch_size.observe(size)
        self.inference.observe(seconds)

    def observe_records(self, records: list[dict]) -> None:
        """Count classified images, flags and per-image errors."""
        for record in records:
            self.images.inc()
            if record.get("error"):
                self.errors.labels(record["error"]["reason"]).inc()
            else:
                self.results.labels(record["label"]).inc()
                if record.get("flagged"):
                    self.flagged.labels(record["label"]).inc()


class MetricsMiddleware:
    """Counts requests and their latency per route template (pure ASGI, cheap)."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500
        started = time.perf_counter()

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


class BodyLimitMiddleware:
    """Refuses request bodies over ``limit`` bytes: by Content-Length up front, else while reading."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            error = BodyTooLarge(self.limit)
            return await JSONResponse({"detail": error.detail}, 413)(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited_receive, send)


class SecurityHeadersMiddleware:
    """Adds ``nosniff`` and ``no-referrer`` everywhere, and a strict CSP on the web page."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        page = scope["path"] == "/" or scope["path"].startswith("/static/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                if page:
                    headers += [(k.encode(), v.encode()) for k, v in _SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def mount_offline_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` from the ``swagger-ui-py`` package's files: no CDN, since the
    machines officers use have no internet."""
    import swagger_ui
    from fastapi.openapi.docs import get_swagger_ui_html

    assets = Path(swagger_ui.__file__).resolve().parent / "static"
    app.mount("/docs-static", StaticFiles(directory=assets), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title="wildscan API",
            swagger_js_url="/docs-static/swagger-ui-bundle.js", swagger_css_url="/docs-static/swagger-ui.css",
            swagger_favicon_url="/docs-static/favicon-32x32.png",
        )


# --- state -------------------------------------------------------------------------------

@dataclass
class AppState:
    """What the lifespan loads once: settings, model, store, batcher."""

    settings: Settings
    classifier: object
    store: Store
    batcher: MicroBatcher
    metrics: Metrics
    env_keys: dict[bytes, KeyInfo] = field(default_factory=dict)
    explain_limiter: anyio.CapacityLimiter | None = None
    decode_limiter: anyio.CapacityLimiter | None = None

    def check_key(self, key: str) -> KeyInfo | None:
        """The caller for a presented key (environment keys first, then the store), or ``None``."""
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        for known, info in self.env_keys.items():
            if hmac.compare_digest(known, digest):
                return info
        return self.store.verify_key(key)

    def close(self) -> None:
        """Stop the batcher and close the store."""
        self.batcher.close()
        self.store.close()


def check_keys_exist(settings: Settings, store: Store) -> None:
    """Raise :class:`SettingsError` when keys are required but none is configured."""
    if settings.requires_key and not settings.api_keys and store.active_key_count() == 0:
        raise SettingsError(
            f"API keys are required but none exists in {settings.db_path}: create one with "
            "`wildscan keys add NAME`, or start a local demo with `wildscan serve --allow-anonymous`"
        )


def preflight(settings: Settings) -> None:
    """Check, before a server starts, that a key exists (when needed) and the model's files are there.

    Raises :class:`SettingsError` or :class:`vision.errors.BundleError` with a message to act on.
    """
    from vision.bundle import bundle_paths
    from vision.errors import BundleError
    from vision.registry import resolve_model

    with Store(settings.db_path) as store:
        check_keys_exist(settings, store)
    for path in bundle_paths(resolve_model(settings.model)):
        if not path.is_file():
            raise BundleError(f"model bundle file not found: {path}", "bundle_not_found")


def load_state(settings: Settings, metrics: Metrics) -> AppState:
    """Open the store, refuse to start without any key when keys are required, load the model.

    Raises :class:`SettingsError` (no key configured) or :class:`vision.errors.BundleError`.
    """
    from vision.registry import create_model

    store = Store(settings.db_path)
    try:
        check_keys_exist(settings, store)
        classifier = create_model(settings.model, intra_threads=settings.threads, max_batch=settings.batch_max_size)
    except BaseException:
        store.close()
        raise
    batcher = MicroBatcher(lambda batch: _outputs(classifier, batch), max_batch=settings.batch_max_size,
                           max_wait_ms=settings.batch_max_wait_ms, observer=metrics.observe_batch)
    env_keys = {hashlib.sha256(k.encode("utf-8")).digest(): KeyInfo(name) for name, k in settings.api_keys.items()}
    log.info("model %s loaded; serving with db %s", classifier.model_info(), settings.db_path)
    return AppState(settings, classifier, store, batcher, metrics, env_keys)


async def get_state(request: Request) -> AppState:
    """The loaded state; 503 while the model is not loaded."""
    state = getattr(request.app.state, "wildscan", None)
    if state is None:
        raise api_error(503, "not_ready", "the model is still loading")
    return state


async def authenticate(request: Request, state: AppState = Depends(get_state)) -> KeyInfo:
    """The caller, from ``Authorization: Bearer KEY`` or ``X-API-Key``; 401 when missing or invalid.

    Runs on the event loop: the lookup is one indexed SQLite read (tens of microseconds).
    """
    if not state.settings.requires_key:
        return KeyInfo("anonymous", "user")
    key = presented_key(request)
    if not key:
        raise api_error(401, "unauthorized", "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
    info = state.check_key(key)
    if info is None:
        raise api_error(401, "unauthorized", "the API key is not valid or has been revoked")
    return info


def presented_key(request: Request) -> str | None:
    """The key a client sent, if any."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key", "").strip() or None


# --- records -----------------------------------------------------------------------------

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
    record.update(result_id=new_result_id(), received_at=received_at,
                  source_url=form.get("source_url"), case_id=form.get("case_id"), note=form.get("note"))
    return describe(record, lang)


def image_error_response(result: Result) -> HTTPException:
    """The 4xx for a request none of whose files could be used (the first file's reason)."""
    reason = result.error["reason"]
    return api_error(STATUS_BY_REASON.get(reason, 422), reason, result.error["message"], file=result.path)


def display_name(filename: str | None, index: int) -> str:
    """A client's file name reduced to a label (no directories, no control characters, short)."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()[:200]
    return name or f"upload-{index + 1}"


# --- classify steps ----------------------------------------------------------------------

async def read_form(request: Request, settings: Settings) -> tuple[list[UploadFile], dict]:
    """The uploaded files and the checked text fields; 4xx for a malformed form."""
    try:
        form = await request.form(max_files=settings.max_files, max_fields=20, max_part_size=64 * 1024)
    except StarletteHTTPException as e:
        if isinstance(e, BodyTooLarge):
            raise
        if "Too many files" in str(e.detail):
            raise api_error(413, "too_many_files", f"send at most {settings.max_files} files per request") from e
        raise api_error(400, "bad_form", f"the multipart form could not be read: {e.detail}") from e
    files = [v for k, v in form.multi_items() if k == "files" and isinstance(v, UploadFile)]
    if not files:
        raise api_error(422, "no_files", "send one or more images in the multipart field 'files'")
    return files, check_fields(form)


def check_fields(form) -> dict:
    """``source_url``, ``case_id``, ``note``, ``lang``, ``explain`` from the form, checked."""
    fields: dict = {}
    for name, limit in FORM_LIMITS.items():
        value = form.get(name)
        if isinstance(value, str) and value.strip():
            if len(value) > limit:
                raise api_error(422, "field_too_long", f"'{name}' is longer than {limit} characters")
            fields[name] = value.strip()
    lang = str(form.get("lang") or "en").lower()
    if lang not in LANGUAGES:
        raise api_error(422, "bad_language", f"lang must be one of {', '.join(LANGUAGES)}, not {lang!r}")
    fields["lang"] = lang
    explain = str(form.get("explain") or "false").lower()
    if explain not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise api_error(422, "bad_field", "explain must be true or false")
    fields["explain"] = explain in ("1", "true", "yes", "on")
    return fields


async def read_uploads(files: list[UploadFile], limit: int) -> list[tuple[str, bytes | ImageError]]:
    """``(name, bytes)`` per file, or ``(name, ImageError)`` for one over ``limit`` bytes."""
    out = []
    for i, upload in enumerate(files):
        data = await upload.read(limit + 1)
        name = display_name(upload.filename, i)
        if len(data) > limit:
            out.append((name, ImageError(f"the file is larger than the {limit / 1e6:.1f} MB limit", "too_large")))
        else:
            out.append((name, data))
    return out


def prepare_all(items: list[tuple[str, bytes | ImageError]], classifier, settings: Settings) -> list:
    """Decode and preprocess every upload (in a worker thread): PreparedImage or failure Result."""
    out = []
    for name, data in items:
        if isinstance(data, ImageError):
            out.append(Result.failure(name, data))
        else:
            out.append(prepare_image(name, data, classifier.preprocess,
                                     max_pixels=settings.max_pixels, max_bytes=settings.max_upload_bytes))
    return out


def _outputs(classifier, batch: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(logits,)`` or ``(logits, embeddings)``: embeddings feed the reference galleries."""
    return tuple(o for o in classifier.run(batch) if o is not None)


async def classify_items(state: AppState, prepared: list) -> list[Result]:
    """Run the usable images through the batcher; failures keep their place in the order."""
    ready = [p for p in prepared if isinstance(p, PreparedImage)]
    if not ready:
        return state.classifier.assemble(prepared, None)
    outputs = await state.batcher.submit([p.tensor for p in ready])
    return state.classifier.assemble(prepared, *outputs)


async def add_explanations(state: AppState, records: list[dict], prepared: list) -> None:
    """Attach an occlusion heatmap to each classified record (one at a time, off the loop)."""
    for record, item in zip(records, prepared):
        if not isinstance(item, PreparedImage):
            continue
        run = functools.partial(explain_image, state.classifier, item.tensor, record["label"],
                                width=item.width, height=item.height, grid=state.settings.explain_grid)
        record["explanation"] = (await anyio.to_thread.run_sync(
            run, limiter=state.explain_limiter, abandon_on_cancel=True)).as_dict()


def save_evidence(folder: Path, items: list[tuple[str, bytes | ImageError]], prepared: list) -> None:
    """Keep a copy of each decoded upload as ``folder/ab/<sha256>.<ext>`` (client names never used)."""
    for (_, data), item in zip(items, prepared):
        if not isinstance(item, PreparedImage) or not isinstance(data, bytes):
            continue
        target = folder / item.sha256[:2] / (item.sha256 + _extension(data))
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
        with os.fdopen(fd, "wb") as f:  # a unique name: concurrent uploads of one photo never collide
            f.write(data)
        os.replace(partial, target)


def _extension(data: bytes) -> str:
    signatures = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG", ".png"), (b"GIF8", ".gif"), (b"BM", ".bmp"),
                  (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((ext for sig, ext in signatures if data.startswith(sig)), ".img")


# --- routes ------------------------------------------------------------------------------

router = APIRouter()

_CLASSIFY_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object",
        "required": ["files"],
        "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                      "description": "one or more images (JPEG, PNG, WebP, GIF, BMP, TIFF); repeat the field"},
            "source_url": {"type": "string", "maxLength": 2048, "description": "the ad the photo came from",
                           "example": "https://marketplace.example/ad/12345"},
            "case_id": {"type": "string", "maxLength": 200, "example": "DE-ZOLL-2025-0042"},
            "note": {"type": "string", "maxLength": 2000, "example": "seller claims 'antique bone'"},
            "lang": {"type": "string", "enum": list(LANGUAGES), "default": "en",
                     "description": "language of label_name and legal_note"},
            "explain": {"type": "boolean", "default": False,
                        "description": "add an occlusion heatmap (about 50 extra model runs per image)"},
        },
    }}},
}
_RECORD_EXAMPLE = {
    "result_id": "5f0c3b1e9a7d4c2b8e6f1a0d3c5b7e9f", "received_at": "2025-05-14T09:31:02.117Z",
    "path": "ad-12345-1.jpg", "sha256": "9f2c…", "pdq": "e1c3…", "width": 1600, "height": 1200,
    "label": "ivory", "score": 0.92, "flagged": True, "scores": {"ivory": 0.92, "ceramic_porcelain": 0.05},
    "model": {"name": "efficientnet_lite0.wildtrade_v1", "version": "1.0.0", "sha256": "4b1d…"},
    "error": None, "lang": "en", "label_name": "Elephant ivory (carving or object)",
    "legal_note": "Typical traded species: CITES Appendix I/II, EU Annex A. …",
    "source_url": "https://marketplace.example/ad/12345", "case_id": "DE-ZOLL-2025-0042", "note": None,
}
_ERROR_EXAMPLE = {"detail": {"reason": "truncated", "message": "the file is cut off (truncated)", "file": "a.jpg"}}
_ERRORS = {
    401: {"description": "no valid API key", "content": {"application/json": {"example": {
        "detail": {"reason": "unauthorized", "message": "an API key is required"}}}}},
    413: {"description": "file, image or request too large"},
    415: {"description": "not an image, or an unsupported format"},
    422: {"description": "empty, truncated or corrupt image; bad form field",
          "content": {"application/json": {"example": _ERROR_EXAMPLE}}},
}


@router.post(
    "/v1/classify", tags=["classify"], openapi_extra={"requestBody": _CLASSIFY_BODY},
    responses={200: {"content": {"application/json": {"example": {"results": [_RECORD_EXAMPLE]}}}}, **_ERRORS},
)
async def classify(request: Request, key: KeyInfo = Depends(authenticate),
                   state: AppState = Depends(get_state)) -> dict:
    """Classify one or more uploaded images; one result record per image, in upload order.

    When no file is usable the request fails with the first file's reason (413, 415 or
    422); otherwise unusable files come back as records with an ``error``. Every record
    is stored in the audit database before the answer is sent.
    """
    settings = state.settings
    received_at = utc_now()
    try:
        async with asyncio.timeout(settings.request_timeout_s):
            records, items, prepared = await _classify(request, state, received_at)
    except TimeoutError as e:
        raise api_error(503, "timeout", f"the request took longer than {settings.request_timeout_s:g} s") from e
    except BatcherClosed as e:
        raise api_error(503, "not_ready", "the server is shutting down") from e
    # outside the timeout: once classified, the audit record is always written, and a
    # client never gets a 503 for a request that was in fact stored (no duplicate on retry);
    # the audit record first, so an evidence copy that fails cannot lose it
    await anyio.to_thread.run_sync(functools.partial(state.store.add_results, records, key_name=key.name))
    if settings.keep_evidence:
        await anyio.to_thread.run_sync(save_evidence, settings.evidence_dir, items, prepared)
    state.metrics.observe_records(records)
    return {"results": records}


async def _classify(request: Request, state: AppState, received_at: str) -> tuple[list[dict], list, list]:
    """Read, decode and classify the upload: ``(records, uploads, prepared images)``."""
    settings = state.settings
    files, form = await read_form(request, settings)
    with state.batcher.expecting(len(files)):  # a batch being formed now waits for these
        items = await read_uploads(files, settings.max_upload_bytes)
        prepared = await anyio.to_thread.run_sync(prepare_all, items, state.classifier, settings,
                                                  limiter=state.decode_limiter, abandon_on_cancel=True)
    if not any(isinstance(p, PreparedImage) for p in prepared):
        for failure in prepared:
            state.metrics.errors.labels(failure.error["reason"]).inc()
        raise image_error_response(prepared[0])
    results = await classify_items(state, prepared)
    records = [build_record(r, received_at=received_at, form=form, lang=form["lang"]) for r in results]
    if form["explain"]:
        await add_explanations(state, records, prepared)
    return records, items, prepared


@router.get("/v1/results/{result_id}", tags=["results"], responses={401: _ERRORS[401], 404: {"description": "no such result"}})
def get_result(result_id: str, lang: str | None = Query(None, pattern="^(en|fr|de|nl)$"),
               key: KeyInfo = Depends(authenticate), state: AppState = Depends(get_state)) -> dict:
    """An earlier result record. Keys with role ``user`` see only their own results."""
    record = None
    if _RESULT_ID.match(result_id):
        record = state.store.get_result(result_id, key_name=None if key.is_admin else key.name)
    if record is None:
        raise api_error(404, "not_found", f"no result with id {result_id!r} for this key")
    return describe(record, lang) if lang else record


@router.get("/v1/results", tags=["results"], responses={401: _ERRORS[401]})
def find_results(sha256: str | None = Query(None, description="SHA-256 of the image bytes (64 hex digits)"),
                 case_id: str | None = Query(None, max_length=200),
                 limit: int = Query(100, ge=1, le=1000),
                 lang: str | None = Query(None, pattern="^(en|fr|de|nl)$"),
                 key: KeyInfo = Depends(authenticate), state: AppState = Depends(get_state)) -> dict:
    """Earlier results for an image (by SHA-256) or a case, newest first."""
    if sha256 is None and case_id is None:
        raise api_error(422, "no_filter", "give sha256=… or case_id=…")
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not _SHA256.match(sha256):
            raise api_error(422, "bad_sha256", "sha256 must be 64 hexadecimal digits")
    records = state.store.find_results(sha256=sha256, case_id=case_id, limit=limit,
                                       key_name=None if key.is_admin else key.name)
    return {"results": [describe(r, lang) if lang else r for r in records]}


@router.get("/v1/labels", tags=["model"])
def labels(state: AppState = Depends(get_state)) -> dict:
    """Every category with names and legal notes in EN/FR/DE/NL, risk tier and whether the model predicts it."""
    model_labels = set(state.classifier.labels)
    categories = [{**c.as_dict(), "in_model": c.id in model_labels} for c in list_categories()]
    uncertain = {"id": UNCERTAIN, "names": {lg: label_name(UNCERTAIN, lg) for lg in LANGUAGES},
                 "legal_notes": dict(UNCERTAIN_NOTE)}
    return {"languages": list(LANGUAGES), "model_labels": state.classifier.labels,
            "uncertain": uncertain, "categories": categories}


@router.get("/v1/model", tags=["model"])
def model(state: AppState = Depends(get_state)) -> dict:
    """The loaded model: name, version, SHA-256, labels, decision thresholds and metrics summary."""
    cfg = state.classifier.config
    return {
        **state.classifier.model_info(),
        "architecture": cfg.architecture, "created": cfg.created, "labels": list(cfg.labels),
        "thresholds": {label: cfg.threshold(label) for label in cfg.labels},
        "temperature": cfg.temperature, "uncertain_below": cfg.uncertain_below,
        "preprocess": cfg.preprocess.to_dict(), "metrics": cfg.metrics, "training_data": cfg.training_data,
    }


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
    return JSONResponse({"ready": True, "model": state.classifier.model_info(),
                         "auth_required": state.settings.requires_key, "version": __version__})


@router.get("/metrics", tags=["ops"], response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics in the text exposition format."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The officers' web page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


# --- app ---------------------------------------------------------------------------------

def create_app(settings: Settings | None = None) -> FastAPI:
    """The wildscan FastAPI app; ``settings`` default to :meth:`Settings.from_env`.

    The model and store are opened by the lifespan, so creating the app is cheap;
    start-up raises :class:`SettingsError` when keys are required and none exists.
    """
    settings = settings or Settings.from_env()
    app_metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = await anyio.to_thread.run_sync(load_state, settings, app_metrics)
        state.explain_limiter = anyio.CapacityLimiter(1)
        state.decode_limiter = anyio.CapacityLimiter(os.cpu_count() or 1)  # more decoders than cores only thrash
        app.state.wildscan = state
        try:
            yield
        finally:
            app.state.wildscan = None
            await anyio.to_thread.run_sync(state.close)

    app = FastAPI(
        title="wildscan", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
        description="Find protected-wildlife products in marketplace photos. Send images to "
        "`POST /v1/classify` with an API key (`Authorization: Bearer KEY` or `X-API-Key`).",
    )
    mount_offline_docs(app)
    app.state.metrics = app_metrics
    app.state.wildscan = None
    app.include_router(router)
    from .galleries_api import router as galleries_router  # here: galleries_api imports this module

    app.include_router(galleries_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=app_metrics)
    return app


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()]
    message = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
    return JSONResponse({"detail": {"reason": "invalid_request", "message": message, "errors": errors}}, 422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail
    if not isinstance(detail, dict):
        reason = re.sub(r"[^a-z]+", "_", str(detail).lower()).strip("_") or "error"
        detail = {"reason": reason, "message": str(detail)}
    return JSONResponse({"detail": detail}, exc.status_code, headers=getattr(exc, "headers", None))

