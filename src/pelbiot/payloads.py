"""Pure decoders: MQTT topic + payload bytes -> readings and rejections. No I/O.

Accepted forms (DESIGN section 3), with ``<prefix>`` = ``panel`` by default:

- ``<prefix>/<panel>/<metric>`` with a plain number (``230.45``), a JSON number or numeric
  string, or ``{"value": 230.45, "ts": ...}``;
- ``<prefix>/<panel>/telemetry`` with ``{"ts": ..., "voltage_l1": 231.2, ...}``; one level of
  nesting is flattened (``{"voltage": {"l1": 231}}`` is ``voltage_l1``), ``{"values": {...}}``
  is read as the metrics.

Timestamps may be ISO 8601 (naive means site time) or epoch seconds / milliseconds /
microseconds; absent means arrival time. In a telemetry message each bad value is refused on its
own and the good ones are kept.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import orjson

from pelbiot import metrics_catalog
from pelbiot.models import Decoded, Reading, Rejection

TELEMETRY = "telemetry"
_TS_KEYS = ("ts", "timestamp", "time", "t")
_PANEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_MIN_TS_MS = 946_684_800_000  # 2000-01-01: older stamps are a dead RTC, not a reading
_UNKNOWN_METRIC_BOUND = 1e15
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
    "unknown_panel": "panel is not registered and auto-creation is off",
}


class PayloadError(ValueError):
    """A refused value; ``reason`` is one of REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or REASONS[reason])
        self.reason = reason
        self.detail = detail or REASONS[reason]


@dataclass(frozen=True, slots=True)
class DecodeConfig:
    prefix: str = "panel"
    max_payload_bytes: int = 65_536
    future_tolerance_ms: int = 300_000
    zone: ZoneInfo = ZoneInfo("Asia/Jakarta")


def preview(payload: bytes) -> str:
    """A short printable excerpt of a payload for logs and the rejected ring."""
    text = payload[:_PREVIEW].decode("utf-8", errors="replace")
    return text + ("..." if len(payload) > _PREVIEW else "")


