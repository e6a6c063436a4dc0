"""Liveness and readiness: database, broker, writer, uptime, version."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from pelbiot.api.deps import RuntimeDep

router = APIRouter(tags=["health"])


def _health(runtime: RuntimeDep) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        runtime.store.ping()
        checks["database"] = {"ok": True}
    except SQLAlchemyError as exc:
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    if runtime.ingest is not None:
        checks["broker"] = {"ok": runtime.ingest.connected, "url": runtime.ingest.broker}
    else:
        checks["broker"] = {"ok": True, "note": "no broker configured (HTTP ingest only)"}
    checks["writer"] = {"ok": runtime.stats.db_ok, "queue_depth": runtime.writer.depth}
    ok = all(c["ok"] for c in checks.values())
    body = {
        "status": "ok" if ok else "degraded",
        "version": runtime.version,
        "uptime_s": round(time.time() - runtime.started, 1),
        "checks": checks,
    }
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/health", summary="Health of the process and its dependencies")
def health(runtime: RuntimeDep) -> JSONResponse:
    return _health(runtime)


@router.get("/api/health", summary="Health (same as /health)")
def api_health(runtime: RuntimeDep) -> JSONResponse:
    return _health(runtime)
