"""The permission matrix, walked: every route (plus the live WebSocket) for every kind of caller.

Callers: anonymous, each role, an expired token, and an API key of each scope. Each gets 401 or
403 exactly where ``permissions.ROUTES`` says, the data where it may, and never a 500. A second
test keeps ``ROUTES`` and the app's routes in step (fail closed), a third keeps
docs/permissions.md generated from the same tables (``PELBIOT_WRITE_DOCS=1`` rewrites it).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from pelbiot.api.deps import authorize
from pelbiot.errors import ForbiddenError
from pelbiot.models import Reading
from pelbiot.security.permissions import (
    ANONYMOUS_VIEWER,
    PUBLIC,
    ROLE_PERMISSIONS,
    ROUTES,
    SCOPE_PERMISSIONS,
    SCOPES,
    UNSCOPED_PERMISSIONS,
    Perm,
    Role,
    route_template,
)
from pelbiot.security.sessions import account_services
from tests.support.accounts import TEST_PASSWORD, login_as

ClientFactory = Callable[..., AbstractContextManager[TestClient]]
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "permissions.md"

IDENTITIES = [
    "anonymous",
    "anonymous-read",  # no token, PELBIOT_ANONYMOUS_READ=true
    "super_admin",
    "admin",
    "operator",
    "viewer",
    "expired",
    "key:ingest",
    "key:read",
    "key:admin",
]
# FastAPI's own pages and the dashboard shell are served outside the gate, by design.
UNGATED = {
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("GET", "/"),
}


def permissions_of(identity: str) -> frozenset[Perm]:
    if identity == "anonymous-read":
        return ANONYMOUS_VIEWER.permissions
    if identity in ("anonymous", "expired"):
        return frozenset()
    if identity.startswith("key:"):
        return SCOPE_PERMISSIONS[identity.removeprefix("key:")]
    return ROLE_PERMISSIONS[Role(identity)]


@dataclass
class Site:
    """What each walk needs: resources to act on, one set per app."""

    prefix: str
    target_user: int
    key_to_revoke: int
    refresh_token: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    method: str
    path: str
    ok: set[int]
    json: Any = None
    params: dict[str, Any] | None = None
    check: Callable[[Any], None] | None = None


def _has_p1(body: Any) -> None:
    assert "p1" in {p["id"] for p in body["items"]}


def _latest_p1(body: Any) -> None:
    assert body["values"]["voltage"]["value"] == 230.0


def _seed_ok(body: Any) -> None:
    assert body["success"] is True


# One request per route that the caller may make, built to succeed when allowed (or to fail
# for a reason other than access, as noted). Order matters only for logout, which comes last.
SPECS: dict[tuple[str, str], Callable[[Site], Call]] = {
    ("GET", "/health"): lambda s: Call("GET", "/health", {200}),
    ("GET", "/api/health"): lambda s: Call("GET", "/api/health", {200}),
    ("POST", "/api/v1/auth/login"): lambda s: Call(
        "POST",
        "/api/v1/auth/login",
        {200},
        json={"username": "matrix-login", "password": TEST_PASSWORD},
    ),
    ("POST", "/api/v1/auth/refresh"): lambda s: Call(
        "POST", "/api/v1/auth/refresh", {200}, json={"refresh_token": s.refresh_token}
    ),
    ("GET", "/api/v1/auth/me"): lambda s: Call("GET", "/api/v1/auth/me", {200}),
    # Allowed callers get past the gate and are refused for the wrong current password.
    ("POST", "/api/v1/auth/password"): lambda s: Call(
        "POST",
        "/api/v1/auth/password",
        {422},
        json={"current_password": "Not-the-password-1", "new_password": "Never-used-pass-2"},
    ),
    ("GET", "/api/v1/site"): lambda s: Call("GET", "/api/v1/site", {200}),
    ("GET", "/api/v1/panels"): lambda s: Call("GET", "/api/v1/panels", {200}, check=_has_p1),
    ("POST", "/api/v1/panels"): lambda s: Call(
        "POST", "/api/v1/panels", {201}, json={"id": "p-new", "name": "New", "region": "A"}
    ),
    ("GET", "/api/v1/panels/{panel_id}"): lambda s: Call("GET", "/api/v1/panels/p1", {200}),
    ("PATCH", "/api/v1/panels/{panel_id}"): lambda s: Call(
        "PATCH", "/api/v1/panels/p1", {200}, json={"notes": "walked"}
    ),
    ("DELETE", "/api/v1/panels/{panel_id}"): lambda s: Call(
        "DELETE", "/api/v1/panels/p-del", {204}
    ),
    ("GET", "/api/v1/panels/{panel_id}/latest"): lambda s: Call(
        "GET", "/api/v1/panels/p1/latest", {200}, check=_latest_p1
    ),
    ("GET", "/api/v1/panels/{panel_id}/readings"): lambda s: Call(
        "GET",
        "/api/v1/panels/p1/readings",
        {200},
        params={"metric": "voltage"},
        check=lambda b: b["series"][0]["points"][0]["value"] == 230.0,
    ),
    ("GET", "/api/v1/latest"): lambda s: Call(
        "GET", "/api/v1/latest", {200}, check=lambda b: b[0]["panel_id"] == "p1"
    ),
    ("GET", "/api/v1/energy/today"): lambda s: Call("GET", "/api/v1/energy/today", {200}),
    ("GET", "/api/v1/ingest/status"): lambda s: Call("GET", "/api/v1/ingest/status", {200}),
    ("GET", "/api/v1/ingest/rejected"): lambda s: Call("GET", "/api/v1/ingest/rejected", {200}),
    ("POST", "/api/v1/ingest"): lambda s: Call(
        "POST",
        "/api/v1/ingest",
        {200},
        json={"panel": "p1", "metric": "current", "value": 12.5},
        check=lambda b: b["accepted"] == 1,
    ),
    ("GET", "/api/v1/users"): lambda s: Call("GET", "/api/v1/users", {200}),
    ("POST", "/api/v1/users"): lambda s: Call(
        "POST",
        "/api/v1/users",
        {201},
        json={"username": "walker", "password": "Fresh-secret-42", "role": "viewer"},
    ),
    ("GET", "/api/v1/users/{user_id}"): lambda s: Call(
        "GET", f"/api/v1/users/{s.target_user}", {200}
    ),
    ("PATCH", "/api/v1/users/{user_id}"): lambda s: Call(
        "PATCH", f"/api/v1/users/{s.target_user}", {200}, json={"regions": ["A"]}
    ),
    ("POST", "/api/v1/users/{user_id}/unlock"): lambda s: Call(
        "POST", f"/api/v1/users/{s.target_user}/unlock", {204}
    ),
    ("POST", "/api/v1/users/{user_id}/password"): lambda s: Call(
        "POST",
        f"/api/v1/users/{s.target_user}/password",
        {204},
        json={"new_password": "Reset-secret-42"},
    ),
    ("GET", "/api/v1/api-keys"): lambda s: Call("GET", "/api/v1/api-keys", {200}),
    ("POST", "/api/v1/api-keys"): lambda s: Call(
        "POST", "/api/v1/api-keys", {201}, json={"name": "walked", "scopes": ["read"]}
    ),
    ("DELETE", "/api/v1/api-keys/{key_id}"): lambda s: Call(
        "DELETE", f"/api/v1/api-keys/{s.key_to_revoke}", {204}
    ),
    # In this order: the device the POST creates is changed, re-keyed and deleted.
    ("GET", "/api/v1/devices"): lambda s: Call("GET", "/api/v1/devices", {200}),
    ("POST", "/api/v1/devices"): lambda s: Call(
        "POST", "/api/v1/devices", {201}, json={"name": "walked", "panels": ["p1"]}
    ),
    ("PATCH", "/api/v1/devices/{name}"): lambda s: Call(
        "PATCH", "/api/v1/devices/walked", {200}, json={"disabled": True}
    ),
    ("POST", "/api/v1/devices/{name}/password"): lambda s: Call(
        "POST", "/api/v1/devices/walked/password", {200}, json={}
    ),
    ("DELETE", "/api/v1/devices/{name}"): lambda s: Call("DELETE", "/api/v1/devices/walked", {204}),
    ("GET", "/api/v1/audit"): lambda s: Call("GET", "/api/v1/audit", {200}),
    ("GET", "/api/mqtt/status"): lambda s: Call("GET", "/api/mqtt/status", {200}, check=_seed_ok),
    ("GET", "/api/mqtt/last-values"): lambda s: Call(
        "GET", "/api/mqtt/last-values", {200}, check=_seed_ok
    ),
    ("GET", "/api/mqtt/last-value/{topic:path}"): lambda s: Call(
        "GET",
        f"/api/mqtt/last-value/{s.prefix}/p1/voltage",
        {200},
        check=lambda b: b["data"]["value"] == 230.0,
    ),
    ("GET", "/api/mqtt/history"): lambda s: Call(
        "GET",
        "/api/mqtt/history",
        {200},
        params={"topic": f"{s.prefix}/p1/voltage"},
        check=lambda b: b["data"][0]["value"] == 230.0,
    ),
    ("GET", "/api/mqtt/topics"): lambda s: Call("GET", "/api/mqtt/topics", {200}, check=_seed_ok),
    # No broker in this app: an allowed publish reaches the broker check (seed-shaped 503).
    ("POST", "/api/mqtt/publish"): lambda s: Call(
        "POST",
        "/api/mqtt/publish",
        {503},
        json={"topic": f"{s.prefix}/p1/voltage", "message": "231"},
        check=lambda b: b == {"success": False, "error": "no MQTT broker configured"},
    ),
    ("POST", "/api/v1/auth/logout"): lambda s: Call("POST", "/api/v1/auth/logout", {204}),
}


def _prepare(client: TestClient, identity: str) -> Site:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    settings = client.app_settings  # type: ignore[attr-defined]
    now = int(time.time() * 1000)
    runtime.store.create_panel("p1", {"name": "Panel 1", "region": "A"})
    runtime.store.create_panel("p-del", {"name": "Doomed", "region": "A"})
    done = threading.Event()
    runtime.writer.submit(
        [Reading("p1", "voltage", now - 1000, 230.0), Reading("p1", "energy", now - 500, 10.0)],
        done.set,
        timeout=5,
    )
    assert done.wait(10)
    target = runtime.users.create("target", "Some-secret-4242", Role.VIEWER)["id"]
    runtime.users.create("matrix-login", TEST_PASSWORD, Role.VIEWER)
    refresh = runtime.sessions.login("matrix-login", TEST_PASSWORD, address="setup").refresh_token
    key_to_revoke = runtime.api_keys.create(name="doomed", scopes=["read"], actor="setup")[0]["id"]
    site = Site(settings.topic_prefix, target, key_to_revoke, refresh)
    if identity.startswith("anonymous"):
        pass
    elif identity == "expired":
        runtime.users.create("stale", TEST_PASSWORD, Role.SUPER_ADMIN)
        _users, past = account_services(
            runtime.engine, settings, runtime.audit, clock=lambda: time.time() - 7200
        )
        token = past.login("stale", TEST_PASSWORD, address="setup").access_token
        site.headers = {"Authorization": f"Bearer {token}"}
    elif identity.startswith("key:"):
        scope = identity.removeprefix("key:")
        _record, key = runtime.api_keys.create(name=scope, scopes=[scope], actor="setup")
        site.headers = {"X-API-Key": key}
    else:
        site.headers = login_as(client, f"as-{identity}", Role(identity))
    client.headers.pop("Authorization", None)  # every request names its caller explicitly
    return site


@pytest.mark.parametrize("identity", IDENTITIES)
def test_every_route_for_every_caller(make_client: ClientFactory, identity: str) -> None:
    with make_client(anonymous_read=identity == "anonymous-read") as client:
        site = _prepare(client, identity)
        perms = permissions_of(identity)
        paths = client.get("/openapi.json").json()["paths"]
        documented = {(m.upper(), p) for p, ops in paths.items() for m in ops}
        assert documented == {(m, t.replace(":path", "")) for m, t in SPECS}
        _check_live(client, site, identity, Perm.READ in perms)
        for (method, template), make in SPECS.items():  # logout last: it ends the session
            call = make(site)
            rule = ROUTES[(method, template)]
            response = client.request(
                call.method, call.path, json=call.json, params=call.params, headers=site.headers
            )
            client.cookies.clear()  # login and refresh answer with cookies; keep callers apart
            where = f"{identity}: {method} {call.path} -> {response.status_code} {response.text}"
            assert response.status_code < 500 or response.status_code in call.ok, where
            if rule is PUBLIC or rule in perms:
                assert response.status_code in call.ok, where
                if call.check is not None and response.content:
                    call.check(response.json())
            elif identity in ("anonymous", "anonymous-read", "expired"):
                assert response.status_code == 401, where
                assert response.json()["error"]["code"] == "unauthorized", where
            else:
                assert response.status_code == 403, where
                assert response.json()["error"]["code"] == "forbidden", where


def _check_live(client: TestClient, site: Site, identity: str, allowed: bool) -> None:
    """WS /api/v1/live with the caller's header, and with ?token= for bearer tokens."""
    attempts: list[tuple[str, dict[str, str]]] = [("/api/v1/live", site.headers)]
    token = site.headers.get("X-API-Key") or site.headers.get("Authorization", "")[7:]
    if token:
        attempts.append((f"/api/v1/live?token={token}", {}))
    for url, headers in attempts:
        if allowed:
            with client.websocket_connect(url, headers=headers) as ws:
                snapshot = ws.receive_json()
                assert snapshot["type"] == "snapshot", (identity, url)
                assert snapshot["panels"]["p1"]["values"]["voltage"] == 230.0
        else:
            with (
                pytest.raises(WebSocketDisconnect) as refused,
                client.websocket_connect(url, headers=headers) as ws,
            ):
                ws.receive_json()
            assert refused.value.code == 1008, (identity, url)