def parse_timestamp(raw: object, zone: ZoneInfo) -> int:
    """Epoch ms (UTC) from ISO 8601 text or epoch s / ms / us. Raises PayloadError."""
    if isinstance(raw, bool):
        raise PayloadError("bad_timestamp", "timestamp is a boolean")
    if isinstance(raw, int | float):
        return _epoch_to_ms(float(raw))
    if isinstance(raw, str):
        text = raw.strip()
        try:
            return _epoch_to_ms(float(text))
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise PayloadError("bad_timestamp", f"cannot read timestamp {text[:40]!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone)
        return int(parsed.timestamp() * 1000)
    raise PayloadError("bad_timestamp", f"timestamp of type {type(raw).__name__}")


def _epoch_to_ms(value: float) -> int:
    if not math.isfinite(value) or value < 0:
        raise PayloadError("bad_timestamp", "timestamp is not a finite positive number")
    if value < 1e11:  # seconds until the year 5138
        return round(value * 1000)
    if value < 1e14:
        return int(value)
    if value < 1e17:
        return int(value // 1000)
    raise PayloadError("bad_timestamp", "epoch timestamp out of range")


def _check_ts(ts_ms: int, now_ms: int, config: DecodeConfig) -> None:
    if ts_ms > now_ms + config.future_tolerance_ms:
        raise PayloadError("future_timestamp")
    if ts_ms < _MIN_TS_MS:
        raise PayloadError("old_timestamp")


def _number(raw: object) -> float:
    if isinstance(raw, bool):
        raise PayloadError("wrong_type", "value is a boolean")
    if isinstance(raw, float):
        return raw
    if isinstance(raw, int):
        try:
            return float(raw)
        except OverflowError:
            raise PayloadError("out_of_range", "integer too large") from None
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            raise PayloadError("not_a_number", f"{raw[:40]!r} is not a number") from None
    if raw is None:
        raise PayloadError("null_value")
    raise PayloadError("wrong_type", f"value of type {type(raw).__name__}")


def make_reading(panel_id: str, raw_metric: str, raw_value: object, ts_ms: int) -> Reading:
    """Validate one value of one metric. Raises PayloadError."""
    resolved = metrics_catalog.resolve(raw_metric)
    if resolved is None:
        raise PayloadError("bad_metric_name", f"metric name {raw_metric[:40]!r} is not usable")
    name, factor, entry = resolved
    value = _number(raw_value)
    if not math.isfinite(value):
        raise PayloadError("non_finite")
    if factor != 1.0:
        value *= factor
    if entry is not None:
        if not entry.low <= value <= entry.high:
            raise PayloadError(
                "out_of_range", f"{name}={value:g} outside [{entry.low:g}, {entry.high:g}]"
            )
    elif abs(value) > _UNKNOWN_METRIC_BOUND:
        raise PayloadError("out_of_range", f"{name}={value:g} is implausibly large")
    return Reading(panel_id, name, ts_ms, value)


def split_topic(topic: str, prefix: str) -> tuple[str, str]:
    """(panel id, metric part) of a topic, or PayloadError."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != prefix or not parts[2]:
        raise PayloadError("bad_topic", f"expected {prefix}/<panel>/<metric>")
    if not _PANEL_RE.match(parts[1]):
        raise PayloadError("bad_panel_id")
    return parts[1], parts[2]


def decode(topic: str, payload: bytes, now_ms: int, config: DecodeConfig) -> Decoded:
    """Decode one MQTT message. Never raises: problems become rejections."""
    out = Decoded()
    try:
        _decode_into(out, topic, payload, now_ms, config)
    except PayloadError as exc:
        out.rejections.append(
            Rejection(exc.reason, exc.detail, topic[:200], preview(payload), now_ms)
        )
    return out


def _decode_into(
    out: Decoded, topic: str, payload: bytes, now_ms: int, config: DecodeConfig
) -> None:
    panel_id, metric = split_topic(topic, config.prefix)
    if len(payload) > config.max_payload_bytes:
        raise PayloadError("too_large", f"{len(payload)} bytes > {config.max_payload_bytes}")
    if not payload.strip():
        raise PayloadError("empty")
    if metric == TELEMETRY:
        _decode_telemetry(out, topic, panel_id, payload, now_ms, config)
        return
    first = payload.lstrip()[:1]
    if first in (b"{", b"[", b'"'):
        doc = _json(payload)
        if isinstance(doc, dict):
            if "value" not in doc:
                raise PayloadError("no_values", 'JSON object without "value"')
            ts_ms = _ts_of(doc, now_ms, config)
            out.readings.append(make_reading(panel_id, metric, doc["value"], ts_ms))
            return
        if isinstance(doc, str):
            out.readings.append(make_reading(panel_id, metric, doc, now_ms))
            return
        raise PayloadError("wrong_type", f"JSON {type(doc).__name__} where a value was expected")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("not_utf8") from None
    out.readings.append(make_reading(panel_id, metric, text.strip(), now_ms))


def _json(payload: bytes) -> object:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadError("not_utf8") from None
        raise PayloadError("bad_json") from None


def _ts_of(doc: dict[str, object], now_ms: int, config: DecodeConfig) -> int:
    for key in _TS_KEYS:
        if key in doc and doc[key] is not None:
            ts_ms = parse_timestamp(doc[key], config.zone)
            _check_ts(ts_ms, now_ms, config)
            return ts_ms
    return now_ms


def _decode_telemetry(
    out: Decoded, topic: str, panel_id: str, payload: bytes, now_ms: int, config: DecodeConfig
) -> None:
    doc = _json(payload)
    if not isinstance(doc, dict):
        raise PayloadError("wrong_type", "telemetry must be a JSON object")
    ts_ms = _ts_of(doc, now_ms, config)
    values = doc.get("values")
    fields = values if isinstance(values, dict) else doc
    count = 0
    for key, raw in _flatten(fields):
        if key in _TS_KEYS or key in ("values", "device", "id", "panel", "name"):
            continue
        count += 1
        try:
            out.readings.append(make_reading(panel_id, key, raw, ts_ms))
        except PayloadError as exc:
            out.rejections.append(
                Rejection(exc.reason, f"{key}: {exc.detail}", topic[:200], preview(payload), now_ms)
            )
    if count == 0:
        raise PayloadError("no_values", "telemetry object holds no metrics")


def _flatten(fields: dict[str, object]) -> list[tuple[str, object]]:
    pairs: list[tuple[str, object]] = []
    for key, raw in fields.items():
        if isinstance(raw, dict):
            pairs.extend((f"{key}_{sub}", val) for sub, val in raw.items())
        else:
            pairs.append((key, raw))
    return pairs


def utc_now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)
