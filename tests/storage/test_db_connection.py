"""PostgreSQL connections: TCP keepalives against a silently dead server, a statement timeout.

The server tests need ``PELBIOT_TEST_DATABASE_URL`` (PostgreSQL); the others run everywhere.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError

from pelbiot.errors import ConfigError
from pelbiot.runtime import Runtime
from pelbiot.settings import Settings, load_settings
from pelbiot.storage.db import (
    KEEPALIVE_COUNT,
    KEEPALIVE_IDLE_S,
    KEEPALIVE_INTERVAL_S,
    TCP_USER_TIMEOUT_MS,
    make_engine,
)
from tests.support.databases import backend

needs_postgres = pytest.mark.skipif(
    backend() != "postgresql",
    reason="needs PostgreSQL: set PELBIOT_TEST_DATABASE_URL, "
    "e.g. postgresql://postgres@127.0.0.1:5432/postgres",
)


@contextmanager
def engine_for(url: str, **kwargs: Any) -> Iterator[Engine]:
    engine = make_engine(url, **kwargs)
    try:
        yield engine
    finally:
        engine.dispose()


class _Captured(Exception):
    pass


def connect_params(engine: Engine) -> dict[str, Any]:
    """The keyword arguments the engine hands to psycopg.connect, caught before any I/O."""
    captured: dict[str, Any] = {}

    @event.listens_for(engine, "do_connect")
    def _capture(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        captured.update(cparams)
        raise _Captured

    with pytest.raises(_Captured):
        engine.connect()
    return captured


def show(engine: Engine, name: str) -> str:
    with engine.connect() as conn:
        return str(conn.exec_driver_sql(f"SHOW {name}").scalar_one())


# -- settings -------------------------------------------------------------------------------


def test_statement_timeout_setting_defaults_to_60_s_and_0_disables() -> None:
    assert load_settings().db_statement_timeout_s == 60.0
    assert load_settings(db_statement_timeout_s=0).db_statement_timeout_s == 0.0
    assert load_settings(db_statement_timeout_s=2.5).db_statement_timeout_s == 2.5


@pytest.mark.parametrize("value", ["-1", "-0.5", "inf", "nan"])
def test_a_bad_statement_timeout_is_refused_by_name(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PELBIOT_DB_STATEMENT_TIMEOUT_S", value)
    with pytest.raises(ConfigError, match="PELBIOT_DB_STATEMENT_TIMEOUT_S"):
        load_settings()


# -- connect arguments (no server needed) ---------------------------------------------------


def test_postgres_engines_ask_for_keepalives_and_the_statement_timeout() -> None:
    for writer in (False, True):
        engine = make_engine(
            "postgresql://nobody@127.0.0.1:1/none", writer=writer, statement_timeout_s=1.5
        )
        params = connect_params(engine)
        assert params["keepalives"] == 1
        assert params["keepalives_idle"] == KEEPALIVE_IDLE_S
        assert params["keepalives_interval"] == KEEPALIVE_INTERVAL_S
        assert params["keepalives_count"] == KEEPALIVE_COUNT
        # A dead peer is given up after idle + interval * count seconds.
        assert KEEPALIVE_IDLE_S + KEEPALIVE_INTERVAL_S * KEEPALIVE_COUNT <= 30
        assert params["tcp_user_timeout"] == TCP_USER_TIMEOUT_MS <= 30_000
        assert params["options"] == "-c statement_timeout=1500"
        assert params["connect_timeout"] == 5


def test_no_statement_timeout_of_ours_when_it_is_0() -> None:
    params = connect_params(make_engine("postgresql://nobody@127.0.0.1:1/none"))
    assert "options" not in params
    params = connect_params(
        make_engine("postgresql://nobody@127.0.0.1:1/none", statement_timeout_s=0)
    )
    assert "options" not in params
    assert params["keepalives"] == 1


def test_libpq_parameters_in_the_url_win_and_url_options_are_kept() -> None:
    url = "postgresql://nobody@127.0.0.1:1/none?keepalives_idle=60&options=-c%20search_path%3Dplant"
    params = connect_params(make_engine(url, statement_timeout_s=2))
    assert params["keepalives_idle"] == "60"
    assert params["keepalives_interval"] == KEEPALIVE_INTERVAL_S
    assert params["options"] == "-c statement_timeout=2000 -c search_path=plant"


def test_sqlite_engines_take_the_timeout_argument_and_ignore_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with engine_for(url, statement_timeout_s=1) as engine, engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1


# -- against the server ---------------------------------------------------------------------


@needs_postgres
@pytest.mark.parametrize("writer", [False, True])
def test_a_statement_longer_than_the_timeout_is_cancelled(database_url: str, writer: bool) -> None:
    with engine_for(database_url, writer=writer, statement_timeout_s=1) as engine:
        assert show(engine, "statement_timeout") == "1s"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_sleep(0.2), 1")).one()[1] == 1
        started = time.monotonic()
        with pytest.raises(OperationalError) as info, engine.connect() as conn:
            conn.execute(text("SELECT pg_sleep(3)"))
        elapsed = time.monotonic() - started
        assert isinstance(info.value, DBAPIError)
        assert "canceling statement due to statement timeout" in str(info.value)
        assert getattr(info.value.orig, "sqlstate", None) == "57014"  # query_canceled
        assert elapsed < 2.5, elapsed
        # The pool hands out a working connection afterwards.
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1


@needs_postgres
def test_without_a_timeout_the_server_default_applies(database_url: str) -> None:
    with engine_for(database_url, statement_timeout_s=0) as engine:
        assert show(engine, "statement_timeout") == "0"


@needs_postgres
def test_the_connection_socket_carries_the_keepalive_options(database_url: str) -> None:
    """The kernel's own view of the socket libpq opened, not just what we asked for."""
    if not all(hasattr(socket, n) for n in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT")):
        pytest.skip("TCP keepalive socket options are not readable on this platform")
    with engine_for(database_url, writer=True) as engine, engine.connect() as conn:
        fileno = conn.connection.dbapi_connection.fileno()  # type: ignore[union-attr]
        sock = socket.socket(fileno=os.dup(fileno))
        try:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                pytest.skip("the test database is reached over a Unix socket (no TCP)")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE_S
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == (
                KEEPALIVE_INTERVAL_S
            )
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == KEEPALIVE_COUNT
            if hasattr(socket, "TCP_USER_TIMEOUT"):
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == (
                    TCP_USER_TIMEOUT_MS
                )
        finally:
            sock.close()


@needs_postgres
def test_the_runtime_engines_take_the_timeout_from_the_settings(
    make_settings: Callable[..., Settings],
) -> None:
    runtime = Runtime.build(make_settings(db_statement_timeout_s=2.5))
    try:
        assert show(runtime.engine, "statement_timeout") == "2500ms"
        assert show(runtime.writer_engine, "statement_timeout") == "2500ms"
    finally:
        runtime.writer_engine.dispose()
        runtime.engine.dispose()
