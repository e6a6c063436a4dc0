"""Site facts the dashboard needs at start: time zone, version, topic prefix."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from pelbiot.api.deps import RuntimeDep

router = APIRouter(tags=["site"])


class Site(BaseModel):
    timezone: str
    version: str
    topic_prefix: str


@router.get("/site", response_model=Site, summary="Site settings for clients")
def site(runtime: RuntimeDep) -> Site:
    s = runtime.settings
    return Site(timezone=s.timezone, version=runtime.version, topic_prefix=s.topic_prefix)
