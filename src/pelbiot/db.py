"""Engines per dialect. Users give ``sqlite:///path`` or ``postgresql://...``; we pick drivers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from pelbiot.errors import ConfigError

logger = logging.getLogger(__name__)


def normalize_url(url: str) -> str:
    """Pin the driver: psycopg 3 for PostgreSQL, the stdlib sqlite3 for SQLite."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, *, writer: bool = False, pool_size: int = 5) -> Engine:
    """An engine for readers (deferred transactions) or the single writer (BEGIN IMMEDIATE).

    SQLite runs in WAL mode so readers never block the writer and the writer never blocks them.
    """
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(f"PELBIOT_DATABASE_URL: cannot parse {url!r}: {exc}") from None
    if is_sqlite(url):
        database = parsed.database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # The writer keeps one connection open: opening one per batch (and its PRAGMAs) cost
        # about half the CPU of a small commit (docs/performance.md).
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            **({"pool_size": 1, "max_overflow": 0} if writer else {}),
        )
        _sqlite_tuning(engine, begin="BEGIN IMMEDIATE" if writer else "BEGIN")
        return engine
    kwargs: dict[str, Any] = {
        "pool_pre_ping": True,
        "pool_size": 1 if writer else pool_size,
        "max_overflow": 0 if writer else pool_size * 2,
        "connect_args": {"connect_timeout": 5, "application_name": "pelbiot"},
    }
    return create_engine(url, **kwargs)


def _sqlite_tuning(engine: Engine, *, begin: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so BEGIN IMMEDIATE is ours to emit.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode is durable against process crashes (SIGKILL); only an OS crash
        # or power loss can lose the last transactions.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA cache_size=-131072")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)
