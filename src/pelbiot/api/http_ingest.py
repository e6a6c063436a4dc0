"""HTTP ingest for devices that cannot speak MQTT: same decoder, same writer, acked on commit.

Each item is turned into the MQTT message it stands for (topic + JSON payload) and decoded by
``payloads.decode``, so HTTP and MQTT accept and refuse exactly the same things. The answer comes
after the commit and tells the truth per item: what was stored, what was stored already (a
duplicate), and what was rejected and why, including what only the writer can tell (a panel
that is not registered, the caps on new panels and metrics).

A key limited to some panels may write only those: one item for another panel refuses the whole
request (403) before anything is decoded, stored or recorded in the rejected ring.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Literal

from fastapi import APIRouter, Body, Request
from fastapi.openapi.models import Example
from pydantic import BaseModel, Field

from pelbiot.api.deps import PrincipalDep, RuntimeDep
from pelbiot.decode.payload_errors import REASONS
from pelbiot.decode.payloads import TELEMETRY, decode
from pelbiot.errors import ForbiddenError, InvalidInputError, ServiceUnavailableError
from pelbiot.models import Reading
from pelbiot.security.permissions import Principal

router = APIRouter(tags=["ingest"])

MAX_ITEMS = 10_000
_COMMIT_TIMEOUT_S = 15.0


class RejectedItem(BaseModel):
    index: int = Field(description="position of the item in the request (0 for a single one)")
    metric: str | None = Field(None, description="the refused metric, when the item had several")
    reason: str = Field(description="a code of GET /api/v1/ingest/rejected's reasons, or bad_item")
    detail: str


class ItemResult(BaseModel):
    index: int
    status: Literal["stored", "duplicate", "partial", "rejected"] = Field(
        description="stored: every value stored; duplicate: all stored before (same panel, "
        "metric and time); partial: some values refused; rejected: nothing stored"
    )
    stored: list[str] = Field(description="metrics stored by this request")
    duplicates: list[str] = Field(description="metrics stored before with the same timestamp")


class IngestResult(BaseModel):
    accepted: int = Field(description="readings stored by this request")
    duplicates: int = Field(description="readings stored before (not written twice)")
    rejected: list[RejectedItem] = Field(description="what was refused, and why")
    items: list[ItemResult] = Field(description="per item, in request order")


EXAMPLES: dict[str, Example] = {
    "single": {"value": {"panel": "trafo1", "metric": "voltage", "value": 230.4}},
    "telemetry": {
        "value": {
            "panel": "trafo1",
            "ts": "2026-11-22T10:00:00+07:00",
            "values": {"voltage_l1": 231.2, "current_l1": 15.1},
        }
    },
    "batch": {"value": [{"panel": "trafo1", "metric": "ampere", "value": 12.5, "ts": 1795000000}]},
}


def _panel_of(item: Any) -> str:
    if not isinstance(item, dict):
        raise InvalidInputError("each reading must be a JSON object")
    panel = item.get("panel") or item.get("panel_id")
    if not isinstance(panel, str) or not panel:
        raise InvalidInputError('each reading needs "panel"')
    return panel


def _as_message(item: Any, prefix: str) -> tuple[str, bytes]:
    panel = _panel_of(item)
    if "values" in item:
        body = {k: v for k, v in item.items() if k not in ("panel", "panel_id")}
        return f"{prefix}/{panel}/{TELEMETRY}", _encode(body)
    metric = item.get("metric")
    if not isinstance(metric, str) or not metric or "value" not in item:
        raise InvalidInputError('a single reading needs "metric" and "value"')
    body = {"value": item["value"], **({"ts": item["ts"]} if "ts" in item else {})}
    return f"{prefix}/{panel}/{metric}", _encode(body)


def _encode(body: dict[str, Any]) -> bytes:
    # The stdlib encoder keeps NaN, Infinity and huge integers as the client sent them, so the
    # decoder refuses them for what they are (non_finite, out_of_range) rather than as null.
    return json.dumps(body).encode()


@router.post(
    "/ingest",
    response_model=IngestResult,
    summary="Store readings over HTTP (API key with the ingest scope)",
    description="One reading `{panel, metric, value, ts?}`, one telemetry message "
    "`{panel, ts?, values: {...}}`, or a list of up to 10,000 of them. Answers after commit, "
    "per item: stored, duplicate (stored before), partial or rejected, with the reasons.",
)
def ingest(
    request: Request,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    payload: Any = Body(openapi_examples=EXAMPLES),  # noqa: B008 - FastAPI's way
) -> IngestResult:
    items = payload if isinstance(payload, list) else [payload]
    if not items or len(items) > MAX_ITEMS:
        raise InvalidInputError(f"send between 1 and {MAX_ITEMS} readings")
    _check_panels(runtime, principal, items)
    config = runtime.decode_config
    now_ms = int(time.time() * 1000)
    readings: list[Reading] = []
    owner: list[int] = []  # item index of each reading
    rejected: list[RejectedItem] = []
    for index, item in enumerate(items):
        try:
            topic, body = _as_message(item, config.prefix)
        except InvalidInputError as exc:
            rejected.append(
                RejectedItem(index=index, metric=None, reason="bad_item", detail=exc.message)
            )
            continue
        decoded = decode(topic, body, now_ms, config)
        readings.extend(decoded.readings)
        owner.extend([index] * len(decoded.readings))
        if decoded.rejections:
            runtime.rejects.add(decoded.rejections)
            rejected.extend(
                RejectedItem(index=index, metric=None, reason=r.reason, detail=r.detail)
                for r in decoded.rejections
            )
    refused: dict[int, str] = {}
    if readings:
        committed = threading.Event()
        if not runtime.writer.submit(
            readings, committed.set, timeout=5.0, on_result=refused.update
        ):
            raise ServiceUnavailableError("the writer is saturated; retry shortly")
        if not committed.wait(_COMMIT_TIMEOUT_S):
            raise ServiceUnavailableError(
                "readings are queued but not yet committed (database slow or down)"
            )
    return _answer(len(items), readings, owner, refused, rejected)


def _check_panels(runtime: RuntimeDep, principal: Principal, items: list[Any]) -> None:
    """403 if any item names a panel this key may not write, before anything is recorded."""
    if not principal.scoped:
        return
    for item in items:
        try:
            panel = _panel_of(item)
        except InvalidInputError:
            continue  # answered per item as bad_item
        if not runtime.directory.visible(principal, panel):
            raise ForbiddenError(f"this key may not write panel {panel[:64]!r}")


def _answer(
    count: int,
    readings: list[Reading],
    owner: list[int],
    refused: dict[int, str],
    rejected: list[RejectedItem],
) -> IngestResult:
    results = [ItemResult(index=i, status="stored", stored=[], duplicates=[]) for i in range(count)]
    accepted = duplicates = 0
    for position, (reading, index) in enumerate(zip(readings, owner, strict=True)):
        why = refused.get(position)
        if why is None:
            results[index].stored.append(reading.metric)
            accepted += 1
        elif why == "duplicate":
            results[index].duplicates.append(reading.metric)
            duplicates += 1
        else:
            rejected.append(
                RejectedItem(
                    index=index,
                    metric=reading.metric,
                    reason=why,
                    detail=REASONS.get(why, why),
                )
            )
    rejected.sort(key=lambda r: r.index)
    with_rejections = {r.index for r in rejected}
    for result in results:
        if result.index in with_rejections:
            result.status = "partial" if result.stored or result.duplicates else "rejected"
        elif not result.stored:
            result.status = "duplicate" if result.duplicates else "rejected"
    return IngestResult(accepted=accepted, duplicates=duplicates, rejected=rejected, items=results)
