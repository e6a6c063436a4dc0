"""User accounts: create, list, update, unlock and set passwords, each change audited in its own
transaction."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from pelbiot.decode.timestamps import utc_now_ms
from pelbiot.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
)
from pelbiot.security.audit import AuditLog
from pelbiot.security.change_events import ChangeListeners
from pelbiot.security.lockout import Lockout
from pelbiot.security.passwords import Passwords, check_policy
from pelbiot.security.permissions import Principal, Role, may_manage
from pelbiot.security.session_rows import revoke_user_sessions
from pelbiot.settings import Settings
from pelbiot.storage import schema

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{1,63}$")


def by_username(username: str) -> ColumnElement[bool]:
    """Usernames match ignoring case (they are unique ignoring case, migration 0003)."""
    return func.lower(schema.users.c.username) == username.lower()


def regions_in(raw: str | None) -> frozenset[str] | None:
    return None if raw is None else frozenset(json.loads(raw))


def regions_out(regions: list[str] | None) -> str | None:
    if regions is not None and any(not r.strip() for r in regions):
        # An empty name would read as "no restriction" somewhere down the line: refuse it.
        raise InvalidInputError("regions: names must not be empty", details={"field": "regions"})
    return None if regions is None else json.dumps(sorted(set(regions)))


class Users:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        audit: AuditLog,
        *,
        passwords: Passwords,
        lockout: Lockout,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._audit = audit
        self._passwords = passwords
        self._lockout = lockout
        # Called with the user id after a committed change of role, regions, disabled or
        # password (open live feeds re-check their rights at once).
        self.changes = ChangeListeners()

    def _changed(self, user_id: int) -> None:
        self.changes.notify(user_id)

    def count(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(schema.users)).scalar_one())

    def all(self) -> list[dict[str, Any]]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(schema.users).order_by(schema.users.c.username))
            return [self.public(dict(r._mapping)) for r in rows]

    def get(self, user_id: int) -> dict[str, Any]:
        return self.public(self.row(user_id))

    def by_name(self, username: str) -> dict[str, Any]:
        with self._engine.connect() as conn:
            row = conn.execute(select(schema.users).where(by_username(username))).first()
        if row is None:
            raise NotFoundError(f"user {username!r} not found")
        return self.public(dict(row._mapping))

    def row(self, user_id: int) -> dict[str, Any]:
        with self._engine.connect() as conn:
            row = conn.execute(select(schema.users).where(schema.users.c.id == user_id)).first()
        if row is None:
            raise NotFoundError(f"user {user_id} not found")
        return dict(row._mapping)

    def public(self, row: dict[str, Any]) -> dict[str, Any]:
        now = utc_now_ms()
        expiry_days = self._settings.password_expiry_days
        return {
            "id": row["id"],
            "username": row["username"],
            "role": row["role"],
            "regions": sorted(regions_in(row["regions"]) or []) if row["regions"] else None,
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
        now = utc_now_ms()
        hashed = self._passwords.hash(password)
        try:
            with self._engine.begin() as conn:
                user_id = conn.execute(
                    insert(schema.users).values(
                        username=username,
                        password_hash=hashed,
                        role=role.value,
                        regions=regions_out(regions),
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
            raise ConflictError(
                f"user {username!r} already exists (usernames are unique ignoring case)"
            ) from None
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
        row = self.row(user_id)
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
        values: dict[str, Any] = {"updated_ms": utc_now_ms()}
        if "role" in changes:
            values["role"] = new_role.value
        if "regions" in changes:
            values["regions"] = regions_out(changes["regions"])
        if "disabled" in changes:
            values["disabled"] = bool(changes["disabled"])
        with self._engine.begin() as conn:
            conn.execute(update(schema.users).where(schema.users.c.id == user_id).values(values))
            if values.get("disabled"):
                revoke_user_sessions(conn, user_id)
            self._audit.record(
                "user.update",
                actor=actor.name if actor else "cli",
                target=row["username"],
                address=address,
                details={k: changes[k] for k in ("role", "regions", "disabled") if k in changes},
                conn=conn,
            )
        self._changed(user_id)
        return self.get(user_id)

    def unlock(self, user_id: int, *, actor: Principal | None, address: str | None = None) -> None:
        row = self.row(user_id)
        if actor is not None and not may_manage(actor, Role(row["role"])):
            raise ForbiddenError("you may not unlock this account")
        with self._engine.begin() as conn:
            conn.execute(
                update(schema.users)
                .where(schema.users.c.id == user_id)
                .values(failed_logins=0, locked_until_ms=None, updated_ms=utc_now_ms())
            )
            self._lockout.reset(user_id, row["username"], conn=conn)
            self._audit.record(
                "user.unlock",
                actor=actor.name if actor else "cli",
                target=row["username"],
                address=address,
                conn=conn,
            )

    def _check_current(self, row: dict[str, Any], password: str | None, address: str) -> None:
        """A password change proves the current password: guessing it is throttled, counted
        and locked out per (account, address) exactly like guessing it at login."""
        self._lockout.admit(row["username"], address)
        now = utc_now_ms()
        if self._lockout.locked(row["id"], address, now):
            raise RateLimitedError(
                "too many wrong passwords from this address; try again later",
                retry_after=self._settings.lockout_minutes * 60,
            )
        if password is not None and self._passwords.verify(row["password_hash"], password):
            return
        self._lockout.failed(row["username"], address)
        self._lockout.record_wrong_password(row, address, now, action="user.password")
        raise InvalidInputError("current password is wrong", details={"field": "current_password"})

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
        row = self.row(user_id)
        own = actor is not None and actor.user_id == user_id
        if own:
            self._check_current(row, current_password, address or "unknown")
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
            if keep and self._passwords.matches_any(new_password, history):
                raise InvalidInputError(
                    f"password was used recently; choose one not among your last {keep}",
                    details={"field": "new_password"},
                )
            now = utc_now_ms()
            hashed = self._passwords.hash(new_password)
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
            # A reset ends every session; changing your own keeps only the one you did it from
            # (whoever else held a session of yours, refresh token included, is logged out).
            revoke_user_sessions(conn, user_id, keep=actor.session_id if own and actor else None)
            self._audit.record(
                "user.password" if own else "user.password_reset",
                actor=actor.name if actor else "cli",
                target=row["username"],
                address=address,
                conn=conn,
            )
        self._changed(user_id)
