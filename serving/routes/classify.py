"""``POST /v1/classify``: photos in, one audited result record per photo out."""

from __future__ import annotations

import asyncio
import functools
import threading

import anyio
from fastapi import APIRouter, Depends, Request

from vision.records import Result, utc_now
from vision.runtime import PreparedImage
from vision.taxonomy import LANGUAGES

from ..batcher import BatcherClosed
from ..deps import AppState, authenticate, get_state
from ..errors import ERRORS, api_error, image_error_response
from ..explain import explain as explain_image
from ..limits import check
from ..records import build_record
from ..store import KeyInfo
from ..uploads import prepare_all, read_form, read_uploads, save_evidence

router = APIRouter()

CLASSIFY_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["files"],
                "properties": {
                    "files": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "one or more images (JPEG, PNG, WebP, GIF, BMP, TIFF); repeat the field",
                    },
                    "source_url": {
                        "type": "string",
                        "maxLength": 2048,
                        "description": "the ad the photo came from",
                        "example": "https://marketplace.example/ad/12345",
                    },
                    "case_id": {"type": "string", "maxLength": 200, "example": "DE-ZOLL-2025-0042"},
                    "note": {"type": "string", "maxLength": 2000, "example": "seller claims 'antique bone'"},
                    "lang": {
                        "type": "string",
                        "enum": list(LANGUAGES),
                        "default": "en",
                        "description": "language of label_name and legal_note",
                    },
                    "explain": {
                        "type": "string",
                        "enum": ["true", "false", "1", "0", "yes", "no", "on", "off"],
                        "default": "false",
                        "description": "add an occlusion heatmap (about 50 extra model runs per image)",
                    },
                },
            }
        }
    },
}
RECORD_EXAMPLE = {
    "result_id": "5f0c3b1e9a7d4c2b8e6f1a0d3c5b7e9f",
    "received_at": "2025-05-14T09:31:02.117Z",
    "path": "ad-12345-1.jpg",
    "sha256": "9f2c…",
    "pdq": "e1c3…",
    "width": 1600,
    "height": 1200,
    "label": "ivory",
    "score": 0.92,
    "flagged": True,
    "scores": {"ivory": 0.92, "ceramic_porcelain": 0.05},
    "model": {"name": "efficientnet_lite0.wildtrade_v1", "version": "1.0.0", "sha256": "4b1d…"},
    "error": None,
    "lang": "en",
    "label_name": "Elephant ivory (carving or object)",
    "legal_note": "Typical traded species: CITES Appendix I/II, EU Annex A. …",
    "source_url": "https://marketplace.example/ad/12345",
    "case_id": "DE-ZOLL-2025-0042",
    "note": None,
}


@router.post(
    "/v1/classify",
    tags=["classify"],
    openapi_extra={"requestBody": CLASSIFY_BODY},
    responses={200: {"content": {"application/json": {"example": {"results": [RECORD_EXAMPLE]}}}}, **ERRORS},
)
async def classify(
    request: Request, key: KeyInfo = Depends(authenticate), state: AppState = Depends(get_state)
) -> dict:
    """Classify one or more uploaded images; one result record per image, in upload order.

    When no file is usable the request fails with the first file's reason (413, 415 or
    422); otherwise unusable files come back as records with an ``error``. Every record,
    refused files included, is stored in the audit database before the answer is sent.
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
    if not any(isinstance(p, PreparedImage) for p in prepared):  # audited, then refused
        state.metrics.observe_records(records)
        raise image_error_response(prepared[0])
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
        prepared = await state.decode_limit.run(functools.partial(prepare_all, items, state.classifier, settings))
    results = await classify_items(state, prepared)
    records = [build_record(r, received_at=received_at, form=form, lang=form["lang"]) for r in results]
    if form["explain"]:
        await add_explanations(state, records, prepared)
    return records, items, prepared


async def classify_items(state: AppState, prepared: list) -> list[Result]:
    """Run the usable images through the batcher; failures keep their place in the order."""
    ready = [p for p in prepared if isinstance(p, PreparedImage)]
    if not ready:
        return state.classifier.assemble(prepared, None)
    logits, *rest = await state.batcher.submit([p.tensor for p in ready])  # whole photos, batched
    if state.classifier.preprocess.crops:  # the crop cascade, for the few photos that need it
        logits = await anyio.to_thread.run_sync(state.classifier.with_crops, ready, logits)
    return state.classifier.assemble(prepared, logits, *rest)


async def add_explanations(state: AppState, records: list[dict], prepared: list) -> None:
    """Attach an occlusion heatmap to each classified record (one at a time, off the loop)."""
    for record, item in zip(records, prepared):
        if not isinstance(item, PreparedImage):
            continue
        explanation = await state.explain_limit.run(
            functools.partial(
                _explain,
                state.classifier,
                item.tensor,
                record["label"],
                width=item.width,
                height=item.height,
                grid=state.settings.explain_grid,
                source=item.source,
            )
        )
        record["explanation"] = explanation.as_dict()


def _explain(classifier, tensor, label, cancelled: threading.Event, **kwargs):
    check(cancelled)  # the request gave up while this waited: nobody would read the heatmap
    return explain_image(classifier, tensor, label, **kwargs)
