"""Login sessions: access and refresh tokens.

The access token is a short-lived JWT naming the user and the session; every request checks that
the session is still open and the user still enabled, so logout and disabling take effect at once.
The refresh token is ``<session id>.<secret>``; only a hash of the secret is stored, and each
refresh rotates it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from sqlalchemy import Engine, delete, insert, select, update

from pelbiot.decode.timestamps import utc_now_ms
from pelbiot.errors import UnauthorizedError
from pelbiot.security.audit import AuditLog
from pelbiot.security.change_events import ChangeListeners
from pelbiot.security.lockout import Lockout
from pelbiot.security.passwords import Passwords
from pelbiot.security.permissions import Principal, Role, user_principal
from pelbiot.security.session_rows import end_session
from pelbiot.security.users import Users, by_username, regions_in
from pelbiot.settings import Settings
from pelbiot.storage import schema

logger = logging.getLogger(__name__)

LOGIN_FAILED = "login failed: wrong username or password, or the account is locked or disabled"
_ALGORITHM = "HS256"
# Two dashboard tabs share the refresh cookie and may refresh in the same instant: the loser
# presents the secret the winner just replaced. Within this window and from the address that
# rotated, that is refused (the tab retries with the renewed cookie) without ending the session;
# later, or from elsewhere, it is a stolen token.
REUSE_GRACE_MS = 10_000
_JUST_ROTATED = "refresh token was just renewed by another request; retry with the new one"


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str
    password_expired: bool


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Sessions:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        audit: AuditLog,
        *,
        users: Users,
        passwords: Passwords,
        lockout: Lockout,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._audit = audit
        self._users = users
        self._passwords = passwords
        self._lockout = lockout
        # Called with the user id after a session of theirs ended (logout, reuse).
        self.changes = ChangeListeners()
        self._clock = clock  # stamps access tokens (tests issue expired ones with a past clock)
        # A fixed-length signing key derived from the secret, whatever the secret's length.
        self._signing_key = hashlib.sha256(
            b"pelbiot-access-token:" + settings.secret_key.encode()
        ).digest()
        self._csrf_key = hashlib.sha256(b"pelbiot-csrf:" + settings.secret_key.encode()).digest()

    def csrf_token(self, session_id: str) -> str:
        """The CSRF token of a session: an HMAC of its id, so a token lifted from one session
        (or minted by an attacker who can plant cookies) is worthless for any other."""
        mac = hmac.new(self._csrf_key, session_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def csrf_matches(self, session_id: str, sent: str) -> bool:
        return bool(sent) and hmac.compare_digest(sent, self.csrf_token(session_id))

    def login(self, username: str, password: str, *, address: str) -> Tokens:
        self._lockout.admit(username, address)
        with self._engine.connect() as conn:
            found = conn.execute(select(schema.users).where(by_username(username))).first()
        row = dict(found._mapping) if found else None
        good = self._passwords.verify(row["password_hash"] if row else None, password)
        now = utc_now_ms()
        if row is None or not good or row["disabled"]:
            self._lockout.failed(username, address)
            if row is not None and not good:
                self._lockout.record_wrong_password(row, address, now)
            else:
                self._audit.record(
                    "login.failed",
                    actor=username[:64],
                    address=address,
                    success=False,
                    details={"reason": "disabled" if row else "unknown user"},
                )
            raise UnauthorizedError(LOGIN_FAILED)
        # Checked after the hash (an unknown name costs the same time); the lock holds for this
        # address only, so whoever guessed cannot lock the owner out from elsewhere.
        if self._lockout.locked(row["id"], address, now):
            self._audit.record(
                "login.failed",
                actor=row["username"],
                address=address,
                success=False,
                details={"reason": "locked"},
            )
            raise UnauthorizedError(LOGIN_FAILED)
        session_id = secrets.token_urlsafe(24)
        secret = secrets.token_urlsafe(32)
        with self._engine.begin() as conn:
            conn.execute(
                update(schema.users).where(schema.users.c.id == row["id"]).values(failed_logins=0)
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
        self._lockout.succeeded(row["id"], username, address)
        return self._tokens(row, session_id, secret)

    def _tokens(self, row: dict[str, Any], session_id: str, secret: str) -> Tokens:
        now = int(self._clock())
        ttl = self._settings.access_token_ttl_s
        access = jwt.encode(
            {"sub": str(row["id"]), "sid": session_id, "iat": now, "exp": now + ttl},
            self._signing_key,
            algorithm=_ALGORITHM,
        )
        expired = self._users.public(row)["password_expired"]
        return Tokens(access, f"{session_id}.{secret}", ttl, session_id, expired)

    def refresh(self, refresh_token: str, *, address: str) -> Tokens:
        """Rotate the refresh token. Presenting the secret a rotation already replaced means two
        parties hold the token (one stole it): the session is ended for both, audited as
        ``session.reuse``."""
        session_id, _, secret = refresh_token.partition(".")
        presented = _sha256(secret)
        now = utc_now_ms()
        ended: int | None = None
        c = schema.sessions.c
        with self._engine.begin() as conn:
            found = conn.execute(
                select(schema.sessions, schema.users.c.username, schema.users.c.disabled)
                .join(schema.users, schema.users.c.id == c.user_id)
                .where(c.id == session_id)
            ).first()
            if found is None or found.revoked_ms is not None:
                raise UnauthorizedError("refresh token is not valid; log in again")
            current = hmac.compare_digest(found.refresh_hash, presented)
            if not current:
                reused = found.previous_refresh_hash is not None and hmac.compare_digest(
                    found.previous_refresh_hash, presented
                )
                raced = (
                    now - (found.rotated_ms or 0) <= REUSE_GRACE_MS
                    and found.rotated_from == address[:64]
                )
                if reused and raced:
                    raise UnauthorizedError(_JUST_ROTATED)
                if reused:
                    self._end_reused(conn, session_id, found.username, address)
                    ended = int(found.user_id)
            elif found.expires_ms >= now and not found.disabled:
                new_secret = secrets.token_urlsafe(32)
                # Conditional on the secret still being current: of two parallel refreshes with
                # one token, one wins and the other counts as a reuse.
                rotated = conn.execute(
                    update(schema.sessions)
                    .where(c.id == session_id, c.refresh_hash == presented)
                    .values(
                        refresh_hash=_sha256(new_secret),
                        previous_refresh_hash=presented,
                        rotated_ms=now,
                        rotated_from=address[:64],
                    )
                ).rowcount
                if rotated == 1:
                    user = self._users.row(found.user_id)
                    return self._tokens(user, session_id, new_secret)
                # Lost a race with a parallel refresh of the same token (another tab).
                raise UnauthorizedError(_JUST_ROTATED)
        if ended is not None:
            self.changes.notify(ended)
        raise UnauthorizedError("refresh token is not valid; log in again")

    def _end_reused(self, conn: Any, session_id: str, username: str, address: str) -> None:
        end_session(conn, session_id)
        self._audit.record(
            "session.reuse",
            actor=username,
            target=username,
            address=address,
            success=False,
            details={"reason": "a rotated refresh token was presented again; session ended"},
            conn=conn,
        )
        logger.warning(
            "refresh token of %r reused from %s: session ended (token stolen?)", username, address
        )

    def logout(self, session_id: str, *, actor: str, address: str) -> None:
        c = schema.sessions.c
        with self._engine.begin() as conn:
            user_id = conn.execute(select(c.user_id).where(c.id == session_id)).scalar()
            end_session(conn, session_id)
            self._audit.record("logout", actor=actor, address=address, conn=conn)
        if user_id is not None:
            self.changes.notify(int(user_id))

    def logout_refresh(self, refresh_token: str, *, address: str) -> bool:
        """End the session a refresh token belongs to (logout after the access token expired).
        Returns whether a session was ended; a wrong or spent token ends nothing."""
        session_id, _, secret = refresh_token.partition(".")
        with self._engine.begin() as conn:
            found = conn.execute(
                select(
                    schema.sessions.c.refresh_hash,
                    schema.sessions.c.user_id,
                    schema.users.c.username,
                )
                .join(schema.users, schema.users.c.id == schema.sessions.c.user_id)
                .where(schema.sessions.c.id == session_id, schema.sessions.c.revoked_ms.is_(None))
            ).first()
            if found is None or not hmac.compare_digest(found.refresh_hash, _sha256(secret)):
                return False
            end_session(conn, session_id)
            self._audit.record("logout", actor=found.username, address=address, conn=conn)
        self.changes.notify(int(found.user_id))
        return True

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
            and found.expires_ms > utc_now_ms()
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
            regions=regions_in(found.regions),
            session_id=session_id,
        )

    def purge_expired(self) -> tuple[int, int]:
        """Housekeeping: drop sessions whose refresh token has expired, and login-failure
        counts that have gone quiet. Returns how many of each."""
        now = utc_now_ms()
        with self._engine.begin() as conn:
            sessions = int(
                conn.execute(
                    delete(schema.sessions).where(schema.sessions.c.expires_ms < now)
                ).rowcount
            )
        return sessions, self._lockout.purge(now)


def account_services(
    engine: Engine,
    settings: Settings,
    audit: AuditLog,
    *,
    clock: Callable[[], float] = time.time,
) -> tuple[Users, Sessions]:
    """Users and Sessions sharing one hasher and one lockout, as a process runs them."""
    passwords = Passwords.from_settings(settings)
    lockout = Lockout(engine, settings, audit)
    users = Users(engine, settings, audit, passwords=passwords, lockout=lockout)
    sessions = Sessions(
        engine, settings, audit, users=users, passwords=passwords, lockout=lockout, clock=clock
    )
    return users, sessions
