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
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
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

# --- accounts, keys and audit (issue #5) ---------------------------------------------------

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(20), nullable=False),
    Column("regions", Text, nullable=True),  # JSON list; NULL = every region
    Column("disabled", Boolean, nullable=False, default=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until_ms", BigInteger, nullable=True),
    Column("password_changed_ms", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    sqlite_autoincrement=True,
)
# Usernames are unique ignoring case (migration 0003); login matches them ignoring case.
Index("uq_users_username_lower", func.lower(users.c.username), unique=True)

# Failed logins per (account, address): lockout and back-off hit the guessing address only.
login_failures = Table(
    "login_failures",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("address", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_failure_ms", BigInteger, nullable=False),
    Column("locked_until_ms", BigInteger, nullable=True),
)

password_history = Table(
    "password_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("refresh_hash", String(128), nullable=False),
    # The secret the last rotation replaced: presenting it again means the token was stolen.
    Column("previous_refresh_hash", String(128), nullable=True),
    # When it was replaced: a replay right after a rotation is a race between tabs, not a theft.
    Column("rotated_ms", BigInteger, nullable=True),
    Column("rotated_from", String(64), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("revoked_ms", BigInteger, nullable=True),
    Column("address", String(64), nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("prefix", String(16), nullable=False, unique=True),
    Column("key_hash", String(128), nullable=False),
    Column("scopes", String(100), nullable=False),  # comma-separated: ingest,read,admin
    Column("panel_id", String(64), nullable=True),
    Column("region", String(100), nullable=True),
    Column("expires_ms", BigInteger, nullable=True),
    Column("revoked_ms", BigInteger, nullable=True),
    Column("last_used_ms", BigInteger, nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", String(64), nullable=False),
    # The user whose current rights bound the key; NULL = made by the CLI (own scopes only).
    Column("created_by_user_id", Integer, nullable=True),
    sqlite_autoincrement=True,
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts_ms", BigInteger, nullable=False, index=True),
    Column("actor", String(100), nullable=False),
    Column("action", String(64), nullable=False, index=True),
    Column("target", String(200), nullable=True),
    Column("address", String(64), nullable=True),
    Column("success", Boolean, nullable=False),
    Column("details", Text, nullable=True),  # JSON
    sqlite_autoincrement=True,
)

# --- device credentials for the broker (issue #9) ------------------------------------------

devices = Table(
    "devices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),  # the MQTT username
    Column("password_hash", String(255), nullable=False),  # Mosquitto's $7$ PBKDF2-SHA512
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("disabled_ms", BigInteger, nullable=True),
    Column("created_by", String(64), nullable=False),
    sqlite_autoincrement=True,
)
# MQTT usernames are case-sensitive, people are not: no two devices differ only by case.
Index("uq_devices_name_lower", func.lower(devices.c.name), unique=True)

device_panels = Table(
    "device_panels",
    metadata,
    Column(
        "device_id",
        Integer,
        ForeignKey("devices.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    # No foreign key: a device may be set up before its panel's first reading creates it.
    Column("panel_id", String(64), primary_key=True),
)
