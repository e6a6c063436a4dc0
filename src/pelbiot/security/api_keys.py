"""API keys for devices and scripts: shown once, stored hashed, scoped, expiring, revocable.

A key reads ``pbk_<prefix>_<secret>``. The prefix finds the row; the secret is compared by its
SHA-256 (keys are long random strings, so a slow hash adds nothing but latency on every call).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from typing import Any

from sqlalchemy import Engine, Select, insert, select, update

from pelbiot.errors import InvalidInputError, NotFoundError, UnauthorizedError
from pelbiot.security.audit import AuditLog
from pelbiot.security.change_events import ChangeListeners
from pelbiot.security.permissions import (
    ROLE_PERMISSIONS,
    SCOPES,
    UNSCOPED_PERMISSIONS,
    Principal,
    Role,
    key_principal,
)
from pelbiot.storage import schema

logger = logging.getLogger(__name__)

KEY_PREFIX = "pbk_"
_PREFIX_RE = re.compile(r"[0-9a-f]{12}")
_LAST_USED_EVERY_MS = 60_000  # write last-used at most once a minute per key


def _now_ms() -> int:
    return int(time.time() * 1000)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX) and token.count("_") >= 2


def bounded_by_owner(key: Principal, role: Role, raw_regions: str | None) -> Principal:
    """A key acts with at most its owner's current rights: the permissions both have, and the
    regions both may see (an owner limited to regions limits the key to them; a key region
    outside them leaves it seeing nothing)."""
    perms = key.permissions & ROLE_PERMISSIONS[role]
    regions = key.regions
    if role in (Role.OPERATOR, Role.VIEWER) and raw_regions is not None:
        owner_regions = frozenset(json.loads(raw_regions))
        regions = owner_regions if regions is None else regions & owner_regions
    if regions is not None:
        perms -= UNSCOPED_PERMISSIONS
    return dataclasses.replace(key, permissions=frozenset(perms), regions=regions)


class ApiKeys:
    def __init__(self, engine: Engine, audit: AuditLog) -> None:
        self._engine = engine
        self._audit = audit
        self._last_used: dict[int, int] = {}
        self._lock = threading.Lock()
        # Called after a key is revoked, with the id of the user who made it (0: the CLI).
        self.changes = ChangeListeners()

    def create(
        self,
        *,
        name: str,
        scopes: list[str],
        actor: Principal | str,
        panel_id: str | None = None,
        region: str | None = None,
        expires_ms: int | None = None,
        address: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Returns the key's public record and the key itself (shown once, never stored)."""
        bad = [s for s in scopes if s not in SCOPES]
        if not scopes or bad:
            raise InvalidInputError(
                f"scopes must be a non-empty subset of {list(SCOPES)}", details={"scopes": bad}
            )
        if region is not None and not region.strip():
            # "" once read as "no restriction": a key is limited to a real region or to none.
            raise InvalidInputError("region must not be empty", details={"field": "region"})
        if expires_ms is not None and expires_ms <= _now_ms():
            raise InvalidInputError("expires_at must be in the future")
        prefix = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        actor_name = actor if isinstance(actor, str) else actor.name
        with self._engine.begin() as conn:
            owner = self._owner_of(conn, actor)
            key_id = conn.execute(
                insert(schema.api_keys).values(
                    name=name,
                    prefix=prefix,
                    key_hash=_hash(secret),
                    scopes=",".join(sorted(set(scopes))),
                    panel_id=panel_id,
                    region=region,
                    expires_ms=expires_ms,
                    created_ms=_now_ms(),
                    created_by=actor_name[:64],
                    created_by_user_id=owner,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            self._audit.record(
                "api_key.create",
                actor=actor_name,
                target=f"{name} ({prefix})",
                address=address,
                details={"scopes": scopes, "panel_id": panel_id, "region": region},
                conn=conn,
            )
        return self.get(int(key_id)), f"{KEY_PREFIX}{prefix}_{secret}"

    @staticmethod
    def _owner_of(conn: Any, actor: Principal | str) -> int | None:
        """The user whose rights bound a new key: the creating user, or for a key made with a
        key that key's own owner (a key cannot launder its owner away); None for the CLI."""
        if isinstance(actor, str):
            return None
        if actor.user_id is not None:
            return actor.user_id
        if actor.key_id is not None:
            owner: int | None = conn.execute(
                select(schema.api_keys.c.created_by_user_id).where(
                    schema.api_keys.c.id == actor.key_id
                )
            ).scalar_one_or_none()
            return owner
        return None

    @staticmethod
    def _with_owner() -> Select[Any]:
        """Keys with whether their creator's account is disabled (which suspends them)."""
        keys, users = schema.api_keys, schema.users
        return select(keys, users.c.disabled.label("owner_disabled")).select_from(
            keys.outerjoin(users, users.c.id == keys.c.created_by_user_id)
        )

    def get(self, key_id: int) -> dict[str, Any]:
        with self._engine.connect() as conn:
            row = conn.execute(self._with_owner().where(schema.api_keys.c.id == key_id)).first()
        if row is None:
            raise NotFoundError(f"API key {key_id} not found")
        return self._public(dict(row._mapping))

    def all(self) -> list[dict[str, Any]]:
        with self._engine.connect() as conn:
            rows = conn.execute(self._with_owner().order_by(schema.api_keys.c.id))
            return [self._public(dict(r._mapping)) for r in rows]

    def revoke(self, key_id: int, *, actor: Principal, address: str | None = None) -> None:
        record = self.get(key_id)
        with self._engine.begin() as conn:
            conn.execute(
                update(schema.api_keys)
                .where(schema.api_keys.c.id == key_id, schema.api_keys.c.revoked_ms.is_(None))
                .values(revoked_ms=_now_ms())
            )
            self._audit.record(
                "api_key.revoke",
                actor=actor.name,
                target=f"{record['name']} ({record['prefix']})",
                address=address,
                conn=conn,
            )
        self.changes.notify(int(record.get("created_by_user_id") or 0))

    def active(self, key_id: int) -> bool:
        """Whether a key is still usable (not revoked, not expired)."""
        try:
            return bool(self.get(key_id)["active"])
        except NotFoundError:
            return False

    def principal(self, token: str) -> Principal:
        try:
            _pbk, prefix, secret = token.split("_", 2)
        except ValueError:
            raise UnauthorizedError("API key is not valid") from None
        if not _PREFIX_RE.fullmatch(prefix):  # not one of ours: no database lookup
            raise UnauthorizedError("API key is not valid")
        users = schema.users.c
        with self._engine.connect() as conn:
            # The owner's role, regions and state are read with the key on every request, so a
            # demotion or a disable applies to the very next call.
            row = conn.execute(
                select(
                    schema.api_keys,
                    users.id.label("owner_id"),
                    users.role.label("owner_role"),
                    users.regions.label("owner_regions"),
                    users.disabled.label("owner_disabled"),
                )
                .select_from(
                    schema.api_keys.outerjoin(
                        schema.users, users.id == schema.api_keys.c.created_by_user_id
                    )
                )
                .where(schema.api_keys.c.prefix == prefix)
            ).first()
        now = _now_ms()
        if (
            row is None
            or not hmac.compare_digest(row.key_hash, _hash(secret))
            or row.revoked_ms is not None
            or (row.expires_ms is not None and row.expires_ms <= now)
        ):
            raise UnauthorizedError("API key is not valid, expired or revoked")
        if row.created_by_user_id is not None and (row.owner_id is None or row.owner_disabled):
            raise UnauthorizedError("API key is suspended: the account that created it is disabled")
        self._touch(row.id, now)
        principal = key_principal(
            key_id=row.id,
            name=row.name,
            scopes=frozenset(row.scopes.split(",")),
            panel_id=row.panel_id,
            region=row.region,
        )
        if row.created_by_user_id is None:
            return principal  # made by the CLI: its own scopes are its whole rights
        return bounded_by_owner(principal, Role(row.owner_role), row.owner_regions)

    def _touch(self, key_id: int, now: int) -> None:
        with self._lock:
            if now - self._last_used.get(key_id, 0) < _LAST_USED_EVERY_MS:
                return
            self._last_used[key_id] = now
        with self._engine.begin() as conn:
            conn.execute(
                update(schema.api_keys)
                .where(schema.api_keys.c.id == key_id)
                .values(last_used_ms=now)
            )

    @staticmethod
    def _public(row: dict[str, Any]) -> dict[str, Any]:
        now = _now_ms()
        return {
            "id": row["id"],
            "name": row["name"],
            "prefix": row["prefix"],
            "scopes": row["scopes"].split(","),
            "panel_id": row["panel_id"],
            "region": row["region"],
            "expires_ms": row["expires_ms"],
            "revoked_ms": row["revoked_ms"],
            "last_used_ms": row["last_used_ms"],
            "created_ms": row["created_ms"],
            "created_by": row["created_by"],
            "created_by_user_id": row["created_by_user_id"],
            # A user's key, its creator gone or disabled: refused until the account is enabled.
            "suspended": row["created_by_user_id"] is not None
            and (row["owner_disabled"] is None or bool(row["owner_disabled"])),
            "active": row["revoked_ms"] is None
            and (row["expires_ms"] is None or row["expires_ms"] > now),
        }
