"""History reads for answers of any size: a panel's series, where a raw page ends, and points
(raw or bucketed) read in chunks of short queries, so that no answer is ever held in memory
whole and no connection waits on a slow client. ``Store`` keeps the small queries; these feed
``api/readings_stream.py``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Engine, func, select

from pelbiot.storage import schema

CHUNK_ROWS = 2_000  # rows per query, and per piece of the answer


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


def raw_points(engine: Engine, series_id: int, low: int, high: int) -> Iterator[Sequence[Any]]:
    """Every (ts_ms, value) row with low <= ts < high, oldest first, in chunks.

    No row limit: the caller bounds the range (a page's cut, from ``page_cut``). A limit here
    would be counted again, in later queries than the cut's: readings stored before the cut in
    between would push points out of the page, and the next page, which starts after the cut,
    would never return them. Each chunk is its own short query (keyset: after the last
    timestamp sent), so a slow client never holds a database connection while it reads: a few
    of them could otherwise take the whole pool."""
    r = schema.readings.c
    while True:
        size = CHUNK_ROWS
        q = (
            select(r.ts_ms, r.value)
            .where(r.series_id == series_id, r.ts_ms >= low, r.ts_ms < high)
            .order_by(r.ts_ms)
            .limit(size)
        )
        with engine.connect() as conn:
            rows = conn.execute(q).all()
        if rows:
            yield rows
        if len(rows) < size:
            return
        low = int(rows[-1][0]) + 1


def bucket_rows(
    engine: Engine, series_id: int, start: int, end: int, width: int
) -> Iterator[Sequence[Any]]:
    """(first ts, min, max, mean, count) per bucket of ``width`` ms from ``start``, oldest
    first, read a window of CHUNK_ROWS buckets per query (no connection held in between)."""
    r = schema.readings.c
    bucket = ((r.ts_ms - start) // width).label("b")
    window = CHUNK_ROWS * width
    for low in range(start, end, window):
        high = min(end, low + window)
        q = (
            select(
                func.min(r.ts_ms),
                func.min(r.value),
                func.max(r.value),
                func.avg(r.value),
                func.count(),
            )
            .where(r.series_id == series_id, r.ts_ms >= low, r.ts_ms < high)
            .group_by(bucket)
            .order_by(bucket)
        )
        with engine.connect() as conn:
            rows = conn.execute(q).all()
        if rows:
            yield rows
