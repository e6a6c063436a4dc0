"""Panels: registry CRUD, latest values, and history (raw or downsampled)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from pelbiot.api.deps import MAX_INT64, MaybePrincipalDep, RuntimeDep, client_address
from pelbiot.api.readings_stream import ReadingsQuery, readings_response
from pelbiot.api.timefmt import iso, parse_query_time
from pelbiot.decode import metrics_catalog
from pelbiot.errors import ForbiddenError, InvalidInputError, NotFoundError
from pelbiot.security.permissions import Principal

router = APIRouter(tags=["panels"])

PanelId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$", max_length=64)]
MAX_RAW_LIMIT = 100_000
MAX_POINTS = 10_000


class PanelFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    region: str | None = Field(None, max_length=100)
    location: str | None = Field(None, max_length=200)
    phases: Literal[1, 3] | None = Field(None, description="1 or 3")
    nominal_voltage: float | None = Field(None, gt=0, le=100_000, description="V (phase-neutral)")
    rated_current: float | None = Field(None, gt=0, le=100_000, description="A")
    kva_rating: float | None = Field(None, gt=0, le=1_000_000, description="transformer kVA")
    notes: str | None = Field(None, max_length=5000)


class PanelCreate(PanelFields):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$", description="topic panel id")


class PanelUpdate(PanelFields):
    pass


class MetricInfo(BaseModel):
    metric: str
    known: bool
    unit: str | None


class PanelPublic(BaseModel):
    id: str
    name: str
    region: str | None
    location: str | None
    phases: int
    nominal_voltage: float | None
    rated_current: float | None
    kva_rating: float | None
    notes: str | None
    created_at: str
    updated_at: str
    last_seen: str | None
    metrics: list[MetricInfo] | None = None


class PanelList(BaseModel):
    items: list[PanelPublic]
    total: int
    limit: int
    offset: int


class LatestValue(BaseModel):
    value: float
    ts: str
    unit: str | None
    age_s: float


class PanelLatest(BaseModel):
    panel_id: str
    values: dict[str, LatestValue]


class Point(BaseModel):
    ts: str
    value: float = Field(description="the value, or the mean of a downsampled bucket")
    min: float | None = None
    max: float | None = None
    count: int | None = None


class Series(BaseModel):
    metric: str
    unit: str | None
    known: bool
    points: list[Point]


class ReadingsPage(BaseModel):
    """The shape of a readings answer (written by ``readings_stream.py``)."""

    panel_id: str
    start: str
    end: str
    downsampled: bool
    bucket_ms: int | None
    series: list[Series]
    next_after: int | None = Field(
        None, description="more raw points remain: repeat the query with after=<this value>"
    )
    capped: bool = Field(
        False,
        description="PELBIOT_READINGS_MAX_POINTS made the page shorter or the buckets wider",
    )


def require_visible(runtime: RuntimeDep, principal: Principal | None, panel_id: str) -> None:
    """404 for a panel that does not exist or that the caller's regions do not include (the
    same answer, so a scoped caller cannot probe for panels elsewhere)."""
    runtime.store.require_panel(panel_id)
    if not runtime.directory.visible(principal, panel_id):
        raise NotFoundError(f"panel {panel_id!r} not found")


def _actor(principal: Principal | None) -> str:
    return principal.name if principal else "anonymous"


def _public(runtime: RuntimeDep, row: dict[str, Any]) -> PanelPublic:
    zone = runtime.settings.zone
    metrics = row.get("metrics")
    return PanelPublic(
        id=row["id"],
        name=row["name"],
        region=row["region"],
        location=row["location"],
        phases=row["phases"],
        nominal_voltage=row["nominal_voltage"],
        rated_current=row["rated_current"],
        kva_rating=row["kva_rating"],
        notes=row["notes"],
        created_at=iso(row["created_ms"], zone),
        updated_at=iso(row["updated_ms"], zone),
        last_seen=iso(row["last_seen_ms"], zone) if row.get("last_seen_ms") else None,
        metrics=None
        if metrics is None
        else [
            MetricInfo(
                metric=m["metric"], known=m["known"], unit=metrics_catalog.unit_of(m["metric"])
            )
            for m in metrics
        ],
    )


@router.get("/panels", response_model=PanelList, summary="List panels")
def list_panels(
    runtime: RuntimeDep,
    principal: MaybePrincipalDep,
    region: Annotated[str | None, Query(max_length=100)] = None,
    q: Annotated[str | None, Query(max_length=100, description="search id, name, location")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    offset: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0,
) -> PanelList:
    rows, total = runtime.store.list_panels(
        region=region,
        search=q,
        limit=limit,
        offset=offset,
        only_regions=principal.regions if principal else None,
        only_panel=principal.panel_id if principal else None,
    )
    return PanelList(
        items=[_public(runtime, r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.post(
    "/panels",
    response_model=PanelPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Register a panel",
)
def create_panel(
    request: Request, runtime: RuntimeDep, principal: MaybePrincipalDep, body: PanelCreate
) -> PanelPublic:
    fields = body.model_dump(exclude={"id"}, exclude_none=True)
    if principal is not None and principal.panel_id not in (None, body.id):
        raise ForbiddenError("this key is limited to one panel and may not create others")
    _check_region_change(principal, fields.get("region"))
    panel = runtime.store.create_panel(
        body.id,
        fields,
        max_panels=runtime.settings.max_panels,
        audit=lambda conn, _before: runtime.audit.record(
            "panel.create",
            actor=_actor(principal),
            target=body.id,
            address=client_address(request),
            details=fields,
            conn=conn,
        ),
    )
    return _public(runtime, panel)


def _check_region_change(principal: Principal | None, region: str | None) -> None:
    if principal is not None and principal.regions is not None and region not in principal.regions:
        raise ForbiddenError("you may only assign panels to your own regions")


@router.get("/panels/{panel_id}", response_model=PanelPublic, summary="One panel")
def get_panel(runtime: RuntimeDep, principal: MaybePrincipalDep, panel_id: PanelId) -> PanelPublic:
    require_visible(runtime, principal, panel_id)
    return _public(runtime, runtime.store.get_panel(panel_id))


@router.patch("/panels/{panel_id}", response_model=PanelPublic, summary="Edit a panel")
def update_panel(
    request: Request,
    runtime: RuntimeDep,
    principal: MaybePrincipalDep,
    panel_id: PanelId,
    body: PanelUpdate,
) -> PanelPublic:
    require_visible(runtime, principal, panel_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("name", "") is None or changes.get("phases", 3) is None:
        raise InvalidInputError("name and phases cannot be cleared")
    if "region" in changes:
        _check_region_change(principal, changes["region"])
    panel = runtime.store.update_panel(
        panel_id,
        changes,
        audit=lambda conn, before: runtime.audit.record(
            "panel.update",
            actor=_actor(principal),
            target=panel_id,
            address=client_address(request),
            details={k: {"from": before.get(k), "to": v} for k, v in changes.items()},
            conn=conn,
        ),
    )
    return _public(runtime, panel)


@router.delete(
    "/panels/{panel_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a panel and all its readings",
)
def delete_panel(
    request: Request, runtime: RuntimeDep, principal: MaybePrincipalDep, panel_id: PanelId
) -> Response:
    require_visible(runtime, principal, panel_id)
    runtime.store.delete_panel(
        panel_id,
        audit=lambda conn, _before: runtime.audit.record(
            "panel.delete",
            actor=_actor(principal),
            target=panel_id,
            address=client_address(request),
            conn=conn,
        ),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _latest_values(
    runtime: RuntimeDep, values: dict[str, tuple[int, float]]
) -> dict[str, LatestValue]:
    zone = runtime.settings.zone
    now_ms = time.time() * 1000
    return {
        metric: LatestValue(
            value=value,
            ts=iso(ts, zone),
            unit=metrics_catalog.unit_of(metric),
            age_s=round(max(0.0, now_ms - ts) / 1000, 3),
        )
        for metric, (ts, value) in sorted(values.items())
    }


@router.get("/panels/{panel_id}/latest", response_model=PanelLatest, summary="Latest values")
def panel_latest(
    runtime: RuntimeDep, principal: MaybePrincipalDep, panel_id: PanelId
) -> PanelLatest:
    require_visible(runtime, principal, panel_id)
    values = runtime.store.latest(panel_id).get(panel_id, {})
    return PanelLatest(panel_id=panel_id, values=_latest_values(runtime, values))


@router.get("/latest", response_model=list[PanelLatest], summary="Latest values of all panels")
def all_latest(runtime: RuntimeDep, principal: MaybePrincipalDep) -> list[PanelLatest]:
    latest = {
        pid: values
        for pid, values in runtime.store.latest().items()
        if runtime.directory.visible(principal, pid)
    }
    return [
        PanelLatest(panel_id=pid, values=_latest_values(runtime, values))
        for pid, values in sorted(latest.items())
    ]


@router.get(
    "/panels/{panel_id}/readings",
    response_model=None,
    responses={200: {"model": ReadingsPage, "description": "The page, streamed"}},
    summary="History of one or more metrics",
    description="Raw points (paged with `after`) or, with `max_points`, at most that many "
    "buckets per series, each keeping min, max, mean and count. `start`/`end` accept ISO 8601 "
    "(naive = site time) or epoch seconds/milliseconds; default: the last 24 hours. One answer "
    "holds at most PELBIOT_READINGS_MAX_POINTS points (all metrics together): a raw page then "
    "ends earlier (`next_after`), a downsampled one gets wider buckets; both say `capped`. "
    "More than PELBIOT_READINGS_MAX_METRICS metrics: 422.",
)
def readings(
    runtime: RuntimeDep,
    principal: MaybePrincipalDep,
    panel_id: PanelId,
    metric: Annotated[list[str] | None, Query(max_length=64)] = None,
    start: Annotated[str | None, Query(max_length=64)] = None,
    end: Annotated[str | None, Query(max_length=64)] = None,
    max_points: Annotated[int | None, Query(ge=2, le=MAX_POINTS)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RAW_LIMIT)] = 10_000,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_INT64 - 1, description="epoch ms cursor from next_after")
    ] = None,
) -> StreamingResponse:
    zone = runtime.settings.zone
    now_ms = int(time.time() * 1000)
    end_ms = parse_query_time(end, zone, name="end", default_ms=now_ms + 1)
    start_ms = parse_query_time(start, zone, name="start", default_ms=end_ms - 86_400_000)
    if start_ms >= end_ms:
        raise InvalidInputError("start must be before end", details={"start": start, "end": end})
    metrics = _canonical_metrics(metric or [])
    require_visible(runtime, principal, panel_id)
    query = ReadingsQuery(panel_id, metrics, start_ms, end_ms, max_points, limit, after)
    return readings_response(runtime.store.engine, runtime.settings, query)


def _canonical_metrics(raw: list[str]) -> list[str]:
    out = []
    for name in raw:
        for piece in name.split(","):
            part = piece.strip()
            if not part:
                continue
            resolved = metrics_catalog.resolve(part)
            if resolved is None:
                raise InvalidInputError(f"unknown metric name {part!r}", details={"metric": part})
            out.append(resolved[0])
    return out
