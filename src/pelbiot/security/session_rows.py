"""Session rows shared by users (a disable or reset ends sessions) and sessions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from pelbiot.decode.timestamps import utc_now_ms
from pelbiot.storage import schema


def revoke_user_sessions(conn: Any, user_id: int, *, keep: str | None = None) -> None:
    """End every open session of a user, in the caller's transaction; ``keep`` spares one."""
    c = schema.sessions.c
    query = update(schema.sessions).where(c.user_id == user_id, c.revoked_ms.is_(None))
    if keep is not None:
        query = query.where(c.id != keep)
    conn.execute(query.values(revoked_ms=utc_now_ms()))


def end_session(conn: Any, session_id: str) -> None:
    """End one session (if still open), in the caller's transaction."""
    c = schema.sessions.c
    conn.execute(
        update(schema.sessions)
        .where(c.id == session_id, c.revoked_ms.is_(None))
        .values(revoked_ms=utc_now_ms())
    )
