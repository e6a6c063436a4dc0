"""The audit log: who did what, when, from where, and what changed."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from pelbiot.storage import schema

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    success: bool | None = None
    limit: int = 100
    before_id: int | None = None


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def record(
        self,
        action: str,
        *,
        actor: str,
        target: str | None = None,
        address: str | None = None,
        success: bool = True,
        details: dict[str, Any] | None = None,
        conn: Connection | None = None,
    ) -> None:
        """Write one entry (inside ``conn``'s transaction when given, so it commits with the
        change it describes)."""
        values = {
            "ts_ms": int(time.time() * 1000),
            "actor": actor[:100],
            "action": action,
            "target": target[:200] if target else None,
            "address": address[:64] if address else None,
            "success": success,
            "details": json.dumps(details, default=str, sort_keys=True) if details else None,
        }
        if conn is not None:
            conn.execute(insert(schema.audit_log).values(values))
            return
        with self._engine.begin() as own:
            own.execute(insert(schema.audit_log).values(values))

    def query(self, q: AuditQuery) -> list[dict[str, Any]]:
        a = schema.audit_log.c
        stmt = select(schema.audit_log).order_by(a.id.desc()).limit(q.limit)
        if q.actor:
            stmt = stmt.where(a.actor == q.actor)
        if q.action:
            stmt = stmt.where(a.action == q.action)
        if q.target:
            stmt = stmt.where(a.target == q.target)
        if q.since_ms is not None:
            stmt = stmt.where(a.ts_ms >= q.since_ms)
        if q.until_ms is not None:
            stmt = stmt.where(a.ts_ms < q.until_ms)
        if q.success is not None:
            stmt = stmt.where(a.success == q.success)
        if q.before_id is not None:
            stmt = stmt.where(a.id < q.before_id)
        with self._engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(stmt)]
        for row in rows:
            row["details"] = json.loads(row["details"]) if row["details"] else None
        return rows
