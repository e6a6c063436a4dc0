"""Accounts over HTTP: login, refresh, logout, cookies and CSRF, passwords, lockout, audit."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from pelbiot.security.permissions import Role
from pelbiot.security.sessions import LOGIN_FAILED, account_services
from pelbiot.storage import schema
from tests.support.accounts import (
    PASSWORD,
    TEST_PASSWORD,
    audit,
    login,
    login_as,
    runtime_of,
    tokens_for,
)

ClientFactory = Callable[..., AbstractContextManager[TestClient]]


def add_user(
    client: TestClient,
    username: str,
    role: Role = Role.VIEWER,
    *,
    password: str = PASSWORD,
    regions: list[str] | None = None,
) -> int:
    row = runtime_of(client).users.create(username, password, role, regions=regions)
    return int(row["id"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- login, refresh, logout --------------------------------------------------------------------


def test_login_me_refresh_and_logout_revokes_both_tokens(client: TestClient) -> None:
    add_user(client, "vera", Role.VIEWER, regions=["Jakarta"])
    tokens = tokens_for(client, "vera")
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    me = client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json() == {
        "kind": "user",
        "username": "vera",
        "role": "viewer",
        "regions": ["Jakarta"],
        "permissions": ["read", "self"],
        "password_expired": False,
    }

    refreshed = client.post(
        "/api/v1/auth/refresh",
        json={"refresh_token": tokens["refresh_token"]},
        headers={"Authorization": ""},
    )
    assert refreshed.status_code == 200, refreshed.text
    new = refreshed.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    # The refresh token rotates (a reused one ends the session: test_account_hardening.py).
    assert client.get("/api/v1/auth/me", headers=bearer(new["access_token"])).status_code == 200

    out = client.post("/api/v1/auth/logout", headers=bearer(new["access_token"]))
    assert out.status_code == 204
    for token in (tokens["access_token"], new["access_token"]):
        gone = client.get("/api/v1/panels", headers=bearer(token))
        assert gone.status_code == 401
        assert gone.json()["error"]["code"] == "unauthorized"
        assert gone.headers["www-authenticate"] == "Bearer"
    after = client.post(
        "/api/v1/auth/refresh",
        json={"refresh_token": new["refresh_token"]},
        headers={"Authorization": ""},
    )
    assert after.status_code == 401
    actions = [e["action"] for e in audit(client, actor="vera")]
    assert "login" in actions
    assert "logout" in actions


def test_logout_with_an_expired_access_token_still_ends_the_session(client: TestClient) -> None:
    """The dashboard logs out after the access token ran out: the refresh token must die too."""
    add_user(client, "ella")
    runtime = runtime_of(client)
    _users, past = account_services(
        runtime.engine, runtime.settings, runtime.audit, clock=lambda: time.time() - 3600
    )
    stale = past.login("ella", PASSWORD, address="test")
    assert client.get("/api/v1/auth/me", headers=bearer(stale.access_token)).status_code == 401
    out = client.post(
        "/api/v1/auth/logout",
        json={"refresh_token": stale.refresh_token},
        headers=bearer(stale.access_token),
    )
    assert out.status_code == 204
    again = client.post(
        "/api/v1/auth/refresh",
        json={"refresh_token": stale.refresh_token},
        headers={"Authorization": ""},
    )
    assert again.status_code == 401


def test_expired_and_forged_tokens_are_refused(client: TestClient) -> None:
    add_user(client, "otto", Role.OPERATOR)
    runtime = runtime_of(client)
    _users, past = account_services(
        runtime.engine, runtime.settings, runtime.audit, clock=lambda: time.time() - 3600
    )
    expired = past.login("otto", PASSWORD, address="test").access_token
    for token in (expired, expired[:-4] + "AAAA", "not-a-jwt", "pbk_nothing_here"):
        response = client.get("/api/v1/panels", headers=bearer(token))
        assert response.status_code == 401, token
        assert response.json()["error"]["code"] == "unauthorized"
    # A token signed with another secret is refused too.
    other = runtime.settings.model_copy(update={"secret_key": "another-secret-entirely"})
    foreign = account_services(runtime.engine, other, runtime.audit)[1].login(
        "otto", PASSWORD, address="t"
    )
    assert client.get("/api/v1/panels", headers=bearer(foreign.access_token)).status_code == 401


def test_disabling_a_user_ends_their_sessions_and_login(client: TestClient) -> None:
    user_id = add_user(client, "dora")
    token = tokens_for(client, "dora")["access_token"]
    assert client.get("/api/v1/panels", headers=bearer(token)).status_code == 200
    assert client.patch(f"/api/v1/users/{user_id}", json={"disabled": True}).status_code == 200
    assert client.get("/api/v1/panels", headers=bearer(token)).status_code == 401
    refused = login(client, "dora")
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == LOGIN_FAILED
    assert client.patch(f"/api/v1/users/{user_id}", json={"disabled": False}).status_code == 200
    assert login(client, "dora").status_code == 200


def test_a_role_change_applies_to_the_next_request(client: TestClient) -> None:
    user_id = add_user(client, "rita", Role.VIEWER)
    token = tokens_for(client, "rita")["access_token"]
    body = {"id": "p-role", "name": "Panel"}
    assert client.post("/api/v1/panels", json=body, headers=bearer(token)).status_code == 403
    assert client.patch(f"/api/v1/users/{user_id}", json={"role": "admin"}).status_code == 200
    assert client.post("/api/v1/panels", json=body, headers=bearer(token)).status_code == 201


def test_null_fields_in_a_user_patch_change_nothing(client: TestClient) -> None:
    user_id = add_user(client, "nina")
    assert client.patch(f"/api/v1/users/{user_id}", json={"disabled": True}).status_code == 200
    for body in ({"role": None}, {"disabled": None}, {"role": None, "disabled": None}):
        response = client.patch(f"/api/v1/users/{user_id}", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["role"] == "viewer"
        assert response.json()["disabled"] is True
    cleared = client.patch(f"/api/v1/users/{user_id}", json={"regions": None})
    assert cleared.json()["regions"] is None


# -- cookies and CSRF --------------------------------------------------------------------------


def test_cookie_login_needs_the_csrf_header_for_writes(make_client: ClientFactory) -> None:
    with make_client(login=False) as client:
        add_user(client, "cora", Role.OPERATOR)
        runtime_of(client).store.create_panel("p1", {"name": "Panel 1"})
        response = client.post(
            "/api/v1/auth/login", json={"username": "cora", "password": PASSWORD}
        )
        assert response.status_code == 200
        cookies = {c.name: c for c in client.cookies.jar}
        assert set(cookies) == {"pelbiot_access", "pelbiot_refresh", "pelbiot_csrf"}
        set_cookie = response.headers.get_list("set-cookie")
        access = next(h for h in set_cookie if h.startswith("pelbiot_access="))
        assert "HttpOnly" in access
        assert "SameSite=strict" in access or "samesite=strict" in access.lower()
        assert "Secure" not in access  # plain http in the test; https gets Secure (auto)
        csrf_header = next(h for h in set_cookie if h.startswith("pelbiot_csrf="))
        assert "HttpOnly" not in csrf_header  # the page's script must read it
        assert cookies["pelbiot_refresh"].path == "/api/v1/auth"

        # Reads with the cookie alone work.
        assert client.get("/api/v1/auth/me").json()["username"] == "cora"
        assert client.get("/api/v1/panels").status_code == 200

        # A cookie-authenticated write without the header is refused...
        no_header = client.patch("/api/v1/panels/p1", json={"notes": "a"})
        assert no_header.status_code == 403
        assert "CSRF" in no_header.json()["error"]["message"]
        wrong = client.patch(
            "/api/v1/panels/p1", json={"notes": "a"}, headers={"X-CSRF-Token": "guess"}
        )
        assert wrong.status_code == 403
        # ...and accepted with the cookie's value echoed in X-CSRF-Token.
        csrf = client.cookies["pelbiot_csrf"]
        ok = client.patch("/api/v1/panels/p1", json={"notes": "a"}, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 200, ok.text
        assert ok.json()["notes"] == "a"

        # The refresh cookie alone renews the session.
        renewed = client.post("/api/v1/auth/refresh")
        assert renewed.status_code == 200
        assert client.get("/api/v1/auth/me").status_code == 200

        # Logging out clears the cookies and ends the session (a write: the CSRF header too).
        old_access = client.cookies["pelbiot_access"]
        assert client.post("/api/v1/auth/logout").status_code == 403
        out = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 204
        assert "pelbiot_access" not in client.cookies
        assert client.get("/api/v1/auth/me").status_code == 401
        client.cookies.set("pelbiot_access", old_access)
        assert client.get("/api/v1/auth/me").status_code == 401


def test_a_stale_cookie_does_not_block_login(make_client: ClientFactory) -> None:
    with make_client(login=False) as client:
        add_user(client, "sam")
        client.cookies.set("pelbiot_access", "stale-garbage")
        response = client.post("/api/v1/auth/login", json={"username": "sam", "password": PASSWORD})
        assert response.status_code == 200


# -- passwords ---------------------------------------------------------------------------------


def test_change_password_policy_history_and_wrong_current(make_client: ClientFactory) -> None:
    with make_client(password_history=2) as client:
        add_user(client, "paula", Role.VIEWER, password="First-pass-111")
        token = tokens_for(client, "paula", "First-pass-111")["access_token"]

        def change(current: str, new: str) -> Any:
            return client.post(
                "/api/v1/auth/password",
                json={"current_password": current, "new_password": new},
                headers=bearer(token),
            )

        wrong = change("not-my-password", "Second-pass-222")
        assert wrong.status_code == 422
        assert wrong.json()["error"]["details"] == {"field": "current_password"}
        for weak, why in [
            ("short1!", "at least 10 characters"),
            ("my-paula-password", "username"),
            ("password123", "too common"),
            ("aaaaaaaaaaaaaaaa", "different characters"),
        ]:
            refused = change("First-pass-111", weak)
            assert refused.status_code == 422, weak
            assert why in refused.json()["error"]["message"], refused.json()

        assert change("First-pass-111", "Second-pass-222").status_code == 204
        assert login(client, "paula", "First-pass-111").status_code == 401
        assert login(client, "paula", "Second-pass-222").status_code == 200
        # The current session survives the user's own change.
        assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200

        reuse = change("Second-pass-222", "First-pass-111")  # among the last 2
        assert reuse.status_code == 422
        assert "used recently" in reuse.json()["error"]["message"]
        same = change("Second-pass-222", "Second-pass-222")
        assert same.status_code == 422
        assert change("Second-pass-222", "Third-pass-333").status_code == 204
        # Now the first password is three back: allowed again with a history of 2.
        assert change("Third-pass-333", "First-pass-111").status_code == 204
        actions = [e["action"] for e in audit(client, target="paula")]
        assert actions.count("user.password") == 3


def test_admin_password_reset_ends_the_users_sessions(client: TestClient) -> None:
    user_id = add_user(client, "rex")
    token = tokens_for(client, "rex")["access_token"]
    weak = client.post(f"/api/v1/users/{user_id}/password", json={"new_password": "short"})
    assert weak.status_code == 422
    reset = client.post(
        f"/api/v1/users/{user_id}/password", json={"new_password": "Reset-pass-9876"}
    )
    assert reset.status_code == 204
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401
    assert login(client, "rex", "Reset-pass-9876").status_code == 200
    entry = audit(client, action="user.password_reset")[0]
    assert entry["actor"] == "root"
    assert entry["target"] == "rex"


def test_expired_password_is_reported_at_login(make_client: ClientFactory) -> None:
    with make_client(password_expiry_days=30) as client:
        user_id = add_user(client, "olga")
        with runtime_of(client).engine.begin() as conn:
            conn.execute(
                update(schema.users)
                .where(schema.users.c.id == user_id)
                .values(password_changed_ms=0)
            )
        tokens = tokens_for(client, "olga")
        assert tokens["password_expired"] is True
        me = client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))
        assert me.json()["password_expired"] is True


# -- enumeration (lockout and throttling: test_lockout.py) -----------------------------------


@pytest.mark.real_password_hashing
def test_no_user_enumeration_by_answer_or_timing(make_client: ClientFactory) -> None:
    with make_client(
        login_attempts_per_account=1000,
        login_attempts_per_address=1000,
        lockout_threshold=1000,
        login_backoff_s=0,
    ) as client:
        add_user(client, "known")
        stored = runtime_of(client).users.row(runtime_of(client).users.by_name("known")["id"])
        assert stored["password_hash"].startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        answers: dict[str, set[tuple[int, str]]] = {"unknown": set(), "wrong": set()}
        times: dict[str, list[float]] = {"unknown": [], "wrong": []}
        for i in range(6):
            for kind, name in (("unknown", f"ghost{i}"), ("wrong", "known")):
                started = time.perf_counter()
                response = login(client, name, f"Wrong-password-{i}")
                times[kind].append(time.perf_counter() - started)
                answers[kind].add((response.status_code, response.json()["error"]["message"]))
        assert answers["unknown"] == answers["wrong"] == {(401, LOGIN_FAILED)}
        ratio = statistics.median(times["unknown"]) / statistics.median(times["wrong"])
        assert 0.5 < ratio < 2.0, times  # both verify an argon2 hash; no early exit


# -- who may manage whom -----------------------------------------------------------------------


def test_an_admin_cannot_create_or_touch_a_super_admin(client: TestClient) -> None:
    root_id = runtime_of(client).users.by_name("root")["id"]
    viewer_id = add_user(client, "vic")
    admin_id = add_user(client, "adam", Role.ADMIN)
    client.headers.update(bearer(tokens_for(client, "adam")["access_token"]))

    new_super = {"username": "boss2", "password": "Boss-password-77", "role": "super_admin"}
    assert client.post("/api/v1/users", json=new_super).status_code == 403
    assert client.patch(f"/api/v1/users/{root_id}", json={"disabled": True}).status_code == 403
    assert client.patch(f"/api/v1/users/{root_id}", json={"role": "viewer"}).status_code == 403
    promote = client.patch(f"/api/v1/users/{viewer_id}", json={"role": "super_admin"})
    assert promote.status_code == 403
    reset = client.post(
        f"/api/v1/users/{root_id}/password", json={"new_password": "Taken-over-123"}
    )
    assert reset.status_code == 403
    assert client.post(f"/api/v1/users/{root_id}/unlock").status_code == 403
    # Admins may manage admins, operators and viewers.
    made = client.post(
        "/api/v1/users",
        json={"username": "opal", "password": "Operator-secret-1", "role": "operator"},
    )
    assert made.status_code == 201
    assert made.json()["role"] == "operator"
    assert client.patch(f"/api/v1/users/{viewer_id}", json={"role": "admin"}).status_code == 200
    # ...but not themselves into something else, nor disabled.
    assert client.patch(f"/api/v1/users/{admin_id}", json={"disabled": True}).status_code == 403
    assert client.patch(f"/api/v1/users/{admin_id}", json={"role": "viewer"}).status_code == 403

    login_as(client, "root", Role.SUPER_ADMIN)
    assert client.post("/api/v1/users", json=new_super).status_code == 201
    assert client.patch(f"/api/v1/users/{root_id}", json={"disabled": True}).status_code == 403


def test_user_create_validation(client: TestClient) -> None:
    base = {"password": "Valid-password-1", "role": "viewer"}
    assert client.post("/api/v1/users", json={**base, "username": "a b"}).status_code == 422
    assert (
        client.post("/api/v1/users", json={**base, "username": "x", "extra": 1}).status_code == 422
    )
    assert client.post("/api/v1/users", json={**base, "username": "ok-name"}).status_code == 201
    dup = client.post("/api/v1/users", json={**base, "username": "ok-name"})
    assert dup.status_code == 409
    weak = client.post("/api/v1/users", json={**base, "username": "w1", "password": "short"})
    assert weak.status_code == 422
    assert client.get("/api/v1/users/999999").status_code == 404
    listed = client.get("/api/v1/users").json()
    assert [u["username"] for u in listed] == ["ok-name", "root"]
    assert all(not any("hash" in k for k in u) for u in listed)


# -- the audit log -----------------------------------------------------------------------------


def test_audit_records_who_when_where_and_what(client: TestClient) -> None:
    started = time.time()
    panel = {"id": "p-audit", "name": "Audit panel", "region": "Bogor"}
    assert client.post("/api/v1/panels", json=panel).status_code == 201
    assert client.patch("/api/v1/panels/p-audit", json={"region": "Depok"}).status_code == 200
    assert client.delete("/api/v1/panels/p-audit").status_code == 204
    made = client.post(
        "/api/v1/users",
        json={"username": "ulla", "password": "Viewer-secret-1", "role": "viewer"},
    )
    user_id = made.json()["id"]
    assert client.patch(f"/api/v1/users/{user_id}", json={"regions": ["Depok"]}).status_code == 200
    key = client.post("/api/v1/api-keys", json={"name": "meter", "scopes": ["ingest"]}).json()
    assert client.delete(f"/api/v1/api-keys/{key['id']}").status_code == 204
    assert login(client, "ulla", "Viewer-secret-1").status_code == 200
    assert login(client, "ulla", "Wrong-password-1").status_code == 401
    assert login(client, "ghost", "Wrong-password-1").status_code == 401

    entries = audit(client, since=str(int(started)))
    by_action: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_action.setdefault(entry["action"], []).append(entry)
    expected = {
        "panel.create": ("root", "p-audit"),
        "panel.update": ("root", "p-audit"),
        "panel.delete": ("root", "p-audit"),
        "user.create": ("root", "ulla"),
        "user.update": ("root", "ulla"),
        "api_key.create": ("root", f"meter ({key['prefix']})"),
        "api_key.revoke": ("root", f"meter ({key['prefix']})"),
        "login": ("ulla", None),
    }
    for action, (actor, target) in expected.items():
        entry = by_action[action][0]
        assert (entry["actor"], entry["target"]) == (actor, target), entry
        assert entry["address"] == "testclient"
        assert entry["success"] is True
        assert entry["at"].endswith("+07:00")
    assert by_action["panel.update"][0]["details"] == {"region": {"from": "Bogor", "to": "Depok"}}
    assert by_action["panel.create"][0]["details"]["region"] == "Bogor"
    assert by_action["user.create"][0]["details"] == {"regions": None, "role": "viewer"}
    assert by_action["user.update"][0]["details"] == {"regions": ["Depok"]}
    assert by_action["api_key.create"][0]["details"]["scopes"] == ["ingest"]
    failures = {(e["actor"], e["details"]["reason"]) for e in by_action["login.failed"]}
    assert failures == {("ulla", "wrong password"), ("ghost", "unknown user")}
    assert all(e["success"] is False for e in by_action["login.failed"])
    # Newest first, filters and paging.
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids, reverse=True)
    page = audit(client, limit=2)
    older = audit(client, limit=2, before_id=page[-1]["id"])
    assert {e["id"] for e in older}.isdisjoint({e["id"] for e in page})
    assert all(e["success"] is False for e in audit(client, success="false"))
    assert client.get("/api/v1/audit", params={"since": "yesterday-ish"}).status_code == 422


def test_audit_never_stores_passwords_or_keys(client: TestClient) -> None:
    client.post(
        "/api/v1/users", json={"username": "sue", "password": "Secret-pass-321", "role": "viewer"}
    )
    key = client.post("/api/v1/api-keys", json={"name": "k", "scopes": ["read"]}).json()["key"]
    login(client, "sue", "Wrong-secret-321")
    dump = str(audit(client, limit=1000))
    secret_part = key.split("_", 2)[2]  # pbk_<prefix>_<secret>; the secret may hold "_" itself
    for secret in ("Secret-pass-321", "Wrong-secret-321", key, secret_part, TEST_PASSWORD):
        assert secret not in dump
