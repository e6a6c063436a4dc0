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
            # made with key "a" (ani's), and with that key in turn: both bound to ani
            conn.execute(text(_KEY), {"name": "b", "prefix": "bbbbbbbbbbbb", "by": "key:a"})
            conn.execute(text(_KEY), {"name": "b2", "prefix": "bbbbbbbbbbb2", "by": "key:b"})
            # makers that cannot be found: a key that no longer exists, a renamed user
            conn.execute(text(_KEY), {"name": "k", "prefix": "kkkkkkkkkkkk", "by": "key:x"})
            conn.execute(text(_KEY), {"name": "g", "prefix": "gggggggggggg", "by": "gone"})
        upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT name, created_by_user_id FROM api_keys"))
            owners = {name: owner for name, owner in rows}
            ani = conn.execute(text("SELECT id FROM users WHERE username = 'ani'")).scalar_one()
        # No upgraded key escapes a bound: an unknown maker means no user (0), so suspended.
        assert owners == {"a": ani, "b": ani, "b2": ani, "c": None, "k": 0, "g": 0}
    finally:
        engine.dispose()


def test_keys_with_an_empty_region_are_revoked(database_url: str) -> None:
    """An empty region used to mean every region; after the upgrade such a key is refused."""
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0002")
        with engine.begin() as conn:
            conn.execute(text(_KEY), {"name": "e", "prefix": "eeeeeeeeeeee", "by": "cli"})
            conn.execute(text(_KEY), {"name": "n", "prefix": "nnnnnnnnnnnn", "by": "cli"})
            conn.execute(text("UPDATE api_keys SET region = '' WHERE name = 'e'"))
        upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT name, revoked_ms FROM api_keys"))
            revoked = {name: when for name, when in rows}
        assert revoked["n"] is None
        assert revoked["e"] is not None and revoked["e"] > 1_700_000_000_000
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
