"""``/v1/galleries``: manage reference galleries over HTTP (admin keys only).

    GET    /v1/galleries                     every gallery of the loaded model, and the negative pool
    GET    /v1/galleries/export              all (or ?category=...) galleries as a shareable JSON file
    POST   /v1/galleries/import              merge an exported file (JSON body; ?replace=true to replace)
    GET    /v1/galleries/{category}          one gallery: version, threshold, reference hashes
    POST   /v1/galleries/{category}          add photos (multipart field ``files``, repeatable)
    DELETE /v1/galleries/{category}          remove all photos, or ?sha256=...&sha256=... only those

Changes take effect on the next classify request (the classifier reloads galleries when the
database changes). Photos are embedded and dropped: only hashes and embeddings are stored.
The app includes this router from :func:`serving.app.create_app`.
"""

from __future__ import annotations

import json

import anyio
from fastapi import APIRouter, Depends, Query, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from vision.gallery import GalleryError, GalleryStore, check_category
from vision.gallery_photos import embed_photos, ensure_negative_pool, open_for

from ..deps import AppState, get_state, require_admin
from ..errors import BodyTooLarge, api_error, status_of
from ..store import KeyInfo
from ..uploads import read_uploads

MAX_GALLERY_FILES = 64

router = APIRouter(prefix="/v1/galleries", tags=["galleries"])


def gallery_store(state: AppState) -> GalleryStore:
    """The loaded classifier's gallery store, opened (and attached) on first use."""
    classifier = state.classifier
    if classifier.galleries is None:
        if not classifier.has_embedding:
            raise api_error(409, "no_embedding", "the loaded model has no embedding output, so it cannot use galleries")
        classifier.use_galleries(open_for(classifier))
    store = classifier.galleries
    if store is None:  # pragma: no cover - use_galleries just attached one
        raise api_error(503, "not_ready", "the gallery store could not be opened")
    return store


def gallery_error(e: GalleryError):
    """The 4xx for a :class:`GalleryError`."""
    return api_error(status_of(e.reason), e.reason, str(e))


def known_category(category: str) -> str:
    """``category`` if it is a taxonomy id; 404 naming the known ids otherwise."""
    try:
        return check_category(category)
    except GalleryError as e:
        raise gallery_error(e) from e


async def run_store(fn, *args, **kwargs):
    """Call a store operation in a worker thread, turning :class:`GalleryError` into a 4xx."""
    try:
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
    except GalleryError as e:
        raise gallery_error(e) from e


@router.get("")
async def list_galleries(_: KeyInfo = Depends(require_admin), state: AppState = Depends(get_state)) -> dict:
    """Every gallery of the loaded model (version, size, threshold, calibration) and the negative pool."""
    store = gallery_store(state)
    galleries = await run_store(store.list)
    return {
        "model": state.classifier.model_info(),
        "negative_pool": await run_store(store.negative_pool_info),
        "galleries": [g.as_dict() for g in galleries],
    }


@router.get("/export")
async def export_galleries(
    category: list[str] | None = Query(None), _: KeyInfo = Depends(require_admin), state: AppState = Depends(get_state)
) -> dict:
    """The galleries (embeddings, hashes, versions, calibration; no photos) as an importable JSON file."""
    store = gallery_store(state)
    return await run_store(store.export_dict, category)


@router.post("/import")
async def import_galleries(
    request: Request, replace: bool = False, _: KeyInfo = Depends(require_admin), state: AppState = Depends(get_state)
) -> dict:
    """Merge (or replace) galleries from an exported JSON file sent as the request body."""
    try:
        data = json.loads(await request.body())
    except ValueError as e:
        raise api_error(422, "bad_gallery_file", f"the body is not JSON: {e}") from e
    store = gallery_store(state)
    infos = await run_store(store.import_dict, data, replace=replace)
    return {"galleries": [i.as_dict() for i in infos]}


@router.get("/{category}")
async def get_gallery(category: str, _: KeyInfo = Depends(require_admin), state: AppState = Depends(get_state)) -> dict:
    """One gallery: version, threshold and calibration, and its reference photos' hashes."""
    category = known_category(category)
    store = gallery_store(state)
    info = await run_store(store.info, category)
    if info is None:
        raise api_error(404, "not_found", f"there is no {category!r} gallery for the loaded model")
    refs = await run_store(store.references, category)
    return {
        **info.as_dict(),
        "photos": [{"sha256": r.sha256, "added_by": r.added_by, "added_at": r.added_at} for r in refs],
    }


@router.post("/{category}")
async def add_photos(
    category: str, request: Request, key: KeyInfo = Depends(require_admin), state: AppState = Depends(get_state)
) -> dict:
    """Add example photos (multipart field ``files``) to a category's gallery; the caller's key name is recorded."""
    category = known_category(category)
    files = await read_gallery_form(request)
    items = await read_uploads(files, state.settings.max_upload_bytes)
    usable = [(name, data) for name, data in items if isinstance(data, bytes)]
    failures = [
        {"file": name, "reason": data.reason, "message": str(data)}
        for name, data in items
        if not isinstance(data, bytes)
    ]
    store = gallery_store(state)
    await run_store(ensure_negative_pool, store, state.classifier)
    done = await run_store(embed_photos, state.classifier, usable)
    failures += [{"file": name, "reason": "unusable", "message": message} for name, message in done.failures]
    if not done.shas:
        raise api_error(422, "no_photos", "none of the files is a usable image", failures=failures)
    info = await run_store(store.add, category, done.shas, done.embeddings, added_by=key.name)
    return {"gallery": info.as_dict(), "added": done.shas, "failures": failures}


@router.delete("/{category}")
async def remove_photos(
    category: str,
    sha256: list[str] | None = Query(None),
    _: KeyInfo = Depends(require_admin),
    state: AppState = Depends(get_state),
) -> dict:
    """Remove the named photos (``?sha256=``, repeatable) or all photos of a gallery; its version rises."""
    category = known_category(category)
    store = gallery_store(state)
    info = await run_store(store.remove, category, sha256)
    return {"gallery": info.as_dict()}


async def read_gallery_form(request: Request) -> list[UploadFile]:
    """The uploaded files of a gallery request; 4xx for a malformed form or no files."""
    try:
        form = await request.form(max_files=MAX_GALLERY_FILES, max_fields=5, max_part_size=64 * 1024)
    except StarletteHTTPException as e:
        if isinstance(e, BodyTooLarge):
            raise
        raise api_error(
            400, "bad_form", f"the multipart form could not be read (at most {MAX_GALLERY_FILES} files): {e.detail}"
        ) from e
    files = [v for k, v in form.multi_items() if k == "files" and isinstance(v, UploadFile)]
    if not files:
        raise api_error(422, "no_files", "send one or more images in the multipart field 'files'")
    return files
