"""The officers' API and web page: ``create_app(settings)`` returns the FastAPI app.

The model is loaded once, at start-up (lifespan). A classify request is authenticated
before its body is read, each file is read up to the size limit and decoded in a worker
thread (never written to disk under a client's name), the images join the micro-batcher
and the results are appended to the audit store before the answer goes out. Every
refusal is a 4xx with ``{"detail": {"reason": ..., "message": ...}}``.

Layout: :mod:`serving.deps` (state, auth), :mod:`serving.errors`, :mod:`serving.metrics`,
:mod:`serving.middleware`, :mod:`serving.uploads`, :mod:`serving.records` and one module
per route group in :mod:`serving.routes`.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from vision import __version__

from .deps import load_state, preflight
from .errors import http_error, validation_error
from .limits import limit_malloc_arenas
from .metrics import Metrics, MetricsMiddleware
from .middleware import BodyLimitMiddleware, SecurityHeadersMiddleware
from .openapi import openapi_schema
from .routes import account, classify, galleries, model, ops, results
from .routes.ops import STATIC_DIR
from .settings import Settings

__all__ = ["create_app", "preflight"]


def create_app(settings: Settings | None = None) -> FastAPI:
    """The wildscan FastAPI app; ``settings`` default to :meth:`Settings.from_env`.

    The model and store are opened by the lifespan, so creating the app is cheap;
    start-up raises :class:`SettingsError` when keys are required and none exists.
    """
    settings = settings or Settings.from_env()
    limit_malloc_arenas(settings.malloc_arenas)
    app_metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = await anyio.to_thread.run_sync(load_state, settings, app_metrics)
        app.state.wildscan = state
        try:
            yield
        finally:
            app.state.wildscan = None
            await anyio.to_thread.run_sync(state.close)

    app = FastAPI(
        title="wildscan",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Find protected-wildlife products in marketplace photos. Send images to "
        "`POST /v1/classify` with an API key (`Authorization: Bearer KEY` or `X-API-Key`).",
    )
    mount_offline_docs(app)
    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]  # the real error bodies
    app.state.metrics = app_metrics
    app.state.wildscan = None
    for routes in (classify, results, model, galleries, account, ops):
        app.include_router(routes.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # Starlette types handlers as taking Exception; these take the subclass they are registered for
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=app_metrics)
    return app


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
            openapi_url=app.openapi_url or "/openapi.json",
            title="wildscan API",
            swagger_js_url="/docs-static/swagger-ui-bundle.js",
            swagger_css_url="/docs-static/swagger-ui.css",
            swagger_favicon_url="/docs-static/favicon-32x32.png",
        )
