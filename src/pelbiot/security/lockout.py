"""Login throttling and lockout, keyed by (account, address) so guessing cannot lock anyone out.

A lock per account alone lets anyone lock any account (admins included) with ten wrong passwords
from anywhere. Here every limit that concerns an account is per (account, address):

- back-off: after ``login_backoff_after`` consecutive failures of a name from one address, that
  address must wait ``login_backoff_s``, doubling with each further failure (429, Retry-After).
  It is kept in memory for every name, known or not, so it reveals nothing about which exist;
- lockout: ``lockout_threshold`` wrong passwords from one address lock that address out of that
  account for ``lockout_minutes`` (kept in the database, so parallel guesses on several workers
  all count). The owner logging in from elsewhere is not affected. Each lockout is audited as
  ``user.lockout`` and logged as a WARNING; an admin unlock lifts every address's lock;
- the per-address sliding window (failed logins per address, any account) stays as it was;
- guesses spread over many addresses lock nothing, so every ``5 x lockout_threshold`` wrong
  passwords for one account since its last good login are audited as ``user.guessing`` and
  logged as a WARNING, for admins to act on.

IPv6 addresses count per /64, the block one subscriber usually holds.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, and_, case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from pelbiot.errors import RateLimitedError
from pelbiot.security.audit import AuditLog
from pelbiot.security.throttle import SlidingWindow
from pelbiot.settings import Settings
from pelbiot.storage import schema

logger = logging.getLogger(__name__)

# Account-wide failures (any address) per alert, in lockout thresholds: 5 x 10 = every 50.
_SPREAD_FACTOR = 5
# A (account, address) failure count with no lock and no failure for this long is forgotten.
FORGET_FAILURES_AFTER_MS = 86_400_000


def address_key(address: str) -> str:
    """The unit an address is counted in: itself, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Backoff:
    """Consecutive failures per key and when the last one was; bounded in keys."""

    def __init__(
        self,
        *,
        after: int,
        base_s: float,
        cap_s: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._after = after
        self._base_s = base_s
        self._cap_s = cap_s
        self._max_keys = max_keys
        self._clock = clock
        self._state: dict[tuple[str, str], tuple[int, float]] = {}
        self._lock = threading.Lock()

    def wait(self, key: tuple[str, str]) -> float:
        """Seconds this key must still wait before its next attempt (0: may try now)."""
        with self._lock:
            failures, last = self._state.get(key, (0, 0.0))
        if self._base_s <= 0 or failures < self._after:
            return 0.0
        delay = min(self._base_s * 2.0 ** (failures - self._after), self._cap_s)
        return max(0.0, last + delay - self._clock())

    def failed(self, key: tuple[str, str]) -> None:
        with self._lock:
            failures, _ = self._state.pop(key, (0, 0.0))
            if len(self._state) >= self._max_keys:
                self._state.pop(next(iter(self._state)))
            self._state[key] = (failures + 1, self._clock())

    def reset(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._state.pop(key, None)

    def reset_name(self, name: str) -> None:
        with self._lock:
            for key in [k for k in self._state if k[0] == name]:
                del self._state[key]


class Lockout:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        audit: AuditLog,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._audit = audit
        self._per_address = SlidingWindow(
            limit=settings.login_attempts_per_address, window_s=300, clock=clock
        )
        self._per_account = SlidingWindow(
            limit=settings.login_attempts_per_account, window_s=60, clock=clock
        )
        self._backoff = Backoff(
            after=settings.login_backoff_after,
            base_s=settings.login_backoff_s,
            cap_s=settings.lockout_minutes * 60,
            clock=clock,
        )

    @staticmethod
    def _key(username: str, address: str) -> tuple[str, str]:
        return username.lower(), address_key(address)

    def admit(self, username: str, address: str) -> None:
        """Raise RateLimitedError when this address, or this address for this account, has
        tried too often or must still back off."""
        where = address_key(address)
        wait = self._per_address.retry_after(where)
        if wait:
            self._throttled(username, address, "address")
            raise RateLimitedError("too many login attempts from this address", retry_after=wait)
        key = self._key(username, address)
        wait = self._backoff.wait(key) or self._per_account.hit("|".join(key))
        if wait:
            self._per_address.hit(where)
            self._throttled(username, address, "account")
            raise RateLimitedError(
                "too many login attempts for this account from this address", retry_after=wait
            )

    def _throttled(self, username: str, address: str, scope: str) -> None:
        self._audit.record(
            "login.throttled",
            actor=username[:64],
            address=address,
            success=False,
            details={"scope": scope},
        )

    def failed(self, username: str, address: str) -> None:
        """A failed login (any reason, known name or not) counts against the address and
        lengthens this address's back-off for this name."""
        self._per_address.hit(address_key(address))
        self._backoff.failed(self._key(username, address))

    def succeeded(self, user_id: int, username: str, address: str) -> None:
        """A good login clears this address's count for the account (other addresses keep
        theirs: an attacker's lock is not lifted by the owner's login)."""
        key = self._key(username, address)
        self._per_account.reset("|".join(key))
        self._backoff.reset(key)
        with self._engine.begin() as conn:
            conn.execute(
                delete(schema.login_failures).where(
                    schema.login_failures.c.user_id == user_id,
                    schema.login_failures.c.address == key[1],
                )
            )

    def reset(self, user_id: int, username: str, *, conn: Connection) -> None:
        """An admin unlock: every address may try again at once."""
        conn.execute(
            delete(schema.login_failures).where(schema.login_failures.c.user_id == user_id)
        )
        self._backoff.reset_name(username.lower())
        name = username.lower() + "|"
        for window_key in self._per_account.tracked():
            if window_key.startswith(name):
                self._per_account.reset(window_key)

    def purge(self, now: int) -> int:
        """Forget (account, address) failure counts with no lock in force and no failure for a
        day (housekeeping: one row per guessing address would otherwise stay for ever)."""
        c = schema.login_failures.c
        with self._engine.begin() as conn:
            return int(
                conn.execute(
                    delete(schema.login_failures).where(
                        or_(c.locked_until_ms.is_(None), c.locked_until_ms <= now),
                        c.last_failure_ms < now - FORGET_FAILURES_AFTER_MS,
                    )
                ).rowcount
            )

    def locked(self, user_id: int, address: str, now: int) -> bool:
        """Whether this address is locked out of this account."""
        c = schema.login_failures.c
        with self._engine.connect() as conn:
            until = conn.execute(
                select(c.locked_until_ms).where(
                    c.user_id == user_id, c.address == address_key(address)
                )
            ).scalar_one_or_none()
        return until is not None and until > now

    def record_wrong_password(
        self, row: dict[str, Any], address: str, now: int, *, action: str = "login.failed"
    ) -> None:
        """Count a wrong password for (account, address) in the database, atomically (parallel
        guesses, even from several workers, all count), and lock that address out at the
        threshold. ``action`` names the audit entry (a login, or a password change's check of
        the current password: the same guess, counted the same)."""
        t = schema.login_failures
        where = address_key(address)
        threshold = self._settings.lockout_threshold
        minutes = self._settings.lockout_minutes
        with self._engine.begin() as conn:
            # A lock that has run out starts the count afresh (else one typo would lock again).
            ran_out = and_(t.c.locked_until_ms.is_not(None), t.c.locked_until_ms <= now)
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            statement = insert(t).values(
                user_id=row["id"], address=where, failures=1, last_failure_ms=now
            )
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[t.c.user_id, t.c.address],
                    set_={
                        "failures": case((ran_out, 1), else_=t.c.failures + 1),
                        "last_failure_ms": now,
                        "locked_until_ms": case((ran_out, None), else_=t.c.locked_until_ms),
                    },
                )
            )
            mine = and_(t.c.user_id == row["id"], t.c.address == where)
            failures = conn.execute(select(t.c.failures).where(mine)).scalar_one()
            until = now + minutes * 60_000
            # Conditional, so of parallel guesses crossing the threshold one locks and audits.
            locked = (
                conn.execute(
                    update(t)
                    .where(mine, t.c.locked_until_ms.is_(None), t.c.failures >= threshold)
                    .values(locked_until_ms=until)
                ).rowcount
                == 1
            )
            users = schema.users.c
            # The account's row counts failures from anywhere and shows the latest lock of any
            # address ("locked" in user lists); login itself checks only this address's lock.
            values: dict[str, Any] = {"failed_logins": users.failed_logins + 1}
            if locked:
                values["locked_until_ms"] = until
            conn.execute(update(schema.users).where(users.id == row["id"]).values(values))
            total = conn.execute(
                select(users.failed_logins).where(users.id == row["id"])
            ).scalar_one()
            # Guesses spread over many addresses lock none of them: alert admins instead, each
            # time the account's failures since its last good login pass another multiple.
            spread = total % (threshold * _SPREAD_FACTOR) == 0
            if spread:
                self._audit.record(
                    "user.guessing",
                    actor=row["username"],
                    target=row["username"],
                    address=address,
                    success=False,
                    details={"failures_since_last_login": total},
                    conn=conn,
                )
            self._audit.record(
                action,
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
                    details={"failures": failures, "minutes": minutes, "scope": "address"},
                    conn=conn,
                )
        if spread:
            logger.warning(
                "%d wrong passwords for %r since its last good login, from several addresses "
                "perhaps (audit: user.guessing)",
                total,
                row["username"],
            )
        if locked:
            logger.warning(
                "login to %r locked for %s after %d wrong passwords (%d min; other addresses "
                "unaffected)",
                row["username"],
                where,
                failures,
                minutes,
            )
