"""History reads for answers of any size: a panel's series, where a raw page ends, and points
(raw or bucketed) read in chunks through a streaming cursor, so that no answer is ever held in
memory whole. ``Store`` keeps the small queries; these feed ``api/readings_stream.py``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, func, select

from pelbiot.storage import schema

CHUNK_ROWS = 2_000  # rows per fetch, and per piece of the answer


class SeriesRef(NamedTuple):
    id: int
    metric: str
    known: bool


def series_of(engine: Engine, panel_id: str, metrics: Sequence[str]) -> list[SeriesRef]:
    """The panel's series, by metric name; all of them when ``metrics`` is empty."""
    s = schema.series.c
    q = select(s.id, s.metric, s.known).where(s.panel_id == panel_id)
    if metrics:
        q = q.where(s.metric.in_(sorted(set(metrics))))
    with engine.connect() as conn:
        return [
            SeriesRef(sid, metric, bool(known))
            for sid, metric, known in conn.execute(q.order_by(s.metric))
        ]


def page_cut(
    engine: Engine, series: Sequence[SeriesRef], low: int, end: int, limit: int
) -> int | None:
    """Where a raw page of ``limit`` points per series ends: the earliest timestamp at which a
    series fills its share (every series is cut there, so one cursor pages them all), or None
    when every series fits."""
    r = schema.readings.c
    cuts = []
    with engine.connect() as conn:
        for ref in series:
            q = (
                select(r.ts_ms)
                .where(r.series_id == ref.id, r.ts_ms >= low, r.ts_ms < end)
                .order_by(r.ts_ms)
                .offset(limit - 1)
                .limit(1)
            )
            ts = conn.execute(q).scalar()
            if ts is not None:
                cuts.append(int(ts))
    return min(cuts) if cuts else None


def raw_points(
    conn: Connection, series_id: int, low: int, high: int, limit: int
) -> Iterator[Sequence[Any]]:
    """(ts_ms, value) rows with low <= ts < high, oldest first, in chunks."""
    r = schema.readings.c
    q = (
        select(r.ts_ms, r.value)
        .where(r.series_id == series_id, r.ts_ms >= low, r.ts_ms < high)
        .order_by(r.ts_ms)
        .limit(limit)
    )
    yield from _chunks(conn, q)


def bucket_rows(
    conn: Connection, series_id: int, start: int, end: int, width: int
) -> Iterator[Sequence[Any]]:
    """(first ts, min, max, mean, count) per bucket of ``width`` ms from ``start``, in chunks."""
    r = schema.readings.c
    bucket = ((r.ts_ms - start) // width).label("b")
    q = (
        select(
            func.min(r.ts_ms), func.min(r.value), func.max(r.value), func.avg(r.value), func.count()
        )
        .where(r.series_id == series_id, r.ts_ms >= start, r.ts_ms < end)
        .group_by(bucket)
        .order_by(bucket)
    )
    yield from _chunks(conn, q)


def _chunks(conn: Connection, query: Any) -> Iterator[Sequence[Any]]:
    # stream_results: a server-side cursor on PostgreSQL; SQLite steps its cursor lazily anyway
    result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(query)
    try:
        yield from result.partitions()
    finally:
        result.close()
