"""The hot write path: one batch of readings -> one transaction.

Used only by the single writer thread (``writer.py``). Idempotent: the (series, ts) key turns a
redelivered reading into a counted duplicate, never a second row.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, cast

import orjson
import psycopg
from sqlalchemy import Connection, Engine, Table, select
from sqlalchemy.exc import DBAPIError

from pelbiot.decode import metrics_catalog
from pelbiot.decode.timestamps import utc_now_ms
from pelbiot.ingest.first_contact import Caps, admit_panels, admit_series, already_stored, sample
from pelbiot.models import Reading
from pelbiot.storage import schema
from pelbiot.storage.db import is_sqlite

logger = logging.getLogger(__name__)

# The latest upsert takes its rows (one per series) as one JSON array: orjson writes floats as
# their shortest round-trip repr and SQLite reads them back bit-exact; values are finite here
# (the decoders refuse NaN and infinity).
_SQLITE_LATEST = (
    "INSERT INTO latest (series_id, ts_ms, value) "
    "SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2 FROM json_each(?) AS j WHERE true "
    "ON CONFLICT (series_id) DO UPDATE SET ts_ms = excluded.ts_ms, value = excluded.value "
    "WHERE excluded.ts_ms > latest.ts_ms OR latest.ts_ms > ?"
)
_PG_COPY = "COPY readings (series_id, ts_ms, value) FROM STDIN (FORMAT BINARY)"
_PG_COPY_TYPES = ("int4", "int8", "float8")
_PG_INSERT = (
    "INSERT INTO readings (series_id, ts_ms, value) "
    "SELECT * FROM unnest(%s::integer[], %s::bigint[], %s::float8[]) "
    "ON CONFLICT DO NOTHING"
)
_PG_LATEST = (
    "INSERT INTO latest (series_id, ts_ms, value) "
    "SELECT * FROM unnest(%s::integer[], %s::bigint[], %s::float8[]) "
    "ON CONFLICT (series_id) DO UPDATE SET ts_ms = excluded.ts_ms, value = excluded.value "
    "WHERE excluded.ts_ms > latest.ts_ms OR latest.ts_ms > %s"
)

# SQLite takes the rows as multi-row INSERTs of bound values, a few thousand rows a statement:
# one statement step per chunk, so the GIL is released and retaken a few times per batch, not
# per row (executemany retakes it for every row, and each retake waits behind the MQTT thread
# for up to the 5 ms switch interval). Statements come in power-of-two sizes so that few are
# ever prepared (parsing one costs more than running it); the last chunk is padded with
# copies of its last row, which INSERT OR IGNORE skips. Measured against one JSON-array
# statement (json_each), this halves SQLite's own time per row (docs/performance.md).
_SQLITE_CHUNK_ROWS = 4096  # 12,288 bound values (SQLite allows 32,766)
_SQLITE_INSERTS = {
    rows: "INSERT OR IGNORE INTO readings (series_id, ts_ms, value) VALUES "
    + ",".join(["(?,?,?)"] * rows)
    for rows in (1 << bit for bit in range(_SQLITE_CHUNK_ROWS.bit_length()))
}

_series_key = itemgetter(0, 1)  # (panel_id, metric) of a Reading
_ts_of = itemgetter(2)
_value_of = itemgetter(3)
_INSERT_CHUNK = 500  # rows per multi-row INSERT (SQLite allows 32,766 bound parameters)

__all__ = ["BatchResult", "Caps", "Recorder", "newest_per_series"]


@dataclass(slots=True)
class BatchResult:
    written: int = 0
    duplicates: int = 0
    # (index in the batch, reason) of each reading not stored: unknown_panel, too_many_panels,
    # too_many_metrics, too_many_series; in batch order
    refused: list[tuple[int, str]] = field(default_factory=list)
    # indices (among those asked about) of readings already stored: same series and timestamp
    duplicate_at: list[int] = field(default_factory=list)
    # the newest stored reading of each series in the batch (what /latest now shows)
    newest: list[Reading] = field(default_factory=list)


def newest_per_series(readings: list[Reading]) -> list[Reading]:
    """The newest reading of each (panel, metric); for the same timestamp the first arrival
    wins, as in the readings table (insert-or-ignore keeps the first), so /latest, the live
    feed and history agree."""
    # Reversed, then a stable sort by time: among equal stamps the first arrival comes last,
    # and the dict keeps the last value per key. Timsort is near-linear on this (mostly time
    # ordered, reversed runs).
    ordered = sorted(reversed(readings), key=_ts_of)
    return list(dict(zip(map(_series_key, ordered), ordered, strict=True)).values())


class Recorder:
    """Writes batches. Keeps a cache of series ids; ``forget_panel`` drops a deleted panel's.

    A reading stamped more than ``latest_max_skew_ms`` after the moment it is written (a
    device clock running ahead) is stored in history but never becomes the latest value: it
    would otherwise hide every real reading until real time caught up with it.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        auto_create_panels: bool,
        caps: Caps | None = None,
        latest_max_skew_ms: int = 5_000,
        clock: Callable[[], int] = utc_now_ms,
    ) -> None:
        self._engine = engine
        self._sqlite = is_sqlite(str(engine.url))
        self._auto_create = auto_create_panels
        self._caps = caps or Caps()
        self._skew_ms = latest_max_skew_ms
        self._clock = clock
        self._series: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()  # guards the cache against forget_panel from API threads

    def forget_panel(self, panel_id: str) -> None:
        with self._lock:
            for key in [k for k in self._series if k[0] == panel_id]:
                del self._series[key]

    def write(self, readings: list[Reading], *, explain: Sequence[range] = ()) -> BatchResult:
        """Commit ``readings`` in one transaction. Raises SQLAlchemy errors on database trouble.

        ``explain``: index ranges whose duplicates the caller wants named one by one (an HTTP
        answer says per item what was stored); it costs one lookup, so MQTT batches skip it.
        """
        result = BatchResult()
        fresh: dict[tuple[str, str], int] = {}
        with self._engine.begin() as conn:
            keys = list(map(_series_key, readings))
            sid_of: dict[tuple[str, str], int] = self._series
            sids: list[int | None] = list(map(sid_of.get, keys))
            stored = readings
            if None in sids:
                ids, fresh, refusals = self._series_ids(conn, set(keys))
                sids = list(map(ids.get, keys))
                sid_of = ids
                if None in sids:
                    result.refused = [
                        (i, refusals.get(key, "unknown_panel"))
                        for i, (key, sid) in enumerate(zip(keys, sids, strict=True))
                        if sid is None
                    ]
            if explain:
                result.duplicate_at = already_stored(conn, readings, sids, explain)
            if result.refused:
                stored = [r for r, sid in zip(readings, sids, strict=True) if sid is not None]
                sids = [sid for sid in sids if sid is not None]
            if stored:
                columns = (
                    cast("list[int]", sids),
                    list(map(_ts_of, stored)),
                    list(map(_value_of, stored)),
                )
                result.written = self._insert(conn, columns)
                result.duplicates = len(stored) - result.written
                limit = self._clock() + self._skew_ms
                result.newest = newest_per_series(_not_after(stored, max(columns[1]), limit))
                self._upsert_latest(conn, result.newest, sid_of, limit)
        if fresh:  # committed: these series exist now
            with self._lock:
                self._series.update(fresh)
        return result

    def _insert(self, conn: Connection, columns: tuple[list[int], list[int], list[float]]) -> int:
        if self._sqlite:
            return self._sqlite_insert(conn, columns)
        if self._pg_copy(conn, columns):
            return len(columns[0])
        return conn.exec_driver_sql(_PG_INSERT, columns).rowcount

    def _sqlite_insert(
        self, conn: Connection, columns: tuple[list[int], list[int], list[float]]
    ) -> int:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        sids, tss, vals = columns
        total, written, chunk = len(sids), 0, _SQLITE_CHUNK_ROWS
        try:
            for start in range(0, total, chunk):
                stop = min(start + chunk, total)
                rows = stop - start
                size = chunk if rows == chunk else 1 << (rows - 1).bit_length()
                pad = [stop - 1] * (size - rows)  # copies of the last row: ignored as duplicates
                params: list[object] = [None] * (3 * size)
                params[0::3] = sids[start:stop] + [sids[i] for i in pad]
                params[1::3] = tss[start:stop] + [tss[i] for i in pad]
                params[2::3] = vals[start:stop] + [vals[i] for i in pad]
                cursor.execute(_SQLITE_INSERTS[size], params)
                written += cursor.rowcount
        except sqlite3.Error as exc:
            # The raw cursor bypasses SQLAlchemy's error wrapping; the writer retries
            # SQLAlchemy errors (a locked or full database), so wrap it the same way.
            raise DBAPIError.instance(_SQLITE_INSERTS[1], None, exc, sqlite3.Error) from exc
        finally:
            cursor.close()
        return written

    def _pg_copy(self, conn: Connection, columns: tuple[list[int], list[int], list[float]]) -> bool:
        """COPY the rows in (about 3x the rate of INSERT ... unnest). False if one of them is
        already stored (a redelivery): the caller then inserts with ON CONFLICT DO NOTHING."""
        dbapi = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)
        savepoint = conn.begin_nested()
        try:
            with dbapi.cursor() as cursor, cursor.copy(_PG_COPY) as copy:
                copy.set_types(_PG_COPY_TYPES)
                write = copy.write_row
                for row in zip(*columns, strict=True):
                    write(row)
        except psycopg.errors.UniqueViolation:
            savepoint.rollback()
            return False
        except psycopg.Error as exc:
            # Raw driver errors reach us here; the writer retries SQLAlchemy errors.
            raise DBAPIError.instance(_PG_COPY, None, exc, psycopg.Error) from exc
        savepoint.commit()
        return True

    def _upsert_latest(
        self,
        conn: Connection,
        newest: list[Reading],
        sid_of: dict[tuple[str, str], int],
        ahead_of: int,
    ) -> None:
        """Newer readings replace the latest value; so does any reading when the stored one is
        stamped past ``ahead_of`` (written before the skew rule, or under a larger skew)."""
        # Sorted by series id so concurrent PostgreSQL writers lock rows in one order. A series
        # missing from the cache belongs to a panel deleted meanwhile: no latest row for it.
        get = sid_of.get
        rows = sorted((sid, r[2], r[3]) for r in newest if (sid := get(r[:2])) is not None)
        if not rows:
            return
        if self._sqlite:
            conn.exec_driver_sql(_SQLITE_LATEST, (orjson.dumps(rows), ahead_of))
            return
        sids, tss, vals = zip(*rows, strict=True)
        conn.exec_driver_sql(_PG_LATEST, (list(sids), list(tss), list(vals), ahead_of))

    def _series_ids(
        self, conn: Connection, keys: set[tuple[str, str]]
    ) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int], dict[tuple[str, str], str]]:
        """(ids of ``keys``, ids read in this transaction, why the others have none).

        Missing panels (if auto-creation is on) and series are created in the caller's
        transaction, within the caps, so the ids it read go into the cache only once that
        commits: a rolled-back transaction's ids may never exist, and rows written under them
        would be stored but invisible (readings has no foreign key)."""
        with self._lock:
            ids = {k: self._series[k] for k in keys if k in self._series}
        missing = {k for k in keys if k not in ids}
        fresh: dict[tuple[str, str], int] = {}
        refusals: dict[tuple[str, str], str] = {}
        if not missing:
            return ids, fresh, refusals
        panels = {p for p, _ in missing}
        present = set(
            conn.execute(select(schema.panels.c.id).where(schema.panels.c.id.in_(panels))).scalars()
        )
        absent = panels - present
        if absent and self._auto_create:
            created = self._create_panels(conn, sorted(absent))
            refusals.update((k, "too_many_panels") for k in missing if k[0] in absent - created)
            present |= created
        wanted = {k for k in missing if k[0] in present}
        if not wanted:
            return ids, fresh, refusals
        s = schema.series.c
        wanted_panels = {p for p, _ in wanted}
        known = {
            (panel_id, metric): sid
            for panel_id, metric, sid in conn.execute(
                select(s.panel_id, s.metric, s.id).where(s.panel_id.in_(wanted_panels))
            )
        }
        new = sorted(k for k in wanted if k not in known)
        if new:
            admitted = admit_series(conn, self._caps, new, known)
            refusals.update((k, reason) for k, reason in admitted.items() if reason != "ok")
            rows = [
                {"panel_id": p, "metric": m, "known": m in metrics_catalog.CATALOG}
                for (p, m), reason in admitted.items()
                if reason == "ok"
            ]
            unknown = [f"{r['panel_id']}/{r['metric']}" for r in rows if not r["known"]]
            if unknown:
                logger.info(
                    "%d unknown metric(s) kept and flagged: %s", len(unknown), sample(unknown)
                )
            if rows:
                _insert_ignore(conn, self._sqlite, schema.series, ("panel_id", "metric"), rows)
                known = {
                    (panel_id, metric): sid
                    for panel_id, metric, sid in conn.execute(
                        select(s.panel_id, s.metric, s.id).where(s.panel_id.in_(wanted_panels))
                    )
                }
        fresh = {k: sid for k, sid in known.items() if k[0] in wanted_panels}
        ids.update((k, fresh[k]) for k in wanted if k in fresh)
        return ids, fresh, refusals

    def _create_panels(self, conn: Connection, absent: list[str]) -> set[str]:
        """Create the panels that fit under the cap (first in id order); the ones created."""
        admitted = admit_panels(conn, self._caps, absent)
        if not admitted:
            return set()
        now = int(time.time() * 1000)
        _insert_ignore(
            conn,
            self._sqlite,
            schema.panels,
            ("id",),
            [
                {"id": p, "name": p, "phases": 3, "created_ms": now, "updated_ms": now}
                for p in admitted
            ],
        )
        # One line per batch, not per panel: a flood of new ids must not flood the log.
        logger.info("%d panel(s) created on first reading: %s", len(admitted), sample(admitted))
        return set(admitted)


def _not_after(readings: list[Reading], newest_ts: int, limit: int) -> list[Reading]:
    """The readings that may become latest: none stamped past ``limit`` (the allowed skew)."""
    if newest_ts <= limit:
        return readings
    return [r for r in readings if r.ts_ms <= limit]


def _insert_ignore(
    conn: Connection,
    sqlite: bool,
    table: Table,
    conflict: tuple[str, ...],
    rows: list[dict[str, object]],
) -> None:
    """Multi-row INSERT that skips rows already there (first contact with many series)."""
    if sqlite:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        for i in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows[i : i + _INSERT_CHUNK]
            conn.execute(sqlite_insert(table).values(chunk).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        for i in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows[i : i + _INSERT_CHUNK]
            conn.execute(
                pg_insert(table).values(chunk).on_conflict_do_nothing(index_elements=conflict)
            )
