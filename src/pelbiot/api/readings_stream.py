"""The body of GET /panels/{id}/readings, planned first and then streamed.

An answer may be large (many metrics, long ranges), and six large ones built in memory at once
took 2 GB: so the page is planned before the first byte (metrics within
``PELBIOT_READINGS_MAX_METRICS``, points within ``PELBIOT_READINGS_MAX_POINTS`` for all metrics
together, where a raw page ends), and then written in pieces of a few thousand points, each
encoded with orjson as it is read (a short query per piece: no connection waits on a slow
client). What does not fit is not dropped silently: a raw page ends earlier and
``next_after`` continues it; a downsampled answer gets wider buckets (``bucket_ms``); both say
``"capped": true``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine

from pelbiot.api.timefmt import iso
from pelbiot.decode import metrics_catalog
from pelbiot.errors import InvalidInputError
from pelbiot.settings import Settings
from pelbiot.storage import history
from pelbiot.storage.history import SeriesRef


@dataclass(frozen=True, slots=True)
class ReadingsQuery:
    panel_id: str
    metrics: list[str]  # canonical names; empty = every metric of the panel
    start_ms: int
    end_ms: int
    max_points: int | None  # buckets per series (downsampled), or None for raw points
    limit: int  # raw points per series in one page
    after_ms: int | None  # raw paging cursor


@dataclass(frozen=True, slots=True)
class _Plan:
    series: list[SeriesRef]
    header: dict[str, Any]
    low: int  # raw: first ts; buckets: start
    high: int  # raw: end of the page (exclusive, the cut bounds it); buckets: end
    bucket_ms: int | None


def readings_response(
    engine: Engine, settings: Settings, query: ReadingsQuery
) -> StreamingResponse:
    """Plan the page (422s are raised here, before anything is sent) and stream it."""
    return StreamingResponse(readings_body(engine, settings, query), media_type="application/json")


def readings_body(engine: Engine, settings: Settings, query: ReadingsQuery) -> Iterator[bytes]:
    """The answer's JSON in pieces; the plan (and its 422s) comes before the first piece."""
    return _body(engine, _plan(engine, settings, query), settings.zone)


def _check_metric_count(count: int, cap: int, *, asked: bool) -> None:
    if count <= cap:
        return
    if asked:
        message = f"at most {cap} metrics per request (PELBIOT_READINGS_MAX_METRICS); asked {count}"
    else:
        message = (
            f"this panel has {count} metrics, more than one request may ask for "
            f"({cap}, PELBIOT_READINGS_MAX_METRICS): name them with metric="
        )
    raise InvalidInputError(
        message, details={"setting": "PELBIOT_READINGS_MAX_METRICS", "max": cap, "metrics": count}
    )


def _plan(engine: Engine, settings: Settings, q: ReadingsQuery) -> _Plan:
    cap_metrics, cap_points = settings.readings_max_metrics, settings.readings_max_points
    _check_metric_count(len(set(q.metrics)), cap_metrics, asked=True)
    series = history.series_of(engine, q.panel_id, q.metrics)
    _check_metric_count(len(series), cap_metrics, asked=False)
    budget = cap_points // max(1, len(series))  # points per series within the cap
    zone = settings.zone
    header: dict[str, Any] = {
        "panel_id": q.panel_id,
        "start": iso(q.start_ms, zone),
        "end": iso(q.end_ms, zone),
        "downsampled": q.max_points is not None,
        "bucket_ms": None,
        "next_after": None,
        "capped": False,
    }
    if q.max_points is not None:
        buckets = min(q.max_points, budget)  # >= 2: Settings keeps points >= 2 * metrics
        width = max(1, -(-(q.end_ms - q.start_ms) // buckets))
        header["bucket_ms"] = width if series else None
        header["capped"] = buckets < q.max_points
        return _Plan(series, header, q.start_ms, q.end_ms, width)
    per_series = min(q.limit, max(1, budget))
    low = q.start_ms if q.after_ms is None else max(q.start_ms, q.after_ms + 1)
    cut = history.page_cut(engine, series, low, q.end_ms, per_series) if low < q.end_ms else None
    header["next_after"] = cut
    header["capped"] = cut is not None and per_series < q.limit  # the cap ended this page
    # The page is every point up to its cut, read later without a row limit: readings stored
    # before the cut after it was planned belong to this page (the next starts after the cut).
    high = q.end_ms if cut is None else cut + 1
    return _Plan(series, header, low, high, None)


def _body(engine: Engine, plan: _Plan, zone: ZoneInfo) -> Iterator[bytes]:
    yield orjson.dumps(plan.header)[:-1] + b',"series":['
    for number, ref in enumerate(plan.series):
        head = {
            "metric": ref.metric,
            "unit": metrics_catalog.unit_of(ref.metric),
            "known": ref.known,
        }
        yield (b"," if number else b"") + orjson.dumps(head)[:-1] + b',"points":['
        if plan.bucket_ms is None:
            chunks = history.raw_points(engine, ref.id, plan.low, plan.high)
            pieces = (_raw_piece(rows, zone) for rows in chunks)
        else:
            rows_iter = history.bucket_rows(engine, ref.id, plan.low, plan.high, plan.bucket_ms)
            pieces = (_bucket_piece(rows, zone) for rows in rows_iter)
        for count, piece in enumerate(pieces):
            yield piece if count == 0 else b"," + piece
        yield b"]}"
    yield b"]}"


def _raw_piece(rows: Sequence[Any], zone: ZoneInfo) -> bytes:
    return orjson.dumps([{"ts": iso(ts, zone), "value": value} for ts, value in rows])[1:-1]


def _bucket_piece(rows: Sequence[Any], zone: ZoneInfo) -> bytes:
    points = [
        {
            "ts": iso(int(ts), zone),
            "value": float(mean),
            "min": float(low),
            "max": float(high),
            "count": int(n),
        }
        for ts, low, high, mean, n in rows
    ]
    return orjson.dumps(points)[1:-1]
