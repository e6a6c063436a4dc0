"""Keeping an open live feed's rights current.

A WebSocket outlives the request that opened it, so the rights checked at the handshake can go
stale: the session is logged out, the user disabled, demoted or moved to other regions, the key
revoked, a panel moved out of the caller's region. The feed re-checks them off the event loop
every ``PELBIOT_LIVE_SESSION_RECHECK_S`` and at once when this process commits a panel or account
change (``hub.access_changed``; other processes' changes wait for the period):

- the session ended, the user is disabled, the key is revoked or lost the read permission: the
  socket is closed with 1008 and a reason (the dashboard then goes back to its login page);
- role, regions or the panels in them changed: the client is re-scoped in place (``access``
  frame, ``removed`` frames for panels it may no longer see, a fresh ``snapshot``).

A database outage during a re-check keeps the last known rights (logged once per outage): the
outage changes nobody's rights, and closing every dashboard would only make them reconnect into
the same outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from fastapi import WebSocket
from starlette.status import WS_1008_POLICY_VIOLATION

from pelbiot.api.deps import identify
from pelbiot.errors import NotFoundError, UnauthorizedError
from pelbiot.live.hub import LiveClient
from pelbiot.runtime import Runtime
from pelbiot.security.permissions import Perm, Principal, Role, user_principal
from pelbiot.security.users import regions_in

logger = logging.getLogger(__name__)


class AccessEndedError(UnauthorizedError):
    """The feed's credentials no longer admit it; the message goes into the close frame."""


@dataclass(frozen=True, slots=True)
class Access:
    principal: Principal | None
    visible: frozenset[str] | None  # None = every panel


def access_of(runtime: Runtime, principal: Principal | None) -> Access:
    """What the principal the gate admitted may see (blocking: run it in a thread)."""
    return Access(principal, runtime.directory.visible_panels(principal))


async def open_access(runtime: Runtime, principal: Principal | None) -> tuple[Access, int]:
    """A feed's first rights (computed off the event loop), and the change number read before
    computing them, for ``watch_access``: a change committed meanwhile comes after that number,
    so the feed re-checks at once rather than at the next periodic check."""
    seen = runtime.hub.access_changed.generation
    return await asyncio.to_thread(access_of, runtime, principal), seen


def current_access(websocket: WebSocket, runtime: Runtime, principal: Principal | None) -> Access:
    """The caller's rights as the database says now (blocking: run it in a thread)."""
    return access_of(runtime, _current_principal(websocket, runtime, principal))


def _current_principal(
    websocket: WebSocket, runtime: Runtime, principal: Principal | None
) -> Principal | None:
    if principal is None or principal.kind == "anonymous":
        return principal  # nothing to revoke
    if principal.session_id is not None and principal.user_id is not None:
        # The session, not its 15-minute access token, governs an open feed: re-read the
        # session and the account rather than the token the handshake carried.
        try:
            row = runtime.users.row(principal.user_id)
        except NotFoundError:
            raise AccessEndedError("account removed") from None
        if row["disabled"]:
            raise AccessEndedError("account disabled")
        if not runtime.sessions.session_active(principal.session_id):
            raise AccessEndedError("session ended; log in again")
        current = user_principal(
            user_id=principal.user_id,
            username=row["username"],
            role=Role(row["role"]),
            regions=regions_in(row["regions"]),
            session_id=principal.session_id,
        )
    else:
        # An API key: the same lookup the gate makes, so whatever bounds a key's rights
        # there (revocation, expiry, its creator's current rights) bounds the feed too.
        try:
            found, _from_cookie = identify(websocket, runtime)
        except UnauthorizedError as exc:
            raise AccessEndedError(exc.message) from None
        if found is None:
            raise AccessEndedError("credentials no longer valid")
        current = found
    if not current.can(Perm.READ):
        raise AccessEndedError("access to the live feed was withdrawn")
    return current


async def watch_access(
    websocket: WebSocket, runtime: Runtime, client: LiveClient, access: Access, seen: int
) -> None:
    """Re-check the feed's rights until the socket ends (see the module docstring); ``seen`` is
    the change number read before ``access`` was computed (``open_access``)."""
    if access.principal is None or access.principal.kind == "anonymous":
        return  # anonymous read-only access: nothing to revoke, nothing scoped
    hub = runtime.hub
    signal = hub.access_changed
    period = runtime.settings.live_session_recheck_s
    loop = asyncio.get_running_loop()
    next_full = loop.time() + period
    outage_logged = False
    while True:
        await signal.wait(seen, next_full - loop.time())
        changes = signal.changes_since(seen)
        seen = signal.generation
        # Whole re-check (account, session, key, then panels) when due or when the account
        # changed; a panel change only recomputes a scoped caller's panels from the directory.
        full = loop.time() >= next_full or _concerns_account(changes, access.principal)
        if not full and not (access.principal.scoped and _touches_panels(changes)):
            continue
        if full:
            next_full = loop.time() + period
        try:
            if full:
                now = await asyncio.to_thread(current_access, websocket, runtime, access.principal)
            else:
                now = await asyncio.to_thread(access_of, runtime, access.principal)
        except AccessEndedError as ended:
            logger.info("live feed of %s closed: %s", access.principal.name, ended.message)
            with contextlib.suppress(RuntimeError, OSError):
                await websocket.close(code=WS_1008_POLICY_VIOLATION, reason=ended.message[:120])
            return
        except Exception:
            if not outage_logged:
                logger.warning("live feed rights re-check failed; keeping the last known rights")
                outage_logged = True
            continue
        outage_logged = False
        if _rights(now.principal) != _rights(access.principal):
            hub.send(client, {"type": "access", "reason": "your role or regions changed"})
        hub.rescope(client, now.visible)
        access = now


def _concerns_account(changes: set[Hashable] | None, principal: Principal) -> bool:
    if changes is None:
        return True  # fell too far behind to know
    if principal.key_id is not None:
        # A key's rights may follow its creator's account, which the principal does not name.
        return any(kind == "user" for kind, *_ in _pairs(changes))
    return ("user", principal.user_id) in changes


def _touches_panels(changes: set[Hashable] | None) -> bool:
    return changes is None or any(kind == "panel" for kind, *_ in _pairs(changes))


def _pairs(changes: set[Hashable]) -> list[tuple[Any, ...]]:
    return [c for c in changes if isinstance(c, tuple) and c]


def _rights(principal: Principal | None) -> object:
    if principal is None:
        return None
    return (principal.permissions, principal.role, principal.regions, principal.panel_id)
