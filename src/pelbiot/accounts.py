"""User accounts, login with throttling and lockout, sessions with access and refresh tokens.

Tokens: the access token is a short-lived JWT naming the user and the session; every request
checks that the session is still open and the user still enabled, so logout and disabling take
effect at once. The refresh token is ``<session id>.<secret>``; only a hash of the secret is
stored, and each refresh rotates it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from sqlalchemy import Engine, and_, case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from pelbiot import schema
from pelbiot.audit import AuditLog
from pelbiot.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
    UnauthorizedError,
)
from pelbiot.passwords import check_policy, hash_password, matches_any, verify_password
from pelbiot.permissions import Principal, Role, may_manage, user_principal
from pelbiot.settings import Settings
from pelbiot.throttle import SlidingWindow

logger = logging.getLogger(__name__)

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{1,63}$")
LOGIN_FAILED = "login failed: wrong username or password, or the account is locked or disabled"
_ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str
    password_expired: bool


def _now_ms() -> int:
    return int(time.time() * 1000)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _regions_in(raw: str | None) -> frozenset[str] | None:
    return None if raw is None else frozenset(json.loads(raw))


def _regions_out(regions: list[str] | None) -> str | None:
    return None if regions is None else json.dumps(sorted(set(regions)))


class Accounts:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        audit: AuditLog,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._audit = audit
        self._clock = clock  # stamps access tokens (tests issue expired ones with a past clock)
        self._per_address = SlidingWindow(limit=settings.login_attempts_per_address, window_s=300)
        self._per_account = SlidingWindow(limit=settings.login_attempts_per_account, window_s=60)
        # A fixed-length signing key derived from the secret, whatever the secret's length.
        self._signing_key = hashlib.sha256(
            b"pelbiot-access-token:" + settings.secret_key.encode()
        ).digest()

    # -- users --------------------------------------------------------------------------------

    def count(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(schema.users)).scalar_one())

    def all(self) -> list[dict[str, Any]]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(schema.users).order_by(schema.users.c.username))
            return [self._public(dict(r._mapping)) for r in rows]

    def get(self, user_id: int) -> dict[str, Any]:
        return self._public(self._row(user_id))

    def by_name(self, username: str) -> dict[str, Any]:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(schema.users).where(schema.users.c.username == username)
            ).first()
        if row is None:
            raise NotFoundError(f"user {username!r} not found")
        return self._public(dict(row._mapping))

    def _row(self, user_id: int) -> dict[str, Any]:
        with self._engine.connect() as conn:
            row = conn.execute(select(schema.users).where(schema.users.c.id == user_id)).first()
        if row is None:
            raise NotFoundError(f"user {user_id} not found")
        return dict(row._mapping)

    def _public(self, row: dict[str, Any]) -> dict[str, Any]:
        now = _now_ms()
        expiry_days = self._settings.password_expiry_days
        return {
            "id": row["id"],
            "username": row["username"],
            "role": row["role"],
            "regions": sorted(_regions_in(row["regions"]) or []) if row["regions"] else None,
            "disabled": bool(row["disabled"]),
            "locked": bool(row["locked_until_ms"] and row["locked_until_ms"] > now),
            "failed_logins": row["failed_logins"],
            "password_expired": bool(
                expiry_days and now - row["password_changed_ms"] > expiry_days * 86_400_000
            ),
            "created_ms": row["created_ms"],
            "updated_ms": row["updated_ms"],
        }

    def create(
        self,
        username: str,
        password: str,
        role: Role,
        *,
        regions: list[str] | None = None,
        actor: Principal | None = None,
        address: str | None = None,
    ) -> dict[str, Any]:
        if actor is not None and not may_manage(actor, role):
            raise ForbiddenError(f"you may not create {role.value} accounts")
        if not USERNAME_RE.match(username):
            raise InvalidInputError(
                "username: 2-64 characters from A-Z a-z 0-9 _ . @ -", details={"field": "username"}
            )
        check_policy(password, username=username, min_length=self._settings.password_min_length)
        now = _now_ms()
        hashed = hash_password(password)
        try:
            with self._engine.begin() as conn:
                user_id = conn.execute(
                    insert(schema.users).values(
                        username=username,
                        password_hash=hashed,
                        role=role.value,
                        regions=_regions_out(regions),
                        disabled=False,
                        failed_logins=0,
                        password_changed_ms=now,
                        created_ms=now,
                        updated_ms=now,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
                conn.execute(
                    insert(schema.password_history).values(
                        user_id=user_id, password_hash=hashed, created_ms=now
                    )
                )
                self._audit.record(
                    "user.create",
                    actor=actor.name if actor else "cli",
                    target=username,
                    address=address,
                    details={"role": role.value, "regions": regions},
                    conn=conn,
                )
        except IntegrityError:
            raise ConflictError(f"user {username!r} already exists") from None
        return self.get(int(user_id))

    def update(
        self,
        user_id: int,
        changes: dict[str, Any],
        *,
        actor: Principal | None,
        address: str | None = None,
    ) -> dict[str, Any]:
        # null means "leave as is" for role and disabled; for regions it means "all regions".
        changes = {k: v for k, v in changes.items() if v is not None or k == "regions"}
        row = self._row(user_id)
        new_role = Role(changes.get("role", row["role"]))
        if actor is not None and not (
            may_manage(actor, Role(row["role"])) and may_manage(actor, new_role)
        ):
            raise ForbiddenError("you may not change this account")
        if (
            actor is not None
            and actor.user_id == user_id
            and (changes.get("disabled") or ("role" in changes and new_role != Role(row["role"])))
        ):
            raise ForbiddenError("you may not disable yourself or change your own role")
        values: dict[str, Any] = {"updated_ms": _now_ms()}
        if "role" in changes:
            values["role"] = new_role.value
        if "regions" in changes:
            values["regions"] = _regions_out(changes["regions"])
        if "disabled" in changes:
            values["disabled"] = bool(changes["disabled"])
        with self._engine.begin() as conn:
            conn.execute(update(schema.users).where(schema.users.c.id == user_id).values(values))
            if values.get("disabled"):
                self._revoke_all(conn, user_id)
            self._audit.record(
                "user.update",
                actor=actor.name if actor else "cli",
                target=row["username"],
                address=address,
                details={k: changes[k] for k in ("role", "regions", "disabled") if k in changes},
                conn=conn,
            )
        return self.get(user_id)

    def unlock(self, user_id: int, *, actor: Principal | None, address: str | None = None) -> None:
        row = self._row(user_id)
        if actor is not None and not may_manage(actor, Role(row["role"])):
            raise ForbiddenError("you may not unlock this account")
        with self._engine.begin() as conn:
            conn.execute(
                update(schema.users)
                .where(schema.users.c.id == user_id)
                .values(failed_logins=0, locked_until_ms=None, updated_ms=_now_ms())
            )
            self._audit.record(
                "user.unlock",
                actor=actor.name if actor else "cli",
                target=row["username"],
                address=address,
                conn=conn,
            )
        self._per_account.reset(row["username"].lower())

    def set_password(
        self,
        user_id: int,
        new_password: str,
        *,
        actor: Principal | None,
        current_password: str | None = None,
        address: str | None = None,
    ) -> None:
        """Change a password: the user (with the current one) or an admin (a reset)."""
        row = self._row(user_id)
        own = actor is not None and actor.user_id == user_id
        if own:
            if current_password is None or not verify_password(
                row["password_hash"], current_password
            ):
                raise InvalidInputError(
                    "current password is wrong", details={"field": "current_password"}
                )
        elif actor is not None and not may_manage(actor, Role(row["role"])):
            raise ForbiddenError("you may not set this account's password")
        check_policy(
            new_password, username=row["username"], min_length=self._settings.password_min_length
        )
        keep = self._settings.password_history
        with self._engine.begin() as conn:
            history = list(
                conn.execute(
                    select(schema.password_history.c.password_hash)
                    .where(schema.password_history.c.user_id == user_id)
                    .order_by(schema.password_history.c.id.desc())
                    .limit(keep)
                ).scalars()
            )
            if keep and matches_any(new_password, history):
                raise InvalidInputError(
                    f"password was used recently; choose one not among your last {keep}",
                    details={"field": "new_password"},
                )
            now = _now_ms()
            hashed = hash_password(new_password)
            conn.execute(
                update(schema.users)
                .where(schema.users.c.id == user_id)
                .values(password_hash=hashed, password_changed_ms=now, updated_ms=now)
            )
            conn.execute(
                insert(schema.password_history).values(
                    user_id=user_id, password_hash=hashed, created_ms=now
                )
            )
            if not own:
                self._revoke_all(conn, user_id)
            self._audit.record(
                "user.password" if own else "user.password_reset",
                actor=actor.name if actor else "cli",
                target=row["username"],
                address=address,
                conn=conn,
            )

    # -- login and sessions -------------------------------------------------------------------

    def login(self, username: str, password: str, *, address: str) -> Tokens:
        wait = self._per_address.retry_after(address)
        if wait:
            self._audit.record(
                "login.throttled", actor=username[:64], address=address, success=False
            )
            raise RateLimitedError("too many login attempts from this address", retry_after=wait)
        account_key = username.lower()
        wait = self._per_account.hit(account_key)
        if wait:
            self._per_address.hit(address)
            self._audit.record(
                "login.throttled", actor=username[:64], address=address, success=False
            )
            raise RateLimitedError("too many login attempts for this account", retry_after=wait)
        with self._engine.connect() as conn:
            found = conn.execute(
                select(schema.users).where(schema.users.c.username == username)
            ).first()
        row = dict(found._mapping) if found else None
        good = verify_password(row["password_hash"] if row else None, password)
        now = _now_ms()
        if row is None or not good or row["disabled"]:
            self._per_address.hit(address)
            if row is not None and not good:
                self._record_failure(row, address, now)
            else:
                self._audit.record(
                    "login.failed",
                    actor=username[:64],
                    address=address,
                    success=False,
                    details={"reason": "disabled" if row else "unknown user"},
                )
            raise UnauthorizedError(LOGIN_FAILED)
        if row["locked_until_ms"] and row["locked_until_ms"] > now:
            self._audit.record(
                "login.failed",
                actor=username,
                address=address,
                success=False,
                details={"reason": "locked"},
            )
            raise UnauthorizedError(LOGIN_FAILED)
        session_id = secrets.token_urlsafe(24)
        secret = secrets.token_urlsafe(32)
        with self._engine.begin() as conn:
            conn.execute(
                update(schema.users)
                .where(schema.users.c.id == row["id"])
                .values(failed_logins=0, locked_until_ms=None)
            )
            conn.execute(
                insert(schema.sessions).values(
                    id=session_id,
                    user_id=row["id"],
                    refresh_hash=_sha256(secret),
                    created_ms=now,
                    expires_ms=now + self._settings.refresh_token_ttl_s * 1000,
                    address=address[:64],
                )
            )
            self._audit.record("login", actor=username, address=address, conn=conn)
        self._per_account.reset(account_key)
        return self._tokens(row, session_id, secret)

    def _record_failure(self, row: dict[str, Any], address: str, now: int) -> None:
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

    def _tokens(self, row: dict[str, Any], session_id: str, secret: str) -> Tokens:
        now = int(self._clock())
        ttl = self._settings.access_token_ttl_s
        access = jwt.encode(
            {"sub": str(row["id"]), "sid": session_id, "iat": now, "exp": now + ttl},
            self._signing_key,
            algorithm=_ALGORITHM,
        )
        expired = self._public(row)["password_expired"]
        return Tokens(access, f"{session_id}.{secret}", ttl, session_id, expired)

    def refresh(self, refresh_token: str, *, address: str) -> Tokens:
        session_id, _, secret = refresh_token.partition(".")
        now = _now_ms()
        with self._engine.begin() as conn:
            found = conn.execute(
                select(schema.sessions, schema.users)
                .join(schema.users, schema.users.c.id == schema.sessions.c.user_id)
                .where(schema.sessions.c.id == session_id)
            ).first()
            if (
                found is None
                or found.revoked_ms is not None
                or found.expires_ms < now
                or found.disabled
                or not hmac.compare_digest(found.refresh_hash, _sha256(secret))
            ):
                raise UnauthorizedError("refresh token is not valid; log in again")
            new_secret = secrets.token_urlsafe(32)
            conn.execute(
                update(schema.sessions)
                .where(schema.sessions.c.id == session_id)
                .values(refresh_hash=_sha256(new_secret))
            )
            user = self._row(found.user_id)
        return self._tokens(user, session_id, new_secret)

    def logout(self, session_id: str, *, actor: str, address: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(schema.sessions)
                .where(schema.sessions.c.id == session_id, schema.sessions.c.revoked_ms.is_(None))
                .values(revoked_ms=_now_ms())
            )
            self._audit.record("logout", actor=actor, address=address, conn=conn)

    def logout_refresh(self, refresh_token: str, *, address: str) -> bool:
        """End the session a refresh token belongs to (logout after the access token expired).
        Returns whether a session was ended; a wrong or spent token ends nothing."""
        session_id, _, secret = refresh_token.partition(".")
        with self._engine.begin() as conn:
            found = conn.execute(
                select(schema.sessions.c.refresh_hash, schema.users.c.username)
                .join(schema.users, schema.users.c.id == schema.sessions.c.user_id)
                .where(schema.sessions.c.id == session_id, schema.sessions.c.revoked_ms.is_(None))
            ).first()
            if found is None or not hmac.compare_digest(found.refresh_hash, _sha256(secret)):
                return False
            conn.execute(
                update(schema.sessions)
                .where(schema.sessions.c.id == session_id)
                .values(revoked_ms=_now_ms())
            )
            self._audit.record("logout", actor=found.username, address=address, conn=conn)
        return True

    def _revoke_all(self, conn: Any, user_id: int) -> None:
        conn.execute(
            update(schema.sessions)
            .where(schema.sessions.c.user_id == user_id, schema.sessions.c.revoked_ms.is_(None))
            .values(revoked_ms=_now_ms())
        )

    def session_active(self, session_id: str) -> bool:
        """Whether a session is still open (not logged out, user enabled, not expired)."""
        with self._engine.connect() as conn:
            found = conn.execute(
                select(
                    schema.sessions.c.revoked_ms,
                    schema.sessions.c.expires_ms,
                    schema.users.c.disabled,
                )
                .join(schema.users, schema.users.c.id == schema.sessions.c.user_id)
                .where(schema.sessions.c.id == session_id)
            ).first()
        return bool(
            found is not None
            and found.revoked_ms is None
            and not found.disabled
            and found.expires_ms > _now_ms()
        )

    def principal_from_access_token(self, token: str) -> Principal:
        try:
            claims = jwt.decode(token, self._signing_key, algorithms=[_ALGORITHM])
            user_id, session_id = int(claims["sub"]), str(claims["sid"])
        except (jwt.PyJWTError, KeyError, ValueError):
            raise UnauthorizedError("token is invalid or expired") from None
        with self._engine.connect() as conn:
            found = conn.execute(
                select(
                    schema.users.c.username,
                    schema.users.c.role,
                    schema.users.c.regions,
                    schema.users.c.disabled,
                    schema.sessions.c.revoked_ms,
                )
                .join(schema.users, schema.users.c.id == schema.sessions.c.user_id)
                .where(schema.sessions.c.id == session_id, schema.users.c.id == user_id)
            ).first()
        if found is None or found.revoked_ms is not None or found.disabled:
            raise UnauthorizedError("session has ended; log in again")
        return user_principal(
            user_id=user_id,
            username=found.username,
            role=Role(found.role),
            regions=_regions_in(found.regions),
            session_id=session_id,
        )

    def purge_sessions(self) -> int:
        """Drop sessions whose refresh token has expired (housekeeping)."""
        with self._engine.begin() as conn:
            return int(
                conn.execute(
                    delete(schema.sessions).where(schema.sessions.c.expires_ms < _now_ms())
                ).rowcount
            )
