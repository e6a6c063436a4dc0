"""The hot write path: one batch of readings -> one transaction.

Used only by the single writer thread (``writer.py``). Idempotent: the (series, ts) key turns a
redelivered reading into a counted duplicate, never a second row.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, Table, select

from pelbiot import metrics_catalog, schema
from pelbiot.db import is_sqlite
from pelbiot.models import Reading

logger = logging.getLogger(__name__)

_SQLITE_INSERT = "INSERT OR IGNORE INTO readings (series_id, ts_ms, value) VALUES (?, ?, ?)"
_SQLITE_LATEST = (
    "INSERT INTO latest (series_id, ts_ms, value) VALUES (?, ?, ?) "
    "ON CONFLICT (series_id) DO UPDATE SET ts_ms = excluded.ts_ms, value = excluded.value "
    "WHERE excluded.ts_ms >= latest.ts_ms"
)
_PG_INSERT = (
    "INSERT INTO readings (series_id, ts_ms, value) "
    "SELECT * FROM unnest(%s::integer[], %s::bigint[], %s::float8[]) "
    "ON CONFLICT DO NOTHING"
)
_PG_LATEST = (
    "INSERT INTO latest (series_id, ts_ms, value) "
    "SELECT * FROM unnest(%s::integer[], %s::bigint[], %s::float8[]) "
    "ON CONFLICT (series_id) DO UPDATE SET ts_ms = excluded.ts_ms, value = excluded.value "
    "WHERE excluded.ts_ms >= latest.ts_ms"
)


@dataclass(slots=True)
class BatchResult:
    written: int = 0
    duplicates: int = 0
    unknown_panel: list[Reading] = field(default_factory=list)


class Recorder:
    """Writes batches. Keeps a cache of series ids; ``forget_panel`` drops a deleted panel's."""

    def __init__(self, engine: Engine, *, auto_create_panels: bool) -> None:
        self._engine = engine
        self._sqlite = is_sqlite(str(engine.url))
        self._auto_create = auto_create_panels
        self._series: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()  # guards the cache against forget_panel from API threads

    def forget_panel(self, panel_id: str) -> None:
        with self._lock:
            for key in [k for k in self._series if k[0] == panel_id]:
                del self._series[key]

    def write(self, readings: list[Reading]) -> BatchResult:
        """Commit ``readings`` in one transaction. Raises SQLAlchemy errors on database trouble."""
        result = BatchResult()
        with self._engine.begin() as conn:
            ids = self._series_ids(conn, {(r.panel_id, r.metric) for r in readings}, result)
            rows = [
                (ids[(r.panel_id, r.metric)], r.ts_ms, r.value)
                for r in readings
                if (r.panel_id, r.metric) in ids
            ]
            result.unknown_panel = [r for r in readings if (r.panel_id, r.metric) not in ids]
            if rows:
                result.written = self._insert(conn, rows)
                result.duplicates = len(rows) - result.written
                self._upsert_latest(conn, rows)
        return result

    def _insert(self, conn: Connection, rows: list[tuple[int, int, float]]) -> int:
        if self._sqlite:
            return conn.exec_driver_sql(_SQLITE_INSERT, rows).rowcount
        sids, tss, vals = zip(*rows, strict=True)
        return conn.exec_driver_sql(_PG_INSERT, (list(sids), list(tss), list(vals))).rowcount

    def _upsert_latest(self, conn: Connection, rows: list[tuple[int, int, float]]) -> None:
        newest: dict[int, tuple[int, int, float]] = {}
        for row in rows:
            seen = newest.get(row[0])
            if seen is None or row[1] >= seen[1]:
                newest[row[0]] = row
        # Sorted so concurrent PostgreSQL writers lock rows in one order (no deadlocks).
        ordered = [newest[k] for k in sorted(newest)]
        if self._sqlite:
            conn.exec_driver_sql(_SQLITE_LATEST, ordered)
            return
        sids, tss, vals = zip(*ordered, strict=True)
        conn.exec_driver_sql(_PG_LATEST, (list(sids), list(tss), list(vals)))

    def _series_ids(
        self, conn: Connection, keys: set[tuple[str, str]], result: BatchResult
    ) -> dict[tuple[str, str], int]:
        with self._lock:
            ids = {k: self._series[k] for k in keys if k in self._series}
        missing = [k for k in keys if k not in ids]
        if not missing:
            return ids
        panels = {p for p, _ in missing}
        present = set(
            conn.execute(select(schema.panels.c.id).where(schema.panels.c.id.in_(panels))).scalars()
        )
        absent = panels - present
        if absent and self._auto_create:
            now = int(time.time() * 1000)
            for panel_id in sorted(absent):
                _insert_ignore(
                    conn,
                    self._sqlite,
                    schema.panels,
                    ("id",),
                    {
                        "id": panel_id,
                        "name": panel_id,
                        "phases": 3,
                        "created_ms": now,
                        "updated_ms": now,
                    },
                )
                logger.info("panel %r created on its first reading", panel_id)
            present |= absent
        wanted = [k for k in missing if k[0] in present]
        for panel_id, metric in sorted(wanted):
            known = metric in metrics_catalog.CATALOG
            _insert_ignore(
                conn,
                self._sqlite,
                schema.series,
                ("panel_id", "metric"),
                {"panel_id": panel_id, "metric": metric, "known": known},
            )
            if not known:
                logger.info("unknown metric %r on panel %r kept and flagged", metric, panel_id)
        if wanted:
            s = schema.series.c
            found = conn.execute(
                select(s.panel_id, s.metric, s.id).where(s.panel_id.in_({p for p, _ in wanted}))
            ).all()
            with self._lock:
                for panel_id, metric, sid in found:
                    self._series[(panel_id, metric)] = sid
                    if (panel_id, metric) in missing:
                        ids[(panel_id, metric)] = sid
        return ids


def _insert_ignore(
    conn: Connection,
    sqlite: bool,
    table: Table,
    conflict: tuple[str, ...],
    values: dict[str, object],
) -> None:
    if sqlite:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(table).values(values).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(
            pg_insert(table).values(values).on_conflict_do_nothing(index_elements=conflict)
        )