def test_roles_and_scopes_are_what_the_docs_promise() -> None:
    """The tables pinned by hand, so a change to them is a deliberate, reviewed edit."""
    assert ROLE_PERMISSIONS[Role.VIEWER] == {Perm.READ, Perm.SELF}
    assert ROLE_PERMISSIONS[Role.OPERATOR] == {Perm.READ, Perm.SELF, Perm.PANEL_EDIT, Perm.PUBLISH}
    assert ROLE_PERMISSIONS[Role.ADMIN] == ROLE_PERMISSIONS[Role.SUPER_ADMIN] == set(Perm)
    assert SCOPE_PERMISSIONS["ingest"] == {Perm.INGEST}
    assert SCOPE_PERMISSIONS["read"] == {Perm.READ}
    assert SCOPE_PERMISSIONS["admin"] == set(Perm) - {Perm.SELF}
    public = sorted(k for k, v in ROUTES.items() if v is PUBLIC)
    assert public == [
        ("GET", "/api/health"),
        ("GET", "/api/v1/site"),
        ("GET", "/health"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/logout"),
        ("POST", "/api/v1/auth/refresh"),
    ]
    # Only admins write panels' existence, only the ingest permission writes readings.
    assert ROUTES[("POST", "/api/v1/ingest")] is Perm.INGEST
    assert ROUTES[("DELETE", "/api/v1/panels/{panel_id}")] is Perm.PANEL_MANAGE
    assert ROUTES[("POST", "/api/mqtt/publish")] is Perm.PUBLISH


# -- routes and rules stay in step ------------------------------------------------------------


def _app_routes(client: TestClient) -> dict[tuple[str, str], Any]:
    """(method or "WS", full path) -> route, through included routers."""
    routes: dict[tuple[str, str], Any] = {}
    app_routes = client.app.routes  # type: ignore[attr-defined]
    try:  # FastAPI >= 0.160 keeps included routers unflattened
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI: flat routes
        contexts: list[Any] = list(app_routes)
    else:
        contexts = list(iter_route_contexts(app_routes))
    for route in contexts:
        original = getattr(route, "original_route", route)
        if isinstance(original, APIWebSocketRoute):
            routes[("WS", route.path)] = route
        elif isinstance(original, APIRoute) or getattr(route, "methods", None):
            for method in route.methods or ():
                if method != "HEAD":
                    routes[(method, route.path)] = route
    return routes


def test_every_route_has_a_rule_and_every_rule_a_route(client: TestClient) -> None:
    routes = _app_routes(client)
    gated = set(routes) - UNGATED
    assert gated == set(ROUTES), (
        f"routes without a rule: {sorted(gated - set(ROUTES))}; "
        f"rules without a route: {sorted(set(ROUTES) - gated)}"
    )
    assert set(SPECS) | {("WS", "/api/v1/live")} == set(ROUTES), "the walk misses a route"
    for key, route in routes.items():
        if key in UNGATED or key[1] in ("/health", "/api/health"):
            continue
        calls = {d.call for d in route.dependant.dependencies}
        assert authorize in calls, f"{key} is not behind the authorize gate"


def test_a_route_without_a_rule_is_refused(client: TestClient) -> None:
    """A route someone adds behind the gate but forgets in ROUTES is refused, even to root."""
    extra = APIRouter(prefix="/api/v1", dependencies=[Depends(authorize)])

    @extra.get("/forgotten")
    def forgotten() -> dict[str, bool]:
        return {"reached": True}

    tiny = FastAPI()
    tiny.include_router(extra)
    tiny.state.runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with (
        TestClient(tiny) as other,
        pytest.raises(ForbiddenError, match="no access rule for GET /api/v1/forgotten"),
    ):
        other.get("/api/v1/forgotten", headers=dict(client.headers))


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("GET", "/api/v1/panels/p1", "/api/v1/panels/{panel_id}"),
        ("GET", "/api/v1/panels/p1/latest", "/api/v1/panels/{panel_id}/latest"),
        ("GET", "/api/v1/panels/p1/latest/x", None),
        ("GET", "/api/mqtt/last-value/panel/a/b", "/api/mqtt/last-value/{topic:path}"),
        ("POST", "/api/v1/users/7/unlock", "/api/v1/users/{user_id}/unlock"),
        ("PUT", "/api/v1/panels/p1", None),
        ("WS", "/api/v1/live", "/api/v1/live"),
        ("GET", "/api/v1/live", None),
    ],
)
def test_route_template(method: str, path: str, template: str | None) -> None:
    assert route_template(method, path) == template


