"""Why a payload is refused: the reason codes, the exception the decoders raise, and the
``Rejection`` record (with a printable excerpt of the payload) kept in the rejected ring."""

from __future__ import annotations

from pelbiot.models import Rejection

_PREVIEW = 200

REASONS: dict[str, str] = {
    "bad_topic": "topic is not <prefix>/<panel>/<metric>",
    "bad_panel_id": "panel id has characters outside A-Z a-z 0-9 _ . -",
    "bad_metric_name": "metric name is not usable",
    "empty": "empty payload",
    "too_large": "payload larger than the configured limit",
    "not_utf8": "payload is not UTF-8 text",
    "bad_json": "payload is not valid JSON",
    "not_a_number": "value is not a number",
    "wrong_type": "value has the wrong type",
    "null_value": "value is null",
    "non_finite": "value is NaN or infinite",
    "out_of_range": "value outside the metric's plausible range",
    "bad_timestamp": "timestamp cannot be read",
    "future_timestamp": "timestamp too far in the future",
    "old_timestamp": "timestamp before the year 2000",
    "no_values": "message holds no values",
    "too_many_values": "message holds more values than the configured limit",
    "duplicate_metric": "metric given twice in one message (the first is kept)",
    "unknown_panel": "panel is not registered and auto-creation is off",
    "too_many_panels": "new panel refused: the site has PELBIOT_MAX_PANELS panels",
    "too_many_metrics": "new metric refused: the panel has PELBIOT_MAX_METRICS_PER_PANEL metrics",
    "too_many_series": "new series refused: the site has PELBIOT_MAX_SERIES series",
    "decode_error": "the decoder failed on this message (a PELBIOT bug: please report it)",
}


class PayloadError(ValueError):
    """A refused value; ``reason`` is one of REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or REASONS[reason])
        self.reason = reason
        self.detail = detail or REASONS[reason]


def preview(payload: bytes) -> str:
    """A short printable excerpt of a payload for logs and the rejected ring."""
    text = payload[:_PREVIEW].decode("utf-8", errors="replace")
    return text + ("..." if len(payload) > _PREVIEW else "")


def rejection(
    exc: PayloadError, key: str | None, topic: str, payload: bytes, now_ms: int
) -> Rejection:
    """The record of ``exc`` for the rejected ring; ``key`` names the refused member, if any."""
    detail = exc.detail if key is None else f"{key[:40]!r}: {exc.detail}"
    return Rejection(exc.reason, detail, topic[:200], preview(payload), now_ms)
