"""The inference core's settings: every ``WILDSCAN_*`` variable that ``vision`` reads.

=================== ====================================================== ==========================
variable            meaning                                                default
=================== ====================================================== ==========================
WILDSCAN_MODEL      bundle name or path used when none is given            the shipped model
WILDSCAN_MODELS_DIR folder of model bundles (``NAME.onnx`` + ``NAME.json``) ``models/``, see :func:`models_dir`
WILDSCAN_GALLERIES  reference-gallery database                             ``galleries.db`` beside the model
WILDSCAN_PHOTOS     the shared training photos (for gallery negatives)     ``../shared/data``
WILDSCAN_RUNTIME    ``auto``, ``onnxruntime``, ``openvino[-fp32|-bf16]``   ``auto`` (:mod:`vision.engines`)
=================== ====================================================== ==========================

The server's own settings (keys, limits, its ``var/`` folder) are in :mod:`serving.settings`.
``WILDSCAN_DATA`` is still read as the old name of ``WILDSCAN_PHOTOS``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "efficientnet_lite0.wildtrade_v1"
GALLERY_DB_NAME = "galleries.db"


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def models_dir() -> Path:
    """Where bundles are looked up: ``$WILDSCAN_MODELS_DIR``, else the checkout's ``models/``,
    else ``share/wildscan/models`` of the Python environment (where a wheel installs them)."""
    env = _env("WILDSCAN_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    checkout = REPO / "models"
    return checkout if checkout.is_dir() else Path(sys.prefix) / "share" / "wildscan" / "models"


def default_model() -> str:
    """The model used when none is named: ``$WILDSCAN_MODEL`` or the shipped one."""
    return _env("WILDSCAN_MODEL") or DEFAULT_MODEL


def galleries_path() -> Path | None:
    """``$WILDSCAN_GALLERIES``, when set (else galleries live beside their model)."""
    env = _env("WILDSCAN_GALLERIES")
    return Path(env).expanduser() if env else None


def photos_dir() -> Path:
    """The shared photos: ``$WILDSCAN_PHOTOS`` (old name ``$WILDSCAN_DATA``) or ``../shared/data``."""
    env = _env("WILDSCAN_PHOTOS") or _env("WILDSCAN_DATA")
    return Path(env).expanduser() if env else REPO.parent / "shared" / "data"


def runtime() -> str:
    """``$WILDSCAN_RUNTIME`` (``auto``, ``onnxruntime``, ``openvino``), else ``auto``."""
    return (_env("WILDSCAN_RUNTIME") or "auto").lower()
