"""Who may do what: roles, API key scopes, and the permission each route needs. Pure, no I/O.

This module is the one place access is decided; ``api/deps.py`` applies it to every request and
docs/permissions.md is generated from the same tables (a test keeps them in step).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    SUPER_ADMIN = "super_admin"
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


class Perm(StrEnum):
    READ = "read"  # panels, latest values, history, live feed, ingest status, site facts
    PANEL_EDIT = "panel_edit"  # edit panel metadata
    PANEL_MANAGE = "panel_manage"  # create and delete panels
    PUBLISH = "publish"  # publish to the broker (seed-compatible endpoint)
    INGEST = "ingest"  # HTTP ingest of readings
    USERS = "users"  # list, create, edit, unlock users
    API_KEYS = "api_keys"  # create, list, revoke API keys and MQTT device credentials
    AUDIT = "audit"  # read the audit log
    SELF = "self"  # own account: who am I, change my password, log out


ROLE_PERMISSIONS: dict[Role, frozenset[Perm]] = {
    Role.VIEWER: frozenset({Perm.READ, Perm.SELF}),
    Role.OPERATOR: frozenset({Perm.READ, Perm.SELF, Perm.PANEL_EDIT, Perm.PUBLISH}),
    Role.ADMIN: frozenset(set(Perm)),
    Role.SUPER_ADMIN: frozenset(set(Perm)),
}

SCOPES = ("ingest", "read", "admin")
SCOPE_PERMISSIONS: dict[str, frozenset[Perm]] = {
    "ingest": frozenset({Perm.INGEST}),
    "read": frozenset({Perm.READ}),
    "admin": frozenset(set(Perm) - {Perm.SELF}),
}

# Permissions over things that have no region; never held by a region- or panel-limited key.
UNSCOPED_PERMISSIONS = frozenset({Perm.USERS, Perm.API_KEYS, Perm.AUDIT})

# (method, path template) -> permission. Routes not listed are refused (fail closed); a test
# checks that every route of the app is here.
PUBLIC = None
ROUTES: dict[tuple[str, str], Perm | None] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/api/health"): PUBLIC,
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("POST", "/api/v1/auth/refresh"): PUBLIC,
    ("POST", "/api/v1/auth/logout"): PUBLIC,
    ("GET", "/api/v1/auth/me"): Perm.SELF,
    ("POST", "/api/v1/auth/password"): Perm.SELF,
    ("GET", "/api/v1/site"): PUBLIC,
    ("GET", "/api/v1/panels"): Perm.READ,
    ("POST", "/api/v1/panels"): Perm.PANEL_MANAGE,
    ("GET", "/api/v1/panels/{panel_id}"): Perm.READ,
    ("PATCH", "/api/v1/panels/{panel_id}"): Perm.PANEL_EDIT,
    ("DELETE", "/api/v1/panels/{panel_id}"): Perm.PANEL_MANAGE,
    ("GET", "/api/v1/panels/{panel_id}/latest"): Perm.READ,
    ("GET", "/api/v1/panels/{panel_id}/readings"): Perm.READ,
    ("GET", "/api/v1/latest"): Perm.READ,
    ("GET", "/api/v1/energy/today"): Perm.READ,
    ("GET", "/api/v1/ingest/status"): Perm.READ,
    ("GET", "/api/v1/ingest/rejected"): Perm.READ,
    ("POST", "/api/v1/ingest"): Perm.INGEST,
    ("WS", "/api/v1/live"): Perm.READ,
    ("GET", "/api/v1/users"): Perm.USERS,
    ("POST", "/api/v1/users"): Perm.USERS,
    ("GET", "/api/v1/users/{user_id}"): Perm.USERS,
    ("PATCH", "/api/v1/users/{user_id}"): Perm.USERS,
    ("POST", "/api/v1/users/{user_id}/unlock"): Perm.USERS,
    ("POST", "/api/v1/users/{user_id}/password"): Perm.USERS,
    ("GET", "/api/v1/api-keys"): Perm.API_KEYS,
    ("POST", "/api/v1/api-keys"): Perm.API_KEYS,
    ("DELETE", "/api/v1/api-keys/{key_id}"): Perm.API_KEYS,
    # MQTT device credentials are credentials too: who may mint keys may mint these.
    ("GET", "/api/v1/devices"): Perm.API_KEYS,
    ("POST", "/api/v1/devices"): Perm.API_KEYS,
    ("PATCH", "/api/v1/devices/{name}"): Perm.API_KEYS,
    ("POST", "/api/v1/devices/{name}/password"): Perm.API_KEYS,
    ("DELETE", "/api/v1/devices/{name}"): Perm.API_KEYS,
    ("GET", "/api/v1/audit"): Perm.AUDIT,
    ("GET", "/api/mqtt/status"): Perm.READ,
    ("GET", "/api/mqtt/last-values"): Perm.READ,
    ("GET", "/api/mqtt/last-value/{topic:path}"): Perm.READ,
    ("GET", "/api/mqtt/history"): Perm.READ,
    ("GET", "/api/mqtt/topics"): Perm.READ,
    ("POST", "/api/mqtt/publish"): Perm.PUBLISH,
}


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    regex = "".join(
        (".+" if p.endswith(":path}") else "[^/]+") if p.startswith("{") else re.escape(p)
        for p in parts
    )
    return re.compile(f"^{regex}$")


_COMPILED: dict[str, list[tuple[re.Pattern[str], str]]] = {}
for _method, _template in ROUTES:
    _COMPILED.setdefault(_method, []).append((_pattern(_template), _template))


def route_template(method: str, path: str) -> str | None:
    """The ROUTES template a concrete request path matches, or None (no rule: refuse)."""
    for pattern, template in _COMPILED.get(method, []):
        if pattern.match(path):
            return template
    return None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking. ``regions`` None means every region; ``panel_id`` pins an API key."""

    kind: str  # "user" | "api_key" | "anonymous"
    name: str
    permissions: frozenset[Perm]
    role: Role | None = None
    user_id: int | None = None
    session_id: str | None = None
    key_id: int | None = None
    regions: frozenset[str] | None = None
    panel_id: str | None = None

    def can(self, perm: Perm) -> bool:
        return perm in self.permissions

    def sees_panel(self, panel_id: str, region: str | None) -> bool:
        if self.panel_id is not None and panel_id != self.panel_id:
            return False
        return self.regions is None or (region is not None and region in self.regions)

    @property
    def scoped(self) -> bool:
        return self.regions is not None or self.panel_id is not None


