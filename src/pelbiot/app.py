"""``create_app(settings)``: the FastAPI app, its lifespan task group and the one error handler."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from pelbiot import __version__
from pelbiot.api import build_routers
from pelbiot.api.deps import document_security
from pelbiot.errors import PelbiotError, RateLimitedError, UnauthorizedError
from pelbiot.runtime import Runtime
from pelbiot.security.middleware import BodySizeLimit, SecurityHeaders
from pelbiot.settings import Settings

logger = logging.getLogger(__name__)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def create_app(settings: Settings, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the app. The runtime (database, writer, MQTT ingest) starts with the lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime if runtime is not None else await asyncio.to_thread(Runtime.build, settings)
        app.state.runtime = rt
        ready, stop = asyncio.Event(), asyncio.Event()
        async with asyncio.TaskGroup() as group:
            group.create_task(rt.run(ready, stop), name="runtime")
            await ready.wait()
            logger.info("PELBIOT %s ready", __version__)
            try:
                yield
            finally:
                stop.set()

    app = FastAPI(
        title="PELBIOT",
        version=__version__,
        description="Real-time monitoring of electrical panels and transformers.",
        lifespan=lifespan,
        docs_url=None,  # served below from our own copy of Swagger UI: no CDN
    )

    @app.get("/docs", include_in_schema=False)
    def _docs() -> HTMLResponse:
        local = (STATIC_DIR / "swagger" / "swagger-ui-bundle.js").exists()
        if not local:
            return HTMLResponse(
                "<h1>PELBIOT API</h1><p>Swagger UI is not built (run <code>make web</code>). "
                "The spec is at <a href='/openapi.json'>/openapi.json</a>.</p>",
                status_code=503,
            )
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="PELBIOT API",
            swagger_js_url="/swagger/swagger-ui-bundle.js",
            swagger_css_url="/swagger/swagger-ui.css",
            swagger_favicon_url="/icon.svg",
        )

    for router in build_routers():
        app.include_router(router)

    def openapi() -> dict[str, Any]:
        # FastAPI's document, plus the credentials the access gate accepts and, per operation,
        # whether it needs them: derived from permissions.ROUTES, as the gate decides.
        if app.openapi_schema is None:
            app.openapi_schema = document_security(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented extension point
    _install_error_handlers(app)
    _mount_dashboard(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-CSRF-Token"],
        )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(SecurityHeaders)
    return app


STATIC_DIR = Path(__file__).resolve().parent / "static"


def _mount_dashboard(app: FastAPI) -> None:
    """Serve the built dashboard (``make web``) at /; say how to build it when it is missing."""
    if (STATIC_DIR / "index.html").exists():
        app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="dashboard")
        return

    @app.get("/", include_in_schema=False)
    def _not_built() -> HTMLResponse:
        return HTMLResponse(
            "<h1>PELBIOT</h1><p>The dashboard is not built. Run <code>make web</code> "
            "(or <code>make demo</code>). The API is at <a href='/docs'>/docs</a>.</p>",
            status_code=503,
        )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PelbiotError)
    async def _pelbiot_error(_request: Request, exc: PelbiotError) -> JSONResponse:
        if exc.status_code >= 500:
            logger.error("%s: %s", exc.code, exc.message)
        headers = None
        if isinstance(exc, RateLimitedError):
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
        elif isinstance(exc, UnauthorizedError):
            headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details),
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse(
            error_body("invalid_input", "request is not valid", details), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return JSONResponse(error_body("internal", "internal server error"), status_code=500)
