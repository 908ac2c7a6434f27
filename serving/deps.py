"""The app's state (loaded once by the lifespan) and the dependencies routes ask for:
``get_state`` and ``authenticate``."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import dataclass, field

import numpy as np
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from vision.runtime import Classifier

from .batcher import MicroBatcher
from .errors import api_error
from .limits import WorkLimit
from .metrics import Metrics
from .settings import Settings, SettingsError, is_loopback
from .store import KeyInfo, Store

log = logging.getLogger(__name__)


@dataclass
class AppState:
    """What the lifespan loads once: settings, model, store, batcher."""

    settings: Settings
    classifier: Classifier
    store: Store
    batcher: MicroBatcher
    metrics: Metrics
    env_keys: dict[bytes, KeyInfo] = field(default_factory=dict)
    # blocking work under limits that hold until the threads finish (serving.limits)
    decode_limit: WorkLimit = field(default_factory=lambda: WorkLimit(os.cpu_count() or 1))
    explain_limit: WorkLimit = field(default_factory=lambda: WorkLimit(1))

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
    batcher = MicroBatcher(
        lambda batch: model_outputs(classifier, batch),
        max_batch=settings.batch_max_size,
        max_wait_ms=settings.batch_max_wait_ms,
        observer=metrics.observe_batch,
    )
    env_keys = {hashlib.sha256(k.encode("utf-8")).digest(): KeyInfo(name) for name, k in settings.api_keys.items()}
    log.info("model %s loaded; serving with db %s", classifier.model_info(), settings.db_path)
    return AppState(settings, classifier, store, batcher, metrics, env_keys)


async def get_state(request: Request) -> AppState:
    """The loaded state; 503 while the model is not loaded."""
    state = getattr(request.app.state, "wildscan", None)
    if state is None:
        raise api_error(503, "not_ready", "the model is still loading")
    return state


# Declared so that the OpenAPI document has security schemes (and /docs an Authorize button).
BEARER = HTTPBearer(auto_error=False, description="an API key from `wildscan keys add NAME`")
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key, as a header")


async def authenticate(
    request: Request,
    state: AppState = Depends(get_state),
    bearer: HTTPAuthorizationCredentials | None = Security(BEARER),
    header_key: str | None = Security(API_KEY_HEADER),
) -> KeyInfo:
    """The caller, from ``Authorization: Bearer KEY`` or ``X-API-Key``; 401 when missing or invalid.

    Runs on the event loop: the lookup is one indexed SQLite read (tens of microseconds).
    """
    if not state.settings.requires_key:
        return local_caller(request)
    key = (bearer.credentials.strip() if bearer else "") or (header_key or "").strip() or None
    if not key:
        raise api_error(
            401, "unauthorized", "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
        )
    info = state.check_key(key)
    if info is None:
        raise api_error(401, "unauthorized", "the API key is not valid or has been revoked")
    return info


def require_admin(key: KeyInfo = Depends(authenticate)) -> KeyInfo:
    """The caller, if it holds an admin key; 403 otherwise (galleries, metrics)."""
    if not key.is_admin:
        raise api_error(403, "forbidden", "this needs an admin key")
    return key


PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def local_caller(request: Request) -> KeyInfo:
    """In keyless demo mode, the caller if it is this machine; 403 for any other peer and for
    requests relayed by a proxy (the app checks this itself, however it was started)."""
    host = request.client.host if request.client else ""
    relayed = any(name in request.headers for name in PROXY_HEADERS)
    if not is_loopback(host) or relayed:
        raise api_error(403, "forbidden", "keyless demo mode only answers this machine directly; ask for an API key")
    return KeyInfo("anonymous", "admin")  # the machine's own user, in a local demo


def model_outputs(classifier: Classifier, batch: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(logits,)`` or ``(logits, embeddings)``: embeddings feed the reference galleries."""
    return tuple(o for o in classifier.run(batch) if o is not None)
