"""Migration 0003 on existing data: keys matched to their creators, case duplicates refused."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from pelbiot.storage.db import make_engine
from pelbiot.storage.migrations import upgrade

_USER = (
    "INSERT INTO users (username, password_hash, role, disabled, failed_logins, "
    "password_changed_ms, created_ms, updated_ms) VALUES (:name, 'x', 'admin', false, 0, 0, 0, 0)"
)
_KEY = (
    "INSERT INTO api_keys (name, prefix, key_hash, scopes, created_ms, created_by) "
    "VALUES (:name, :prefix, 'h', 'read', 0, :by)"
)


def test_existing_keys_are_bound_to_the_user_who_made_them(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0002")
        with engine.begin() as conn:
            conn.execute(text(_USER), {"name": "ani"})
            conn.execute(text(_KEY), {"name": "a", "prefix": "aaaaaaaaaaaa", "by": "ani"})
            conn.execute(text(_KEY), {"name": "c", "prefix": "cccccccccccc", "by": "cli"})
            conn.execute(text(_KEY), {"name": "k", "prefix": "kkkkkkkkkkkk", "by": "key:x"})
        upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT name, created_by_user_id FROM api_keys"))
            owners = {name: owner for name, owner in rows}
            ani = conn.execute(text("SELECT id FROM users WHERE username = 'ani'")).scalar_one()
        assert owners == {"a": ani, "c": None, "k": None}
    finally:
        engine.dispose()


def test_usernames_differing_only_in_case_stop_the_upgrade_naming_them(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0002")
        with engine.begin() as conn:
            for name in ("Budi", "budi", "Sari"):
                conn.execute(text(_USER), {"name": name})
        with pytest.raises(RuntimeError, match="budi") as refused:
            upgrade(engine)
        assert "Rename or remove" in str(refused.value)
        with engine.begin() as conn:
            conn.execute(text("UPDATE users SET username = 'budi2' WHERE username = 'budi'"))
        upgrade(engine)  # once resolved, the upgrade goes through
        with engine.begin() as conn, pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            conn.execute(text(_USER), {"name": "SARI"})
    finally:
        engine.dispose()
