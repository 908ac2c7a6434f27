"""Reading a classify request: the multipart form, its files up to the size limit, decoding
in a worker thread, and (when the setting asks) evidence copies named by SHA-256."""

from __future__ import annotations

import os
import re
import tempfile
import threading
from pathlib import Path

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from vision.errors import ImageError, mib
from vision.formats import EXTENSIONS
from vision.preprocess import claimed_format
from vision.records import Result
from vision.runtime import Classifier, PreparedImage, prepare_image
from vision.taxonomy import LANGUAGES

from .errors import BodyTooLarge, api_error
from .limits import check
from .settings import Settings

FORM_LIMITS = {"source_url": 2048, "case_id": 200, "note": 2000}


def display_name(filename: str | None, index: int) -> str:
    """A client's file name reduced to a label (no directories, no control characters, short)."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()[:200]
    return name or f"upload-{index + 1}"


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
    out: list[tuple[str, bytes | ImageError]] = []
    for i, upload in enumerate(files):
        data = await upload.read(limit + 1)
        name = display_name(upload.filename, i)
        if len(data) > limit:
            out.append((name, ImageError(f"the file is larger than the {mib(limit)} limit", "too_large")))
        else:
            out.append((name, data))
    return out


def prepare_all(
    items: list[tuple[str, bytes | ImageError]],
    classifier: Classifier,
    settings: Settings,
    cancelled: threading.Event | None = None,
) -> list:
    """Decode and preprocess every upload (in a worker thread): PreparedImage or failure Result.
    Stops between files (:class:`serving.limits.Cancelled`) once ``cancelled`` is set."""
    out: list[PreparedImage | Result] = []
    for name, data in items:
        check(cancelled)
        if isinstance(data, ImageError):
            out.append(Result.failure(name, data))
        else:
            out.append(
                prepare_image(
                    name,
                    data,
                    classifier.preprocess,
                    max_pixels=settings.max_pixels,
                    max_decoded_bytes=settings.max_decoded_bytes,
                    max_bytes=settings.max_upload_bytes,
                )
            )
    return out


def save_evidence(folder: Path, items: list[tuple[str, bytes | ImageError]], prepared: list) -> None:
    """Keep a copy of each decoded upload as ``folder/ab/<sha256>.<ext>`` (client names never used)."""
    for (_, data), item in zip(items, prepared):
        if not isinstance(item, PreparedImage) or not isinstance(data, bytes):
            continue
        target = folder / item.sha256[:2] / (item.sha256 + _extension(data))
        if target.exists():
            continue
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # private: the photos may be evidence
        target.parent.mkdir(exist_ok=True, mode=0o700)
        fd, partial = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
        with os.fdopen(fd, "wb") as f:  # a unique name: concurrent uploads of one photo never collide
            f.write(data)
        os.replace(partial, target)


def _extension(data: bytes) -> str:
    return EXTENSIONS.get(claimed_format(data) or "", ".img")
