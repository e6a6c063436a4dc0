"""SQLAlchemy Core tables. Alembic migrations in ``pelbiot/migrations`` create them.

Layout, chosen for ingest speed (docs/architecture.md):
- ``series`` maps (panel, metric) to a small integer, so a reading row is three numbers;
- ``readings`` is keyed (series_id, ts_ms): the unique key makes redelivery idempotent, and on
  SQLite it is a WITHOUT ROWID table so the key is the only B-tree written;
- ``latest`` holds the newest value per series, so "latest" never scans history.
Timestamps are UTC epoch milliseconds.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

panels = Table(
    "panels",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("region", String(100), nullable=True, index=True),
    Column("location", String(200), nullable=True),
    Column("phases", Integer, nullable=False, default=3),
    Column("nominal_voltage", Float, nullable=True),
    Column("rated_current", Float, nullable=True),
    Column("kva_rating", Float, nullable=True),
    Column("notes", Text, nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

series = Table(
    "series",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "panel_id",
        String(64),
        ForeignKey("panels.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("metric", String(64), nullable=False),
    Column("known", Boolean, nullable=False, default=True),
    UniqueConstraint("panel_id", "metric", name="uq_series_panel_metric"),
    sqlite_autoincrement=True,
)

readings = Table(
    "readings",
    metadata,
    Column("series_id", Integer, primary_key=True, autoincrement=False),
    Column("ts_ms", BigInteger, primary_key=True, autoincrement=False),
    Column("value", Float, nullable=False),
    sqlite_with_rowid=False,
)

latest = Table(
    "latest",
    metadata,
    Column("series_id", Integer, primary_key=True, autoincrement=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
)
