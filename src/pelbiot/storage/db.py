"""Engines per dialect. Users give ``sqlite:///path`` or ``postgresql://...``; we pick drivers."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from pelbiot.errors import ConfigError

logger = logging.getLogger(__name__)

KEEPALIVE_IDLE_S = 10
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 3
TCP_USER_TIMEOUT_MS = 30_000
# How long a SQLite write waits for the write lock (another connection's commit) before failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(url: str) -> str:
    """Pin the driver: psycopg 3 for PostgreSQL, the stdlib sqlite3 for SQLite."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(
    url: str, *, writer: bool = False, pool_size: int = 5, statement_timeout_s: float = 0.0
) -> Engine:
    """An engine for the API (reads and account/panel writes) or the single ingest writer.

    SQLite runs in WAL mode so readers never block the writer and the writer never blocks them.
    Every explicit transaction (``engine.begin()``, ``conn.begin()``) begins IMMEDIATE, so a
    read-then-write waits for the write lock up front (busy timeout) instead of failing with
    "database is locked" when another connection commits first; a transaction that begins
    implicitly on a ``connect()`` read stays deferred and takes no lock. The writer's
    connection commits with ``synchronous=FULL``: what ingest acknowledges survives power loss.
    On PostgreSQL, TCP keepalives notice a silently dead server within 30 s and
    ``statement_timeout_s`` (0 = no limit of ours) bounds every statement on the server.
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
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **({"pool_size": 1, "max_overflow": 0} if writer else {}),
        )
        turns = _write_turns(str(Path(database).expanduser().resolve()) if database else "")
        _sqlite_tuning(engine, synchronous="FULL" if writer else "NORMAL")
        _sqlite_begin(engine, turns, writer=writer)
        return engine
    kwargs: dict[str, Any] = {
        "pool_pre_ping": True,
        "pool_size": 1 if writer else pool_size,
        "max_overflow": 0 if writer else pool_size * 2,
        "connect_args": _postgres_connect_args(dict(parsed.query), statement_timeout_s),
    }
    return create_engine(url, **kwargs)


def _postgres_connect_args(url_query: dict[str, Any], statement_timeout_s: float) -> dict[str, Any]:
    """libpq parameters: bounded connect, TCP keepalives, optional server statement timeout.

    Without keepalives a server that vanishes without a FIN or RST (power loss, a dropped NAT
    entry) stalls the writer thread for the OS TCP timeout, many minutes. Parameters given in
    the URL's query string win over these defaults; ``options`` from the URL are kept.
    """
    args: dict[str, Any] = {
        "connect_timeout": 5,
        "application_name": "pelbiot",
        # Probe after 10 s of silence, every 5 s, give up after 3 misses. On Linux the
        # tcp_user_timeout below overrides the count, so a dead peer is dropped at about 30 s.
        "keepalives": 1,
        "keepalives_idle": KEEPALIVE_IDLE_S,
        "keepalives_interval": KEEPALIVE_INTERVAL_S,
        "keepalives_count": KEEPALIVE_COUNT,
    }
    if psycopg.pq.version() >= 120000:
        # Sent data left unacknowledged this long drops the connection (keepalives only probe
        # an idle socket). libpq < 12 refuses the parameter, so it is only given to 12+.
        args["tcp_user_timeout"] = TCP_USER_TIMEOUT_MS
    if statement_timeout_s > 0:
        option = f"-c statement_timeout={max(1, round(statement_timeout_s * 1000))}"
        theirs = url_query.get("options")
        args["options"] = f"{option} {theirs}" if isinstance(theirs, str) and theirs else option
    for name in url_query:
        if name != "options":
            args.pop(name, None)
    return args


def _sqlite_tuning(engine: Engine, *, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so BEGIN IMMEDIATE is ours to emit.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL (the writer): the WAL is synced at every commit, so an acknowledged reading
        # survives power loss. NORMAL (the API): durable against a process crash; an OS crash
        # may lose the last API commits, but never one that a later writer commit synced.
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA cache_size=-131072")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()


class _WriteTurns:
    """API writers waiting for a SQLite database's write lock, counted in this process.

    SQLite's busy handler polls (every 100 ms once it has waited a while), and the ingest
    writer under full load starts its next transaction microseconds after a commit, so a
    waiting API write could miss the gaps for seconds. The writer lets such waiters go first:
    before its next BEGIN it waits (bounded) until none is left. No lock is held across
    transactions, so nothing can deadlock; the worst case is the bounded pause.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting = 0

    @contextmanager
    def waiting(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
        try:
            yield
        finally:
            with self._cond:
                self._waiting -= 1
                self._cond.notify_all()

    def let_waiters_go(self, timeout_s: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._waiting == 0, timeout_s)


_turns_lock = threading.Lock()
_turns: weakref.WeakValueDictionary[str, _WriteTurns] = weakref.WeakValueDictionary()
WRITER_YIELD_MAX_S = 0.5


def _write_turns(database: str) -> _WriteTurns:
    """The one _WriteTurns per database file in this process (engines keep it alive)."""
    with _turns_lock:
        turns = _turns.get(database)
        if turns is None:
            turns = _turns[database] = _WriteTurns()
        return turns


def _sqlite_begin(engine: Engine, turns: _WriteTurns, *, writer: bool) -> None:
    # Connections whose transaction is about to begin implicitly, inside a statement
    # (``connect()`` then a read): those begin deferred. Keyed by the Connection object, which
    # lives for one ``with engine.connect()`` block, so nothing leaks to the next user.
    implicit: weakref.WeakSet[Connection] = weakref.WeakSet()

    @event.listens_for(engine, "before_execute")
    def _before_execute(conn: Connection, *_args: Any) -> None:
        if not conn.in_transaction():
            implicit.add(conn)  # SQLAlchemy autobegins before running this statement

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        deferred = conn in implicit
        try:
            if deferred:
                conn.exec_driver_sql("BEGIN")
            elif writer:
                turns.let_waiters_go(WRITER_YIELD_MAX_S)
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                with turns.waiting():
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
        finally:
            # This BEGIN passed through _before_execute too: the mark is spent either way.
            implicit.discard(conn)
