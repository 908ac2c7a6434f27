"""One registry, one factory: ``list_models()`` and ``create_model(name)``.

Bundles live in ``models/`` at the repository root (the shipped model), or in the folder
named by ``WILDSCAN_MODELS_DIR`` (:mod:`vision.settings`). Names say what a model is: ``ARCH.TAG``, e.g.
``efficientnet_lite0.wildtrade_v1``.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import BundleError
from .settings import DEFAULT_MODEL, default_model, models_dir

if TYPE_CHECKING:
    from .runtime import Classifier

__all__ = ["DEFAULT_MODEL", "create_model", "default_model", "list_models", "models_dir", "resolve_model"]


def list_models(pattern: str = "*") -> list[str]:
    """Names of the bundles (ONNX + JSON present) in :func:`models_dir` matching ``pattern``."""
    folder = models_dir()
    if not folder.is_dir():
        return []
    names = [p.stem for p in folder.glob("*.onnx") if p.with_suffix(".json").is_file()]
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def resolve_model(name_or_path: str | os.PathLike | None = None) -> Path:
    """A bundle's path (stem) from a registered name or a path to its ``.onnx``/``.json``."""
    target = str(name_or_path) if name_or_path else default_model()
    candidate = Path(target)
    if candidate.suffix in (".onnx", ".json") or candidate.parent != Path("."):
        return candidate
    if target in list_models():
        return models_dir() / target
    known = ", ".join(list_models()) or "none"
    raise BundleError(f"unknown model {target!r}; available in {models_dir()}: {known}", "bundle_not_found")


def create_model(
    name_or_path: str | os.PathLike | None = None,
    *,
    intra_threads: int = 1,
    inter_threads: int = 1,
    max_batch: int = 16,
    galleries="auto",
    runtime: str | None = None,
) -> Classifier:
    """Load a bundle by name or path and return a ready :class:`vision.runtime.Classifier`.

    ``galleries``: ``"auto"`` matches against the reference galleries beside the model
    when they exist, a path uses that gallery database, ``None`` the trained head alone.
    ``runtime``: ``auto``, ``onnxruntime`` or ``openvino`` (default: ``$WILDSCAN_RUNTIME``).
    """
    from .runtime import Classifier

    return Classifier.from_path(
        resolve_model(name_or_path),
        intra_threads=intra_threads,
        inter_threads=inter_threads,
        max_batch=max_batch,
        galleries=galleries,
        runtime=runtime,
    )
