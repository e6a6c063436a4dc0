"""What ingest acknowledges survives power loss: the writer's commits reach the disk."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from pelbiot.runtime import Runtime
from pelbiot.settings import Settings
from pelbiot.storage.db import make_engine


def _setting(engine: Engine) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return str(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())
        return str(conn.exec_driver_sql("SHOW synchronous_commit").scalar_one())


def test_the_writer_connection_syncs_every_commit(database_url: str) -> None:
    engine = make_engine(database_url, writer=True)
    try:
        # SQLite: 2 is FULL (the WAL is fsynced at each commit; NORMAL, 1, is not).
        # PostgreSQL: a commit returns once its WAL record is flushed.
        assert _setting(engine) == ("2" if engine.dialect.name == "sqlite" else "on")
    finally:
        engine.dispose()


def test_the_runtime_writer_is_the_durable_engine(make_settings: Callable[..., Settings]) -> None:
    runtime = Runtime.build(make_settings())
    try:
        expected = "2" if runtime.writer_engine.dialect.name == "sqlite" else "on"
        assert _setting(runtime.writer_engine) == expected
    finally:
        runtime.writer_engine.dispose()
        runtime.engine.dispose()