# -- docs/permissions.md ----------------------------------------------------------------------

BEGIN = "<!-- BEGIN GENERATED: tests/security/test_permissions_matrix.py -->"
END = "<!-- END GENERATED -->"


def render_matrix() -> str:
    roles = [Role.SUPER_ADMIN, Role.ADMIN, Role.OPERATOR, Role.VIEWER]
    columns = [r.value for r in roles] + [f"key `{s}`" for s in SCOPES] + ["anonymous*"]
    holders = [
        *(ROLE_PERMISSIONS[r] for r in roles),
        *(SCOPE_PERMISSIONS[s] for s in SCOPES),
        ANONYMOUS_VIEWER.permissions,
    ]
    lines = ["### Permissions by role and API key scope", ""]
    lines.append("| permission | " + " | ".join(columns) + " |")
    lines.append("|---|" + "---|" * len(columns))
    for perm in Perm:
        marks = ["yes" if perm in h else "-" for h in holders]
        lines.append(f"| `{perm.value}` | " + " | ".join(marks) + " |")
    unscoped = ", ".join(f"`{p.value}`" for p in Perm if p in UNSCOPED_PERMISSIONS)
    lines += [
        "",
        f"A key limited to a region or a panel never holds {unscoped}, whatever its scopes.",
        "",
        "\\* anonymous: callers without a token when `PELBIOT_ANONYMOUS_READ=true`; "
        "with the default (false) they reach public routes only.",
        "",
        "### Permission needed by each route",
        "",
    ]
    lines.append("| method | path | permission | " + " | ".join(columns) + " |")
    lines.append("|---|---|---|" + "---|" * len(columns))
    for (method, path), perm in sorted(ROUTES.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if perm is PUBLIC:
            marks = ["yes"] * len(columns)
            name = "public"
        else:
            marks = ["yes" if perm in h else "-" for h in holders]
            name = f"`{perm.value}`"
        lines.append(f"| {method} | `{path}` | {name} | " + " | ".join(marks) + " |")
    return "\n".join(lines) + "\n"


def test_docs_permission_matrix_is_generated_from_the_tables() -> None:
    text = DOC.read_text()
    head, _, rest = text.partition(BEGIN + "\n")
    _old, _, tail = rest.partition(END)
    assert head and tail is not None, f"{DOC} lacks the generated-section markers"
    fresh = f"{head}{BEGIN}\n{render_matrix()}{END}{tail}"
    if os.environ.get("PELBIOT_WRITE_DOCS") == "1" and text != fresh:
        DOC.write_text(fresh)
        text = fresh
    assert text == fresh, (
        "docs/permissions.md is out of date: run "
        "PELBIOT_WRITE_DOCS=1 pytest tests/security/test_permissions_matrix.py -k docs"
    )
