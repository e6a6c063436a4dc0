"""Time conversions at the API edge: query parameters in, ISO 8601 in the site zone out."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pelbiot.decode.payload_errors import PayloadError
from pelbiot.decode.timestamps import parse_timestamp
from pelbiot.errors import InvalidInputError

# Query times must lie where every answer can print them in any zone (Python's datetime ends at
# the year 9999, and UTC+14 pushes 9999-12-31 past it) and where the databases' integers are.
MIN_QUERY_MS = 0  # 1970-01-01T00:00:00Z
MAX_QUERY_MS = 253_402_041_600_000  # 9999-12-29T00:00:00Z


def parse_query_time(raw: str | None, zone: ZoneInfo, *, name: str, default_ms: int) -> int:
    """ISO 8601 (naive = site time) or epoch s/ms -> epoch ms; 422 with the parameter's name,
    also for a valid time outside 1970-01-01 .. 9999-12-29 (UTC)."""
    if raw is None or raw == "":
        return default_ms
    try:
        ts_ms = parse_timestamp(raw, zone)
    except PayloadError as exc:
        raise InvalidInputError(f"{name}: {exc.detail}", details={"parameter": name}) from None
    if not MIN_QUERY_MS <= ts_ms <= MAX_QUERY_MS:
        raise InvalidInputError(
            f"{name}: {raw[:40]!r} is outside the supported range "
            "1970-01-01T00:00:00Z .. 9999-12-29T00:00:00Z",
            details={"parameter": name, "min": MIN_QUERY_MS, "max": MAX_QUERY_MS},
        )
    return ts_ms


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
