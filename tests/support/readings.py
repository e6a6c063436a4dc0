"""Reading-level helpers: what a database holds, and an injected insert fault."""

from __future__ import annotations

import threading
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from pelbiot.models import Reading

T0 = 1_795_316_400_000  # 2026-11-22T10:00:00+07:00


def stored(engine: Engine) -> list[tuple[str, str, int, float]]:
    query = text(
        "SELECT s.panel_id, s.metric, r.ts_ms, r.value FROM readings r "
        "JOIN series s ON s.id = r.series_id ORDER BY 1, 2, 3"
    )
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]  # type: ignore[misc]


def block_inserts(engine: Engine) -> None:
    """Inject a fault: every insert into readings fails in the database."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER fault BEFORE INSERT ON readings "
                "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION fault() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'injected fault'; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER fault BEFORE INSERT ON readings "
                "FOR EACH ROW EXECUTE FUNCTION fault()"
            )


def unblock_inserts(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER fault")
        else:
            conn.exec_driver_sql("DROP TRIGGER fault ON readings")
            conn.exec_driver_sql("DROP FUNCTION fault()")


def store(client: TestClient, readings: list[Reading]) -> None:
    """Write through the same writer every ingest path uses, and wait for the commit."""
    done = threading.Event()
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    assert runtime.writer.submit(readings, done.set, timeout=5)
    assert done.wait(10), "writer did not commit"


def latest(engine: Engine) -> dict[tuple[str, str], tuple[int, float]]:
    """The latest table: (panel, metric) -> (ts_ms, value)."""
    query = text(
        "SELECT s.panel_id, s.metric, l.ts_ms, l.value FROM latest l "
        "JOIN series s ON s.id = l.series_id"
    )
    with engine.connect() as conn:
        return {(p, m): (ts, v) for p, m, ts, v in conn.execute(query)}


def latest_by_panel(client: TestClient) -> dict[str, Any]:
    """GET /api/v1/latest as panel id -> its values by metric."""
    return {row["panel_id"]: row["values"] for row in client.get("/api/v1/latest").json()}