ANONYMOUS_VIEWER = Principal(
    kind="anonymous", name="anonymous", permissions=frozenset({Perm.READ}), role=Role.VIEWER
)


def user_principal(
    *, user_id: int, username: str, role: Role, regions: frozenset[str] | None, session_id: str
) -> Principal:
    # Region limits apply to operators and viewers only; admins see everything.
    limited = regions if role in (Role.OPERATOR, Role.VIEWER) else None
    return Principal(
        kind="user",
        name=username,
        permissions=ROLE_PERMISSIONS[role],
        role=role,
        user_id=user_id,
        session_id=session_id,
        regions=limited,
    )


def key_principal(
    *, key_id: int, name: str, scopes: frozenset[str], panel_id: str | None, region: str | None
) -> Principal:
    perms: set[Perm] = set()
    for scope in scopes:
        perms |= SCOPE_PERMISSIONS.get(scope, frozenset())
    if panel_id is not None or region is not None:
        # Accounts, keys and the audit log are not per region: a restricted key that could
        # manage them could mint itself an unrestricted one.
        perms -= UNSCOPED_PERMISSIONS
    return Principal(
        kind="api_key",
        name=f"key:{name}",
        permissions=frozenset(perms),
        key_id=key_id,
        regions=frozenset({region}) if region is not None else None,
        panel_id=panel_id,
    )


def may_manage(actor: Principal, target_role: Role) -> bool:
    """Admins manage operators, viewers and other admins; only super admins touch super admins."""
    if not actor.can(Perm.USERS):
        return False
    return target_role != Role.SUPER_ADMIN or actor.role == Role.SUPER_ADMIN
