"""Login throttling and account lockout: sliding windows per address and per account, and the
failed-login count kept in the database so parallel guesses on several workers all count."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine, and_, case, select, update

from pelbiot.errors import RateLimitedError
from pelbiot.security.audit import AuditLog
from pelbiot.security.throttle import SlidingWindow
from pelbiot.settings import Settings
from pelbiot.storage import schema

logger = logging.getLogger(__name__)


class Lockout:
    def __init__(self, engine: Engine, settings: Settings, audit: AuditLog) -> None:
        self._engine = engine
        self._settings = settings
        self._audit = audit
        self._per_address = SlidingWindow(limit=settings.login_attempts_per_address, window_s=300)
        self._per_account = SlidingWindow(limit=settings.login_attempts_per_account, window_s=60)

    def admit(self, username: str, address: str) -> None:
        """Raise RateLimitedError when this address or this account has tried too often."""
        wait = self._per_address.retry_after(address)
        if wait:
            self._audit.record(
                "login.throttled", actor=username[:64], address=address, success=False
            )
            raise RateLimitedError("too many login attempts from this address", retry_after=wait)
        wait = self._per_account.hit(username.lower())
        if wait:
            self._per_address.hit(address)
            self._audit.record(
                "login.throttled", actor=username[:64], address=address, success=False
            )
            raise RateLimitedError("too many login attempts for this account", retry_after=wait)

    def failed(self, address: str) -> None:
        """A failed login from ``address`` (any reason) counts against the address."""
        self._per_address.hit(address)

    def succeeded(self, username: str) -> None:
        self._per_account.reset(username.lower())

    def reset(self, username: str) -> None:
        self._per_account.reset(username.lower())

    def record_wrong_password(self, row: dict[str, Any], address: str, now: int) -> None:
        """Count a wrong password in the database (atomically: parallel guesses, even from
        several workers, all count) and lock the account at the threshold."""
        c = schema.users.c
        # A lock that has run out starts the count afresh (else one typo would lock again).
        ran_out = and_(c.locked_until_ms.is_not(None), c.locked_until_ms <= now)
        with self._engine.begin() as conn:
            conn.execute(
                update(schema.users)
                .where(c.id == row["id"])
                .values(
                    failed_logins=case((ran_out, 1), else_=c.failed_logins + 1),
                    locked_until_ms=case((ran_out, None), else_=c.locked_until_ms),
                )
            )
            failures, until = conn.execute(
                select(c.failed_logins, c.locked_until_ms).where(c.id == row["id"])
            ).one()
            locked = failures >= self._settings.lockout_threshold and until is None
            if locked:
                conn.execute(
                    update(schema.users)
                    .where(c.id == row["id"])
                    .values(locked_until_ms=now + self._settings.lockout_minutes * 60_000)
                )
            self._audit.record(
                "login.failed",
                actor=row["username"],
                address=address,
                success=False,
                details={"reason": "wrong password", "failures": failures},
                conn=conn,
            )
            if locked:
                self._audit.record(
                    "user.lockout",
                    actor=row["username"],
                    target=row["username"],
                    address=address,
                    success=False,
                    details={"failures": failures, "minutes": self._settings.lockout_minutes},
                    conn=conn,
                )
                logger.warning(
                    "account %r locked after %d failed logins", row["username"], failures
                )
