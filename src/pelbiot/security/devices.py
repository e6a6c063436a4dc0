"""The device registry: one MQTT username and password per meter or gateway, and its panels.

Brokers enforce it: ``pelbiot device export-mosquitto`` renders Mosquitto's password and ACL
files from it (``security/broker_acl.py``), and the embedded broker checks it directly
(``ingest/broker_auth.py``). A password is shown once; the database keeps only Mosquitto's
``$7$`` PBKDF2-SHA512 hash of it. A disabled device stays listed but is left out of the files.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from pelbiot.decode.timestamps import utc_now_ms
from pelbiot.errors import ConflictError, InvalidInputError, NotFoundError
from pelbiot.security.audit import AuditLog
from pelbiot.security.broker_acl import DeviceCredential, check_name, check_panels, mosquitto_hash
from pelbiot.storage import schema

logger = logging.getLogger(__name__)

# Typed once into a device's configuration, never remembered by a person: make it long.
PASSWORD_MIN_LENGTH = 16
PASSWORD_MAX_LENGTH = 256


def generate_password() -> str:
    return secrets.token_urlsafe(24)  # 32 characters, 192 random bits


def check_password(password: str) -> str:
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise InvalidInputError(
            f"a device password is {PASSWORD_MIN_LENGTH}-{PASSWORD_MAX_LENGTH} characters "
            "(leave it out and PELBIOT generates one)"
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in password):
        raise InvalidInputError("a device password must not contain control characters")
    return password


class Devices:
    """Device records: ``{"name", "panels", "disabled", "created_ms", "updated_ms", ...}``."""

    def __init__(self, engine: Engine, audit: AuditLog, *, reserved: Iterable[str] = ()) -> None:
        """``reserved``: names no device may take (compared ignoring case), such as PELBIOT's
        own ingest user (``broker_files.reserved_device_names``)."""
        self._engine = engine
        self._audit = audit
        self._reserved = frozenset(r.lower() for r in reserved)

    def create(
        self,
        name: str,
        panels: Iterable[str],
        *,
        password: str | None = None,
        actor: str = "cli",
        address: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Returns the record and the password (generated when none is given; shown once)."""
        check_name(name)
        if name.lower() in self._reserved:
            raise ConflictError(
                f"device name {name!r} is reserved: PELBIOT's own ingest user or the demo's device"
            )
        panel_ids = check_panels(panels)
        secret = check_password(password) if password is not None else generate_password()
        now = utc_now_ms()
        try:
            self._insert(name, panel_ids, secret, now, actor=actor, address=address)
        except IntegrityError:  # a concurrent create of the same name won the race
            raise ConflictError(f"device {name!r} already exists") from None
        logger.info("device %s created for panels %s", name, ",".join(panel_ids))
        return self.get(name), secret

    def _insert(
        self,
        name: str,
        panel_ids: tuple[str, ...],
        secret: str,
        now: int,
        *,
        actor: str,
        address: str | None,
    ) -> None:
        with self._engine.begin() as conn:
            # MQTT usernames are case-sensitive, people are not: refuse look-alikes. The index on
            # lower(name) settles a race between two creates (IntegrityError, see create).
            clash = conn.execute(
                select(schema.devices.c.name).where(
                    func.lower(schema.devices.c.name) == name.lower()
                )
            ).first()
            if clash is not None:
                raise ConflictError(f"device {clash[0]!r} already exists")
            device_id = conn.execute(
                insert(schema.devices).values(
                    name=name,
                    password_hash=mosquitto_hash(secret),
                    created_ms=now,
                    updated_ms=now,
                    created_by=actor[:64],
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            conn.execute(
                insert(schema.device_panels),
                [{"device_id": device_id, "panel_id": p} for p in panel_ids],
            )
            self._audit.record(
                "device.create",
                actor=actor,
                target=name,
                address=address,
                details={"panels": list(panel_ids)},
                conn=conn,
            )

    def get(self, name: str) -> dict[str, Any]:
        for record in self._records(name):
            return record
        raise NotFoundError(f"device {name!r} not found")

    def all(self) -> list[dict[str, Any]]:
        return self._records(None)

    def count(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(schema.devices)).scalar_one())

    def credentials(self) -> list[DeviceCredential]:
        """Every enabled device, as brokers need it (by name)."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(schema.devices.c.id, schema.devices.c.name, schema.devices.c.password_hash)
                .where(schema.devices.c.disabled_ms.is_(None))
                .order_by(schema.devices.c.name)
            ).all()
            panels = self._panels(conn, [r.id for r in rows])
        return [DeviceCredential(r.name, r.password_hash, panels.get(r.id, ())) for r in rows]

    def set_password(
        self,
        name: str,
        password: str | None = None,
        *,
        actor: str = "cli",
        address: str | None = None,
    ) -> str:
        """A new password (generated when none is given); the old one stops working once the
        broker has it (Mosquitto: the files are rewritten and it is reloaded)."""
        secret = check_password(password) if password is not None else generate_password()
        self._change(name, {"password_hash": mosquitto_hash(secret)}, "device.passwd", actor=actor)
        return secret

    def set_disabled(
        self, name: str, disabled: bool, *, actor: str = "cli", address: str | None = None
    ) -> None:
        action = "device.disable" if disabled else "device.enable"
        values = {"disabled_ms": utc_now_ms() if disabled else None}
        self._change(name, values, action, actor=actor, address=address)

    def set_panels(
        self, name: str, panels: Iterable[str], *, actor: str = "cli", address: str | None = None
    ) -> None:
        panel_ids = check_panels(panels)
        with self._engine.begin() as conn:
            device_id = self._id(conn, name)
            conn.execute(
                delete(schema.device_panels).where(schema.device_panels.c.device_id == device_id)
            )
            conn.execute(
                insert(schema.device_panels),
                [{"device_id": device_id, "panel_id": p} for p in panel_ids],
            )
            conn.execute(
                update(schema.devices)
                .where(schema.devices.c.id == device_id)
                .values(updated_ms=utc_now_ms())
            )
            self._audit.record(
                "device.panels",
                actor=actor,
                target=name,
                address=address,
                details={"panels": list(panel_ids)},
                conn=conn,
            )

    def delete(self, name: str, *, actor: str = "cli", address: str | None = None) -> None:
        with self._engine.begin() as conn:
            device_id = self._id(conn, name)
            # Explicit: SQLite does not enforce ON DELETE CASCADE without PRAGMA foreign_keys.
            conn.execute(
                delete(schema.device_panels).where(schema.device_panels.c.device_id == device_id)
            )
            conn.execute(delete(schema.devices).where(schema.devices.c.id == device_id))
            self._audit.record(
                "device.delete", actor=actor, target=name, address=address, conn=conn
            )

    # -- internals --------------------------------------------------------------------------

    @staticmethod
    def _id(conn: Any, name: str) -> int:
        """The device's id, locked for the rest of ``conn``'s transaction: a concurrent delete
        either went first (then this is a 404) or waits for the change (PostgreSQL; SQLite's
        write transactions are serial anyway). Looked up outside the transaction, a delete in
        between made the change a foreign-key 500 or a silent no-op."""
        found = conn.execute(
            select(schema.devices.c.id).where(schema.devices.c.name == name).with_for_update()
        ).scalar_one_or_none()
        if found is None:
            raise NotFoundError(f"device {name!r} not found")
        return int(found)

    def _change(
        self,
        name: str,
        values: dict[str, Any],
        action: str,
        *,
        actor: str,
        address: str | None = None,
    ) -> None:
        with self._engine.begin() as conn:
            device_id = self._id(conn, name)
            conn.execute(
                update(schema.devices)
                .where(schema.devices.c.id == device_id)
                .values(updated_ms=utc_now_ms(), **values)
            )
            self._audit.record(action, actor=actor, target=name, address=address, conn=conn)

    def _records(self, name: str | None) -> list[dict[str, Any]]:
        query = select(schema.devices).order_by(schema.devices.c.name)
        if name is not None:
            query = query.where(schema.devices.c.name == name)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
            panels = self._panels(conn, [r.id for r in rows])
        return [
            {
                "name": r.name,
                "panels": list(panels.get(r.id, ())),
                "disabled": r.disabled_ms is not None,
                "disabled_ms": r.disabled_ms,
                "created_ms": r.created_ms,
                "updated_ms": r.updated_ms,
                "created_by": r.created_by,
            }
            for r in rows
        ]

    @staticmethod
    def _panels(conn: Any, device_ids: list[int]) -> dict[int, tuple[str, ...]]:
        if not device_ids:
            return {}
        out: dict[int, list[str]] = {}
        rows = conn.execute(
            select(schema.device_panels.c.device_id, schema.device_panels.c.panel_id)
            .where(schema.device_panels.c.device_id.in_(device_ids))
            .order_by(schema.device_panels.c.panel_id)
        )
        for device_id, panel_id in rows:
            out.setdefault(device_id, []).append(panel_id)
        return {k: tuple(v) for k, v in out.items()}
