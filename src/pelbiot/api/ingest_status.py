"""Ingest status (broker, subscriptions, counters) and the ring of rejected messages."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from pelbiot.api.deps import MaybePrincipalDep, RuntimeDep
from pelbiot.api.timefmt import iso, iso_s
from pelbiot.decode.payload_errors import REASONS, PayloadError
from pelbiot.decode.payloads import split_topic
from pelbiot.models import Rejection

router = APIRouter(prefix="/ingest", tags=["ingest"])


class BrokerStatus(BaseModel):
    configured: bool
    url: str | None
    connected: bool
    connects: int
    disconnects: int
    subscriptions: list[str]


class Counters(BaseModel):
    messages_received: int
    readings_received: int
    messages_rejected: int
    rejected_by_reason: dict[str, int]
    messages_committed: int
    readings_written: int
    duplicates: int
    batches: int
    last_batch_size: int
    max_batch_size: int
    queue_depth: int
    queue_capacity: int
    lag_s: float
    max_lag_s: float
    db_ok: bool
    db_errors: int


class IngestStatus(BaseModel):
    broker: BrokerStatus
    counters: Counters
    last_message_at: str | None
    last_topic: str | None
    last_commit_at: str | None
    uptime_s: float


class RejectedMessage(BaseModel):
    reason: str
    reason_text: str
    detail: str
    topic: str
    payload: str
    at: str


@router.get("/status", response_model=IngestStatus, summary="Ingest status and counters")
def ingest_status(runtime: RuntimeDep, principal: MaybePrincipalDep) -> IngestStatus:
    st, zone = runtime.stats, runtime.settings.zone
    ingest = runtime.ingest
    last_topic = st.last_topic
    if last_topic is not None and not _visible_topic(runtime, principal, last_topic):
        last_topic = None  # a region-scoped caller does not learn other regions' panel ids
    return IngestStatus(
        broker=BrokerStatus(
            configured=ingest is not None,
            url=ingest.broker if ingest else None,
            connected=ingest.connected if ingest else False,
            connects=st.connects,
            disconnects=st.disconnects,
            subscriptions=list(st.subscriptions),
        ),
        counters=Counters(
            messages_received=st.messages_received,
            readings_received=st.readings_received,
            messages_rejected=st.messages_rejected,
            rejected_by_reason=runtime.rejects.counts(),
            messages_committed=st.messages_committed,
            readings_written=st.readings_written,
            duplicates=st.duplicates,
            batches=st.batches,
            last_batch_size=st.last_batch_size,
            max_batch_size=st.max_batch_size,
            queue_depth=runtime.writer.depth,
            queue_capacity=runtime.settings.writer_queue_size,
            lag_s=round(st.last_lag_s, 4),
            max_lag_s=round(st.max_lag_s, 4),
            db_ok=st.db_ok,
            db_errors=st.db_errors,
        ),
        last_message_at=iso_s(st.last_message_at, zone),
        last_topic=last_topic,
        last_commit_at=iso_s(st.last_commit_at, zone),
        uptime_s=round(time.time() - runtime.started, 1),
    )


@router.get(
    "/rejected",
    response_model=list[RejectedMessage],
    summary="Recently rejected input, newest first",
)
def rejected(
    runtime: RuntimeDep,
    principal: MaybePrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    reason: Annotated[str | None, Query(max_length=40)] = None,
) -> list[RejectedMessage]:
    zone = runtime.settings.zone
    return [
        RejectedMessage(
            reason=r.reason,
            reason_text=REASONS.get(r.reason, r.reason),
            detail=r.detail,
            topic=r.topic,
            payload=r.payload,
            at=iso(r.at_ms, zone),
        )
        for r in runtime.rejects.recent(limit, reason)
        if _visible_rejection(runtime, principal, r)
    ]


def _visible_rejection(runtime: RuntimeDep, principal: MaybePrincipalDep, rej: Rejection) -> bool:
    """A scoped caller sees the rejections of its own panels only; one that belongs to no
    panel (a topic outside the scheme) only unscoped callers see."""
    if principal is None or not principal.scoped:
        return True
    panel_id = rej.panel_id
    if panel_id is None:
        try:
            panel_id, _metric = split_topic(rej.topic, runtime.settings.topic_prefix)
        except PayloadError:
            return False
    return runtime.directory.visible(principal, panel_id)


def _visible_topic(runtime: RuntimeDep, principal: MaybePrincipalDep, topic: str) -> bool:
    """Whether a scoped caller may learn this topic (its panel is visible to it)."""
    if principal is None or not principal.scoped:
        return True
    try:
        panel_id, _metric = split_topic(topic, runtime.settings.topic_prefix)
    except PayloadError:
        return False
    return runtime.directory.visible(principal, panel_id)
