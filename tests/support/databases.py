"""Test databases: a SQLite file in a temp dir, or a fresh PostgreSQL database per test.

``PELBIOT_TEST_DATABASE_URL`` selects PostgreSQL (an admin URL such as
postgresql://postgres@127.0.0.1/postgres); unset runs on SQLite.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

ADMIN_URL = os.environ.get("PELBIOT_TEST_DATABASE_URL", "")
DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def backend() -> str:
    return "postgresql" if ADMIN_URL.startswith("postgres") else "sqlite"


def _with_database(url: str, name: str) -> str:
    base, _, _old = url.rpartition("/")
    return f"{base}/{name}"


def postgres_admin_url() -> str:
    """The PostgreSQL admin URL: the configured one, else the usual local server (tests that
    need PostgreSQL even in the SQLite run, such as the database-outage fault test)."""
    return ADMIN_URL if backend() == "postgresql" else DEFAULT_POSTGRES_ADMIN_URL


@contextmanager
def fresh_database(tmp_path: Path) -> Iterator[str]:
    if backend() == "sqlite":
        yield f"sqlite:///{tmp_path / 'pelbiot.db'}"
        return
    with fresh_postgres_database(ADMIN_URL) as url:
        yield url


@contextmanager
def fresh_postgres_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards; skips the test if unreachable."""
    name = f"pelbiot_t_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {admin_url} is not reachable: {exc}")
    try:
        yield _with_database(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_STORED = "SELECT s.panel_id, s.metric, r.ts_ms FROM readings r JOIN series s ON s.id = r.series_id"


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the database behind a PELBIOT URL with the plain driver, not PELBIOT."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            return conn.execute(sql).fetchall()
    conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, connect_timeout=5) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def count_readings(url: str) -> int:
    """``SELECT count(*) FROM readings``: every stored row, duplicates included if any."""
    return int(query(url, "SELECT count(*) FROM readings")[0][0])


def stored_readings(url: str) -> list[tuple[str, str, int]]:
    """Every stored reading as (panel, metric, ts_ms), one entry per row."""
    return [(str(p), str(m), int(ts)) for p, m, ts in query(url, _STORED)]
