"""Test databases: a SQLite file in a temp dir, or a fresh PostgreSQL database per test.

``PELBIOT_TEST_DATABASE_URL`` selects PostgreSQL (an admin URL such as
postgresql://postgres@127.0.0.1/postgres); unset runs on SQLite.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

ADMIN_URL = os.environ.get("PELBIOT_TEST_DATABASE_URL", "")


def backend() -> str:
    return "postgresql" if ADMIN_URL.startswith("postgres") else "sqlite"


def _with_database(url: str, name: str) -> str:
    base, _, _old = url.rpartition("/")
    return f"{base}/{name}"


@contextmanager
def fresh_database(tmp_path: Path) -> Iterator[str]:
    if backend() == "sqlite":
        yield f"sqlite:///{tmp_path / 'pelbiot.db'}"
        return
    name = f"pelbiot_t_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {ADMIN_URL} is not reachable: {exc}")
    try:
        yield _with_database(ADMIN_URL, name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
