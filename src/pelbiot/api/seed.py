"""Seed-compatible endpoints under /api/mqtt, answering ``{"success": true, "data": ...}``.

They let dashboards and scripts written for the original system keep working. Values come from
the same store as /api/v1 (history, latest) plus the raw-topic tracker (last payload per topic).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from pelbiot.api.deps import MaybePrincipalDep, RuntimeDep
from pelbiot.api.timefmt import iso, iso_s
from pelbiot.decode import metrics_catalog
from pelbiot.decode.payload_errors import PayloadError
from pelbiot.decode.payloads import split_topic

router = APIRouter(prefix="/api/mqtt", tags=["seed-compatible"])


class PublishBody(BaseModel):
    topic: str = Field(min_length=1, max_length=256)
    message: str | float | int | dict[str, Any] = Field(
        description="text or number sent as is; an object is sent as JSON"
    )
    qos: int = Field(1, ge=0, le=1)
    retain: bool = False


def _ok(data: Any) -> dict[str, Any]:
    return {"success": True, "data": data}


def _fail(status: int, message: str) -> JSONResponse:
    return JSONResponse({"success": False, "error": message}, status_code=status)


def _as_number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


@router.get("/status", summary="Broker connection (seed shape)")
def status(runtime: RuntimeDep) -> dict[str, Any]:
    st = runtime.stats
    ingest = runtime.ingest
    return _ok(
        {
            "connected": bool(ingest and ingest.connected),
            "broker": ingest.broker if ingest else None,
            "subscribedTopics": list(st.subscriptions),
            "messageCount": st.messages_received,
            "lastMessageAt": iso_s(st.last_message_at, runtime.settings.zone),
        }
    )


@router.get("/last-values", summary="Last payload of every topic seen (seed shape)")
def last_values(runtime: RuntimeDep, principal: MaybePrincipalDep) -> dict[str, Any]:
    zone = runtime.settings.zone
    return _ok(
        {
            topic: {"value": _as_number(v.payload), "timestamp": iso_s(v.received_at, zone)}
            for topic, v in sorted(runtime.topics.snapshot().items())
            if _topic_visible(runtime, principal, topic)
        }
    )


@router.get("/last-value/{topic:path}", summary="Last value of one topic (seed shape)")
def last_value(runtime: RuntimeDep, principal: MaybePrincipalDep, topic: str) -> Any:
    zone = runtime.settings.zone
    if not _topic_visible(runtime, principal, topic):
        return _fail(404, f"no value for topic {topic!r}")
    seen = runtime.topics.get(topic)
    if seen is not None:
        return _ok(
            {
                "topic": topic,
                "value": _as_number(seen.payload),
                "timestamp": iso_s(seen.received_at, zone),
            }
        )
    key = _series_key(runtime, topic)
    if key is not None:
        values = runtime.store.latest(key[0]).get(key[0], {})
        if key[1] in values:
            ts, value = values[key[1]]
            return _ok({"topic": topic, "value": value, "timestamp": iso(ts, zone)})
    return _fail(404, f"no value for topic {topic!r}")


@router.get("/history", summary="Stored values of one topic, newest first (seed shape)")
def history(
    runtime: RuntimeDep,
    principal: MaybePrincipalDep,
    topic: Annotated[str, Query(min_length=1, max_length=256)],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> Any:
    key = _series_key(runtime, topic)
    if key is None:
        return _fail(
            400, f"topic {topic!r} is not {runtime.settings.topic_prefix}/<panel>/<metric>"
        )
    if not runtime.directory.visible(principal, key[0]):
        return _ok([])
    zone = runtime.settings.zone
    rows = runtime.store.recent(key[0], key[1], limit)
    return _ok([{"topic": topic, "value": v, "timestamp": iso(ts, zone)} for ts, v in rows])


@router.get("/topics", summary="Every topic seen or stored (seed shape)")
def topics(runtime: RuntimeDep, principal: MaybePrincipalDep) -> dict[str, Any]:
    prefix = runtime.settings.topic_prefix
    names = set(runtime.topics.snapshot())
    for panel_id, metrics in runtime.store.latest().items():
        names.update(f"{prefix}/{panel_id}/{m}" for m in metrics)
    return _ok(sorted(n for n in names if _topic_visible(runtime, principal, n)))


@router.post("/publish", summary="Publish a message to the broker (seed shape)")
def publish(runtime: RuntimeDep, principal: MaybePrincipalDep, body: PublishBody) -> Any:
    if (
        any(c in body.topic for c in "#+")
        or body.topic.startswith("$")
        or not all(_allowed_in_topic(ord(c)) for c in body.topic)
    ):
        # A topic the broker refuses would make it drop PELBIOT's own connection (ingest).
        return _fail(400, "topic must not contain wildcards or control characters or start with $")
    if not _topic_visible(runtime, principal, body.topic):
        return _fail(403, "you may only publish to your own panels' topics")
    if runtime.ingest is None:
        return _fail(503, "no MQTT broker configured")
    try:
        if isinstance(body.message, dict):
            payload = orjson.dumps(body.message)
        else:
            payload = str(body.message).encode()
    except (orjson.JSONEncodeError, UnicodeEncodeError):
        return _fail(400, "message is not valid UTF-8 text")
    if len(payload) > runtime.settings.max_payload_bytes:
        return _fail(413, "message larger than the configured payload limit")
    if not runtime.ingest.publish(body.topic, payload, qos=body.qos, retain=body.retain):
        return _fail(503, "MQTT broker not connected")
    return _ok({"topic": body.topic, "message": body.message})


def _allowed_in_topic(code: int) -> bool:
    """What MQTT brokers (Mosquitto's UTF-8 check) accept in a topic: no NUL or other control
    characters, no surrogates, no Unicode non-characters."""
    return not (
        code <= 0x1F
        or 0x7F <= code <= 0x9F
        or 0xD800 <= code <= 0xDFFF
        or 0xFDD0 <= code <= 0xFDEF
        or (code & 0xFFFE) == 0xFFFE
    )


def _topic_visible(runtime: RuntimeDep, principal: MaybePrincipalDep, topic: str) -> bool:
    """Scoped callers see only their panels' topics (and no topic outside the scheme)."""
    if principal is None or not principal.scoped:
        return True
    try:
        panel_id, _metric = split_topic(topic, runtime.settings.topic_prefix)
    except PayloadError:
        return False
    return runtime.directory.visible(principal, panel_id)


def _series_key(runtime: RuntimeDep, topic: str) -> tuple[str, str] | None:
    try:
        panel_id, metric = split_topic(topic, runtime.settings.topic_prefix)
    except PayloadError:
        return None
    resolved = metrics_catalog.resolve(metric)
    return None if resolved is None else (panel_id, resolved[0])
