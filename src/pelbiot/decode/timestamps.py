"""Device timestamps: ISO 8601 (naive = site time) or epoch s / ms / us / ns -> UTC epoch ms.

Epoch numbers are told apart by magnitude (each range starts in 1973). Raises PayloadError.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pelbiot.decode.payload_errors import PayloadError

MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def utc_now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_timestamp(raw: object, zone: ZoneInfo) -> int:
    """Epoch ms (UTC) from ISO 8601 text or epoch s / ms / us / ns. Raises PayloadError."""
    if isinstance(raw, bool):
        raise PayloadError("bad_timestamp", "timestamp is a boolean")
    if isinstance(raw, int):
        return _epoch_int_to_ms(raw)
    if isinstance(raw, float):
        return _epoch_float_to_ms(raw)
    if isinstance(raw, str):
        return _text_timestamp(raw, zone)
    raise PayloadError("bad_timestamp", f"timestamp of type {type(raw).__name__}")


def _text_timestamp(raw: str, zone: ZoneInfo) -> int:
    text = raw.strip()
    if not text or len(text) > 64 or not text.isascii():
        raise PayloadError("bad_timestamp", f"cannot read timestamp {raw[:40]!r}")
    if text.isdigit():
        return _epoch_int_to_ms(int(text))
    if "_" not in text:
        try:
            return _epoch_float_to_ms(float(text))
        except ValueError:
            pass
    if text.endswith("z"):  # RFC 3339 allows a lower-case "z"; fromisoformat does not
        text = text[:-1] + "Z"
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone)
        return (parsed - EPOCH) // _ONE_MS
    except (ValueError, OverflowError):
        raise PayloadError("bad_timestamp", f"cannot read timestamp {text[:40]!r}") from None


def _epoch_int_to_ms(value: int) -> int:
    # seconds until the year 5138, then ms, us, ns (each range starts in 1973)
    if value < 0:
        raise PayloadError("bad_timestamp", "negative epoch timestamp")
    if value < 100_000_000_000:
        return value * 1000
    if value < 100_000_000_000_000:
        return value
    if value < 100_000_000_000_000_000:
        return value // 1000
    if value < 100_000_000_000_000_000_000:
        return value // 1_000_000
    raise PayloadError("bad_timestamp", "epoch timestamp out of range")


def _epoch_float_to_ms(value: float) -> int:
    if not math.isfinite(value) or value < 0:
        raise PayloadError("bad_timestamp", "timestamp is not a finite positive number")
    if value < 1e11:
        return round(value * 1000)
    if value < 1e14:
        return int(value)
    if value < 1e17:
        return int(value // 1000)
    if value < 1e20:
        return int(value // 1e6)
    raise PayloadError("bad_timestamp", "epoch timestamp out of range")


def check_ts(ts_ms: int, now_ms: int, future_tolerance_ms: int) -> None:
    """Refuse a stamp too far ahead of ``now_ms`` or before 2000 (a dead RTC battery)."""
    if ts_ms > now_ms + future_tolerance_ms:
        raise PayloadError("future_timestamp", f"ts {ts_ms} is {ts_ms - now_ms} ms ahead")
    if ts_ms < MIN_TS_MS:
        raise PayloadError("old_timestamp")
