"""The audit log, newest first, filterable."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from pelbiot.api.deps import MAX_ROW_ID, RuntimeDep
from pelbiot.api.timefmt import iso, parse_query_time
from pelbiot.security.audit import AuditQuery

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditEntry(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    target: str | None
    address: str | None
    success: bool
    details: dict[str, Any] | None


@router.get("", response_model=list[AuditEntry], summary="Audit log, newest first")
def audit(
    runtime: RuntimeDep,
    actor: Annotated[str | None, Query(max_length=100)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    target: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[str | None, Query(max_length=64)] = None,
    until: Annotated[str | None, Query(max_length=64)] = None,
    success: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[
        int | None, Query(ge=1, le=MAX_ROW_ID, description="page: ids below this")
    ] = None,
) -> list[AuditEntry]:
    zone = runtime.settings.zone
    now = int(time.time() * 1000)
    query = AuditQuery(
        actor=actor,
        action=action,
        target=target,
        since_ms=parse_query_time(since, zone, name="since", default_ms=0) if since else None,
        until_ms=parse_query_time(until, zone, name="until", default_ms=now) if until else None,
        success=success,
        limit=limit,
        before_id=before_id,
    )
    return [
        AuditEntry(
            id=row["id"],
            at=iso(row["ts_ms"], zone),
            actor=row["actor"],
            action=row["action"],
            target=row["target"],
            address=row["address"],
            success=bool(row["success"]),
            details=row["details"],
        )
        for row in runtime.audit.query(query)
    ]
