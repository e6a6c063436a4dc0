"""Who may use the embedded broker, and for what: the device registry, enforced by amqtt.

The same rules as the Mosquitto files ``pelbiot device`` writes:
- PELBIOT's own ingest connection (a username and password the launcher makes per start) may do
  everything;
- a device (``pelbiot device create``) authenticates with its name and password and may only
  publish, and only under ``<prefix>/<panel>/...`` for its panels; it may not subscribe;
- a client without valid credentials is refused once any device is registered, or always with
  ``PELBIOT_EMBEDDED_BROKER_ANONYMOUS=never`` (the default with ``PELBIOT_ENV=production``);
  before that (a fresh demo) it may do everything, as before devices existed.
A publish the rules forbid is acknowledged and dropped, as Mosquitto does. A will message (sent
by the broker when a client drops without DISCONNECT) follows the publish rules too: a CONNECT
whose will topic the client may not publish to is refused (Mosquitto 2.0 accepts it and never
sends the will: the ACL applies), and when a will is about to be sent the rules are read again
(``broker.py`` asks ``may_send_will``), so a device disabled or deleted since it connected sends
nothing, retained wills included.

The registry is read on every CONNECT (a new, disabled or re-keyed device counts at once) and at
most every ``refresh_s`` on the publish path (a device disabled while connected loses its rights
within that time). Reads and password checks run in a thread: the broker shares the event loop
with the server.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from pelbiot.security.broker_acl import DeviceCredential, verify_mosquitto_hash

logger = logging.getLogger(__name__)


class Role(Enum):
    INGEST = "ingest"
    DEVICE = "device"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Identity:
    role: Role
    name: str | None = None


@dataclass(frozen=True)
class _Snapshot:
    devices: dict[str, DeviceCredential]
    any_registered: bool  # disabled devices count: disabling the last one must not open the door


_ATTR = "pelbiot_identity"  # set on amqtt's Session (it is not hashable, so no dict by session)


def session_identity(session: Any) -> Identity | None:
    """Who an amqtt session authenticated as (None: refused, or not yet checked)."""
    identity: Identity | None = getattr(session, _ATTR, None)
    return identity


class BrokerGate:
    """The decisions; the two amqtt plugins below only translate them."""

    def __init__(
        self,
        load: Callable[[], tuple[list[DeviceCredential], int]],
        *,
        ingest_user: str,
        ingest_password: str,
        ingest_client_id: str | None = None,
        prefix: str,
        anonymous: str = "until_devices",
        refresh_s: float = 2.0,
        verify: Callable[[str, str], bool] = verify_mosquitto_hash,
    ) -> None:
        """``load`` returns (enabled devices, number of registered devices); ``verify(password,
        stored_hash)`` checks a device's password (run in a thread: PBKDF2, about 1 ms).
        ``ingest_client_id``: PELBIOT's own client id, refused to everyone but the ingest user
        (amqtt has already taken over that session by then, which is why the launcher makes the
        id random per start; the refusal and its log line are the second line)."""
        self._load = load
        self._verify = verify
        self._ingest = (ingest_user, ingest_password)
        self._ingest_client_id = ingest_client_id
        self._prefix = prefix
        self._anonymous_ever = anonymous != "never"
        self._refresh_s = refresh_s
        self._snapshot = _Snapshot({}, True)  # refuse anonymous until the first load
        self._loaded_started = float("-inf")
        self._lock = asyncio.Lock()

    async def _current(self, max_age: float) -> _Snapshot:
        asked = time.monotonic()
        if asked - self._loaded_started <= max_age:
            return self._snapshot
        async with self._lock:
            # A load that started after we asked is fresh enough: a reconnect storm shares one.
            if self._loaded_started >= asked or time.monotonic() - self._loaded_started <= max_age:
                return self._snapshot
            started = time.monotonic()
            try:
                creds, registered = await asyncio.to_thread(self._load)
            except Exception:
                # Keep the last known rules (the first time: nobody but ingest gets in).
                logger.exception("embedded broker: cannot read the device registry")
                return self._snapshot
            self._snapshot = _Snapshot({c.name: c for c in creds}, registered > 0)
            self._loaded_started = started
            return self._snapshot

    def _anonymous_allowed(self, snap: _Snapshot) -> bool:
        return self._anonymous_ever and not snap.any_registered

    async def authenticate(
        self, username: str | None, password: str | None, client_id: str | None = None
    ) -> Identity | None:
        """The identity of a CONNECT, or None to refuse it."""
        identity = await self._authenticate(username, password)
        if (
            identity is not None
            and identity.role is not Role.INGEST
            and self._ingest_client_id
            and (client_id or "").startswith(self._ingest_client_id)
        ):
            logger.warning(
                "embedded broker refused %r (user %r): PELBIOT's own client id", client_id, username
            )
            return None
        return identity

    async def _authenticate(self, username: str | None, password: str | None) -> Identity | None:
        if username is not None and username == self._ingest[0]:
            if hmac.compare_digest((password or "").encode(), self._ingest[1].encode()):
                return Identity(Role.INGEST, username)
            return None
        snap = await self._current(0.0)
        if username is not None:
            cred = snap.devices.get(username)
            # In a thread: on the loop, a reconnect storm or a password guesser would stall
            # the API and the live feed that share it.
            if cred is not None and await asyncio.to_thread(
                self._verify, password or "", cred.password_hash
            ):
                return Identity(Role.DEVICE, username)
            if cred is not None or not self._anonymous_allowed(snap):
                return None
        # No credentials, or unknown ones before any device exists: as before devices existed.
        return Identity(Role.ANONYMOUS) if self._anonymous_allowed(snap) else None

    async def may_publish(self, identity: Identity | None, topic: str) -> bool:
        return await self._may_publish(identity, topic, self._refresh_s)

    async def may_send_will(self, identity: Identity | None, topic: str) -> bool:
        """A will about to be sent: the rules now (a device disabled since it connected may not),
        and never a topic with wildcards (amqtt does not check a will's topic itself)."""
        if "+" in topic or "#" in topic or not topic:
            return False
        return await self._may_publish(identity, topic, 0.0)

    async def _may_publish(self, identity: Identity | None, topic: str, max_age: float) -> bool:
        if identity is None:
            return False
        if identity.role is Role.INGEST:
            return True
        snap = await self._current(max_age)
        if identity.role is Role.ANONYMOUS:
            return self._anonymous_allowed(snap)
        cred = snap.devices.get(identity.name or "")
        if cred is None:  # disabled or deleted since it connected
            return False
        return any(
            topic == f"{self._prefix}/{panel}" or topic.startswith(f"{self._prefix}/{panel}/")
            for panel in cred.panels
        )

    def may_receive(self, identity: Identity | None) -> bool:
        """Delivery to a subscriber (per message: no registry read, the last snapshot)."""
        if identity is None or identity.role is Role.DEVICE:
            return False
        return identity.role is Role.INGEST or self._anonymous_allowed(self._snapshot)

    async def may_subscribe(self, identity: Identity | None) -> bool:
        """Devices only publish (Mosquitto's ACL gives them ``topic write`` only)."""
        if identity is None or identity.role is Role.DEVICE:
            return False
        if identity.role is Role.ANONYMOUS:
            return self._anonymous_allowed(await self._current(self._refresh_s))
        return True


class DeviceAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """amqtt authentication through a ``BrokerGate`` (config: ``{"gate": gate}``)."""

    @dataclass
    class Config:
        gate: Any = field(default=None)

    async def authenticate(self, *, session: Any) -> bool:
        gate: BrokerGate = self.context.config.gate
        identity = await gate.authenticate(session.username, session.password, session.client_id)
        if identity is None:
            logger.info(
                "embedded broker refused %s (user %r): bad or missing credentials",
                session.client_id,
                session.username,
            )
        elif session.will_flag and not await gate.may_send_will(identity, session.will_topic or ""):
            # amqtt would send the will without a topic check: refuse it here.
            logger.info(
                "embedded broker refused %s (user %r): a will to %r it may not publish to",
                session.client_id,
                session.username,
                session.will_topic,
            )
            identity = None
        setattr(session, _ATTR, identity)
        return identity is not None


class DeviceTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """amqtt topic checks through the same ``BrokerGate``."""

    @dataclass
    class Config:
        gate: Any = field(default=None)

    async def topic_filtering(
        self, *, session: Any = None, topic: str | None = None, action: Any = None
    ) -> bool:
        gate: BrokerGate = self.context.config.gate
        identity = session_identity(session)
        if action == Action.RECEIVE:
            return gate.may_receive(identity)
        if action == Action.SUBSCRIBE:
            return await gate.may_subscribe(identity)
        allowed = await gate.may_publish(identity, topic or "")
        if not allowed:
            logger.debug("embedded broker dropped a publish to %r by %r", topic, identity)
        return allowed
