"""HTTP API: one router module per resource; ``build_routers`` mounts them."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from pelbiot.api import energy, health, ingest_status, live, panels, seed, site
from pelbiot.api.deps import authorize


def build_routers() -> list[APIRouter]:
    # Every /api/v1 route hangs under one router so one dependency guards them all.
    v1 = APIRouter(prefix="/api/v1", dependencies=[Depends(authorize)])
    v1.include_router(panels.router)
    v1.include_router(ingest_status.router)
    v1.include_router(live.router)
    v1.include_router(energy.router)
    v1.include_router(site.router)
    compat = APIRouter(dependencies=[Depends(authorize)])
    compat.include_router(seed.router)
    return [health.router, v1, compat]
