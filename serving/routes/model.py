"""``GET /v1/labels`` and ``GET /v1/model``: what the loaded model knows and how it decides."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from vision.records import UNCERTAIN_NOTE
from vision.taxonomy import LANGUAGES, UNCERTAIN, label_name, list_categories

from ..deps import AppState, get_state

router = APIRouter()


@router.get("/v1/labels", tags=["model"])
def labels(state: AppState = Depends(get_state)) -> dict:
    """Every category with names and legal notes in EN/FR/DE/NL, risk tier and whether the model predicts it."""
    model_labels = set(state.classifier.labels)
    categories = [{**c.as_dict(), "in_model": c.id in model_labels} for c in list_categories()]
    uncertain = {
        "id": UNCERTAIN,
        "names": {lg: label_name(UNCERTAIN, lg) for lg in LANGUAGES},
        "legal_notes": dict(UNCERTAIN_NOTE),
    }
    return {
        "languages": list(LANGUAGES),
        "model_labels": state.classifier.labels,
        "uncertain": uncertain,
        "categories": categories,
    }


@router.get("/v1/model", tags=["model"])
def model(state: AppState = Depends(get_state)) -> dict:
    """The loaded model: name, version, SHA-256, labels, decision thresholds and metrics summary."""
    cfg = state.classifier.config
    return {
        **state.classifier.model_info(),
        "architecture": cfg.architecture,
        "created": cfg.created,
        "labels": list(cfg.labels),
        "thresholds": {label: cfg.threshold(label) for label in cfg.labels},
        "temperature": cfg.temperature,
        "uncertain_below": cfg.uncertain_below,
        "preprocess": cfg.preprocess.to_dict(),
        "metrics": cfg.metrics,
        "training_data": cfg.training_data,
    }
