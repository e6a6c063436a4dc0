"""HTTP ingest for devices that cannot speak MQTT: same decoder, same writer, acked on commit.

Each item is turned into the MQTT message it stands for (topic + JSON payload) and decoded by
``payloads.decode``, so HTTP and MQTT accept and refuse exactly the same things. The answer comes
after the commit: a 200 means stored.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.openapi.models import Example
from pydantic import BaseModel, Field

from pelbiot.api.deps import PrincipalDep, RuntimeDep
from pelbiot.decode.payloads import TELEMETRY, decode
from pelbiot.errors import ForbiddenError, InvalidInputError, ServiceUnavailableError
from pelbiot.models import Reading

router = APIRouter(tags=["ingest"])

MAX_ITEMS = 10_000
_COMMIT_TIMEOUT_S = 15.0


class RejectedItem(BaseModel):
    index: int
    reason: str
    detail: str


class IngestResult(BaseModel):
    accepted: int = Field(description="readings committed")
    rejected: list[RejectedItem]


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


def _as_message(item: Any, prefix: str) -> tuple[str, bytes]:
    if not isinstance(item, dict):
        raise InvalidInputError("each reading must be a JSON object")
    panel = item.get("panel") or item.get("panel_id")
    if not isinstance(panel, str) or not panel:
        raise InvalidInputError('each reading needs "panel"')
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
    "`{panel, ts?, values: {...}}`, or a list of up to 10,000 of them. Answers after commit.",
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
    config = runtime.decode_config
    now_ms = int(time.time() * 1000)
    readings: list[Reading] = []
    rejected: list[RejectedItem] = []
    for index, item in enumerate(items):
        try:
            topic, body = _as_message(item, config.prefix)
        except InvalidInputError as exc:
            rejected.append(RejectedItem(index=index, reason="bad_item", detail=exc.message))
            continue
        decoded = decode(topic, body, now_ms, config)
        for reading in decoded.readings:
            if not runtime.directory.visible(principal, reading.panel_id):
                raise ForbiddenError(f"this key may not write panel {reading.panel_id!r}")
        readings.extend(decoded.readings)
        if decoded.rejections:
            runtime.rejects.add(decoded.rejections)
            rejected.extend(
                RejectedItem(index=index, reason=r.reason, detail=r.detail)
                for r in decoded.rejections
            )
    if readings:
        committed = threading.Event()
        if not runtime.writer.submit(readings, committed.set, timeout=5.0):
            raise ServiceUnavailableError("the writer is saturated; retry shortly")
        if not committed.wait(_COMMIT_TIMEOUT_S):
            raise ServiceUnavailableError(
                "readings are queued but not yet committed (database slow or down)"
            )
    return IngestResult(accepted=len(readings), rejected=rejected)
