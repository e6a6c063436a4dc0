"""API writes while ingest commits at full speed: no "database is locked", no 5xx.

On SQLite a deferred transaction that reads and then writes fails at once (SQLITE_BUSY, the
busy timeout does not help) when the ingest writer committed after its read; API transactions
therefore begin IMMEDIATE (storage/db.py). The same scenario runs on PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from pelbiot.models import Reading
from pelbiot.storage.db import make_engine
from tests.support.readings import T0
from tests.support.waiting import wait_for


class Feeder:
    """A thread submitting batches to the app's writer as fast as it takes them."""

    def __init__(self, client: TestClient) -> None:
        self._writer = client.app.state.runtime.writer  # type: ignore[attr-defined]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.commits = 0
        self._thread = threading.Thread(target=self._run, name="feeder")

    def _committed(self) -> None:
        with self._lock:
            self.commits += 1

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            readings = [
                Reading(f"feed{k % 10}", "voltage", T0 + n * 1000 + k // 10, 230.0 + k % 7)
                for k in range(200)
            ]
            self._writer.submit(readings, self._committed, timeout=1, messages=len(readings))
            n += 1

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive()


def test_panel_and_account_writes_succeed_while_ingest_commits(
    make_client: Callable[..., AbstractContextManager[TestClient]],
) -> None:
    with make_client() as client:
        for i in range(5):
            assert client.post("/api/v1/panels", json={"id": f"pa{i}"}).status_code == 201
        created = client.post(
            "/api/v1/users",
            json={"username": "bob", "password": "Secret-phrase-0-pelbiot", "role": "viewer"},
        )
        assert created.status_code == 201, created.text
        bob = created.json()["id"]
        failures: list[str] = []
        with Feeder(client) as feeder:
            wait_for(lambda: feeder.commits >= 3, 20, "ingest commits")
            before = feeder.commits
            for i in range(200):
                op = i % 4
                if op == 0:
                    r = client.patch(f"/api/v1/panels/pa{i % 5}", json={"notes": f"edit {i}"})
                    expected = 200
                elif op == 1:
                    r = client.post(
                        f"/api/v1/users/{bob}/password",
                        json={"new_password": f"Secret-phrase-{i}-pelbiot"},
                    )
                    expected = 204
                elif op == 2:
                    r = client.post("/api/v1/panels", json={"id": f"tmp{i}", "region": "r1"})
                    expected = 201
                else:
                    r = client.delete(f"/api/v1/panels/tmp{i - 1}")
                    expected = 204
                if r.status_code != expected:
                    failures.append(f"{r.request.method} {r.request.url.path}: {r.text}")
            during = feeder.commits - before
        assert failures == []
        assert during > 0, "ingest did not commit while the API wrote"


def test_reads_stay_deferred_and_explicit_transactions_take_the_write_lock(
    database_url: str,
) -> None:
    """``connect()`` reads do not hold the write lock; ``begin()`` takes it up front."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite locking")
    engine: Engine = make_engine(database_url)
    other: Engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        with engine.connect() as reader:
            reader.execute(text("SELECT count(*) FROM t")).scalar_one()
            # The reader holds no write lock: another connection writes meanwhile.
            with other.begin() as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        with engine.begin() as writer:
            # An explicit transaction holds the write lock before its first statement.
            assert _write_lock_taken(other)
            writer.exec_driver_sql("SELECT 1")
    finally:
        engine.dispose()
        other.dispose()


def _write_lock_taken(engine: Engine) -> bool:
    raw = engine.raw_connection()
    try:
        raw.driver_connection.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
        try:
            raw.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
        except Exception as exc:  # sqlite3.OperationalError: database is locked
            return "locked" in str(exc)
        raw.driver_connection.execute("ROLLBACK")  # type: ignore[union-attr]
        return False
    finally:
        raw.close()
