"""Every read query and the panel registry. The hot write path lives in ``recorder.py``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from pelbiot.errors import ConflictError, NotFoundError
from pelbiot.storage import schema

PANEL_FIELDS = (
    "name",
    "region",
    "location",
    "phases",
    "nominal_voltage",
    "rated_current",
    "kva_rating",
    "notes",
)

# Writes a panel change's audit entry on the change's connection; gets the panel as it was
# before the change (empty for a create or delete).
PanelAudit = Callable[[Connection, dict[str, Any]], None]


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._panel_deleted: list[Callable[[str], None]] = []
        self._panel_changed: list[Callable[[str], None]] = []

    def on_panel_deleted(self, callback: Callable[[str], None]) -> None:
        self._panel_deleted.append(callback)

    def on_panel_changed(self, callback: Callable[[str], None]) -> None:
        """Called after a panel is created, edited or deleted through the registry."""
        self._panel_changed.append(callback)

    def _changed(self, panel_id: str) -> None:
        for callback in self._panel_changed:
            callback(panel_id)

    # -- health -------------------------------------------------------------------------------

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    # -- panels -------------------------------------------------------------------------------

    def list_panels(
        self,
        *,
        region: str | None = None,
        search: str | None = None,
        limit: int = 500,
        offset: int = 0,
        only_regions: frozenset[str] | None = None,
        only_panel: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Panels page and total; ``only_regions``/``only_panel`` apply a caller's scope."""
        p = schema.panels.c
        conditions: list[ColumnElement[bool]] = []
        if only_regions is not None:
            conditions.append(p.region.in_(sorted(only_regions)))
        if only_panel is not None:
            conditions.append(p.id == only_panel)
        if region is not None:
            conditions.append(p.region == region)
        if search:
            # Literal search: % _ and \ in the text are escaped, not LIKE wildcards.
            like = "%" + _like_escape(search.lower()) + "%"
            conditions.append(
                or_(
                    func.lower(p.id).like(like, escape="\\"),
                    func.lower(p.name).like(like, escape="\\"),
                    func.lower(func.coalesce(p.location, "")).like(like, escape="\\"),
                )
            )
        where = and_(*conditions) if conditions else None
        count_q = select(func.count()).select_from(schema.panels)
        rows_q = select(schema.panels).order_by(p.id).limit(limit).offset(offset)
        if where is not None:
            count_q = count_q.where(where)
            rows_q = rows_q.where(where)
        with self.engine.connect() as conn:
            total = conn.execute(count_q).scalar_one()
            rows = [dict(r._mapping) for r in conn.execute(rows_q)]
            seen = self._last_seen(conn, [r["id"] for r in rows])
        for row in rows:
            row["last_seen_ms"] = seen.get(row["id"])
        return rows, total

    def _last_seen(self, conn: Any, panel_ids: Sequence[str]) -> dict[str, int]:
        if not panel_ids:
            return {}
        s, lt = schema.series.c, schema.latest.c
        q = (
            select(s.panel_id, func.max(lt.ts_ms))
            .select_from(schema.latest.join(schema.series, s.id == lt.series_id))
            .where(s.panel_id.in_(panel_ids))
            .group_by(s.panel_id)
        )
        return {pid: ts for pid, ts in conn.execute(q)}

    def get_panel(self, panel_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.panels).where(schema.panels.c.id == panel_id)).first()
            if row is None:
                raise NotFoundError(f"panel {panel_id!r} not found")
            panel = dict(row._mapping)
            panel["last_seen_ms"] = self._last_seen(conn, [panel_id]).get(panel_id)
            panel["metrics"] = self.panel_metrics(panel_id, conn=conn)
        return panel

    def panel_metrics(self, panel_id: str, *, conn: Any = None) -> list[dict[str, Any]]:
        s = schema.series.c
        q = select(s.metric, s.known).where(s.panel_id == panel_id).order_by(s.metric)
        if conn is None:
            with self.engine.connect() as own:
                rows = own.execute(q).all()
        else:
            rows = conn.execute(q).all()
        return [{"metric": m, "known": bool(k)} for m, k in rows]

    # The panel writes take ``audit``: called inside the change's transaction with its
    # connection (and, for an update, the panel as it was), so the audit entry commits with
    # the change or neither does.

    def create_panel(
        self,
        panel_id: str,
        fields: dict[str, Any],
        *,
        audit: PanelAudit | None = None,
        max_panels: int | None = None,
    ) -> dict[str, Any]:
        now = _now_ms()
        values = {k: v for k, v in fields.items() if k in PANEL_FIELDS}
        values.setdefault("name", panel_id)
        values.setdefault("phases", 3)
        with self.engine.begin() as conn:
            if max_panels is not None:
                count = conn.execute(select(func.count()).select_from(schema.panels)).scalar_one()
                if count >= max_panels:
                    raise ConflictError(
                        f"this site has {count} panels, the most PELBIOT_MAX_PANELS allows",
                        details={"max_panels": max_panels},
                    )
            try:
                conn.execute(
                    insert(schema.panels).values(
                        id=panel_id, created_ms=now, updated_ms=now, **values
                    )
                )
            except IntegrityError:
                # Only the insert's: a failing audit insert is not a duplicate panel.
                raise ConflictError(f"panel {panel_id!r} already exists") from None
            if audit is not None:
                audit(conn, {})
        self._changed(panel_id)
        return self.get_panel(panel_id)

    def update_panel(
        self, panel_id: str, changes: dict[str, Any], *, audit: PanelAudit | None = None
    ) -> dict[str, Any]:
        values = {k: v for k, v in changes.items() if k in PANEL_FIELDS}
        p = schema.panels.c
        with self.engine.begin() as conn:
            # Read inside the transaction and locked (FOR UPDATE on PostgreSQL; SQLite's
            # transaction is IMMEDIATE): the audit's "from" values are the ones replaced.
            row = conn.execute(
                select(schema.panels).where(p.id == panel_id).with_for_update()
            ).first()
            if row is None:
                raise NotFoundError(f"panel {panel_id!r} not found")
            conn.execute(
                update(schema.panels).where(p.id == panel_id).values(updated_ms=_now_ms(), **values)
            )
            if audit is not None:
                audit(conn, dict(row._mapping))
        self._changed(panel_id)
        return self.get_panel(panel_id)

    def delete_panel(self, panel_id: str, *, audit: PanelAudit | None = None) -> None:
        """Delete a panel with all its readings."""
        s = schema.series.c
        with self.engine.begin() as conn:
            ids = list(conn.execute(select(s.id).where(s.panel_id == panel_id)).scalars())
            if ids:
                conn.execute(delete(schema.readings).where(schema.readings.c.series_id.in_(ids)))
                conn.execute(delete(schema.latest).where(schema.latest.c.series_id.in_(ids)))
                conn.execute(delete(schema.series).where(s.id.in_(ids)))
            result = conn.execute(delete(schema.panels).where(schema.panels.c.id == panel_id))
            if result.rowcount == 0:
                raise NotFoundError(f"panel {panel_id!r} not found")
            if audit is not None:
                audit(conn, {})
        for callback in self._panel_deleted:
            callback(panel_id)
        self._changed(panel_id)

    # -- latest -------------------------------------------------------------------------------

    def latest(self, panel_id: str | None = None) -> dict[str, dict[str, tuple[int, float]]]:
        """{panel: {metric: (ts_ms, value)}} from the latest table (no history scan)."""
        s, lt = schema.series.c, schema.latest.c
        q = select(s.panel_id, s.metric, lt.ts_ms, lt.value).select_from(
            schema.latest.join(schema.series, s.id == lt.series_id)
        )
        if panel_id is not None:
            q = q.where(s.panel_id == panel_id)
        out: dict[str, dict[str, tuple[int, float]]] = {}
        with self.engine.connect() as conn:
            for pid, metric, ts, value in conn.execute(q):
                out.setdefault(pid, {})[metric] = (ts, value)
        return out

    def panel_regions(self) -> dict[str, str | None]:
        """Every panel's region, for access checks (see directory.py)."""
        p = schema.panels.c
        with self.engine.connect() as conn:
            return {pid: region for pid, region in conn.execute(select(p.id, p.region))}

    def panel_exists(self, panel_id: str) -> bool:
        with self.engine.connect() as conn:
            q = select(schema.panels.c.id).where(schema.panels.c.id == panel_id)
            return conn.execute(q).first() is not None

    def require_panel(self, panel_id: str) -> None:
        if not self.panel_exists(panel_id):
            raise NotFoundError(f"panel {panel_id!r} not found")

    # -- history ------------------------------------------------------------------------------

    def _series_ids(self, conn: Any, panel_id: str, metrics: Sequence[str]) -> list[Any]:
        s = schema.series.c
        q = select(s.id, s.metric, s.known).where(s.panel_id == panel_id)
        if metrics:
            q = q.where(s.metric.in_(metrics))
        return list(conn.execute(q.order_by(s.metric)))

    def recent(self, panel_id: str, metric: str, limit: int) -> list[tuple[int, float]]:
        """The newest ``limit`` points of one series, newest first."""
        r = schema.readings.c
        with self.engine.connect() as conn:
            ids = self._series_ids(conn, panel_id, [metric])
            if not ids:
                return []
            q = (
                select(r.ts_ms, r.value)
                .where(r.series_id == ids[0][0])
                .order_by(r.ts_ms.desc())
                .limit(limit)
            )
            return [(ts, v) for ts, v in conn.execute(q)]

    def counter_increase(self, metric: str, start_ms: int) -> dict[str, float]:
        """Per panel, how much a cumulative counter grew since ``start_ms`` (max - min).

        A counter reset or meter swap within the range is not corrected here; the energy
        module (issue: energy and cost) handles those.
        """
        s, r = schema.series.c, schema.readings.c
        q = (
            select(s.panel_id, func.max(r.value) - func.min(r.value))
            .select_from(schema.readings.join(schema.series, s.id == r.series_id))
            .where(s.metric == metric, r.ts_ms >= start_ms)
            .group_by(s.panel_id)
        )
        with self.engine.connect() as conn:
            return {pid: float(delta or 0.0) for pid, delta in conn.execute(q)}

    # -- retention ----------------------------------------------------------------------------

    def purge_before(self, cutoff_ms: int) -> int:
        """Delete raw readings older than the cutoff: a series and at most a day of it per
        transaction, so locks stay short (the writer keeps writing) and no statement comes near
        the statement timeout, however much history has piled up."""
        r = schema.readings.c
        deleted = 0
        with self.engine.connect() as conn:
            sids = list(conn.execute(select(schema.series.c.id)).scalars())
        for sid in sids:
            while True:
                with self.engine.begin() as conn:
                    oldest = conn.execute(
                        select(func.min(r.ts_ms)).where(r.series_id == sid, r.ts_ms < cutoff_ms)
                    ).scalar()
                    if oldest is None:
                        break
                    until = min(oldest + _PURGE_SPAN_MS, cutoff_ms)
                    deleted += conn.execute(
                        delete(schema.readings).where(r.series_id == sid, r.ts_ms < until)
                    ).rowcount
        return deleted


_PURGE_SPAN_MS = 86_400_000


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _now_ms() -> int:
    return int(time.time() * 1000)
