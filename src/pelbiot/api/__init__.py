"""HTTP API: one router module per resource; ``build_routers`` mounts them."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from pelbiot.api import (
    api_keys,
    audit,
    auth,
    devices,
    energy,
    health,
    http_ingest,
    ingest_status,
    live,
    panels,
    seed,
    site,
    users,
)
from pelbiot.api.deps import authorize


def build_routers() -> list[APIRouter]:
    # Every API route hangs under a router guarded by `authorize`, the one access gate.
    v1 = APIRouter(prefix="/api/v1", dependencies=[Depends(authorize)])
    for module in (
        auth,
        panels,
        ingest_status,
        http_ingest,
        live,
        energy,
        site,
        users,
        api_keys,
        devices,
        audit,
    ):
        v1.include_router(module.router)
    compat = APIRouter(dependencies=[Depends(authorize)])
    compat.include_router(seed.router)
    return [health.router, v1, compat]
