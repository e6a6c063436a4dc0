"""Time conversions at the API edge: query parameters in, ISO 8601 in the site zone out."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pelbiot.decode.payload_errors import PayloadError
from pelbiot.decode.timestamps import parse_timestamp
from pelbiot.errors import InvalidInputError


def parse_query_time(raw: str | None, zone: ZoneInfo, *, name: str, default_ms: int) -> int:
    """ISO 8601 (naive = site time) or epoch s/ms -> epoch ms; 422 with the parameter's name."""
    if raw is None or raw == "":
        return default_ms
    try:
        return parse_timestamp(raw, zone)
    except PayloadError as exc:
        raise InvalidInputError(f"{name}: {exc.detail}", details={"parameter": name}) from None


def iso(ts_ms: int, zone: ZoneInfo) -> str:
    return (
        datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
        .astimezone(zone)
        .isoformat(timespec="milliseconds")
    )


def iso_s(ts: float | None, zone: ZoneInfo) -> str | None:
    if ts is None:
        return None
    return iso(int(ts * 1000), zone)
