"""Sessions and accounts after the #9 review: password change ends other sessions, refresh-token
reuse ends the session, CSRF bound to the session and required on logout, usernames unique
ignoring case, no empty region names."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pelbiot.errors import UnauthorizedError
from pelbiot.security.permissions import Role
from pelbiot.security.sessions import REUSE_GRACE_MS
from pelbiot.storage import schema
from tests.support.accounts import audit, runtime_of, tokens_for

ClientFactory = Callable[..., AbstractContextManager[TestClient]]
PASSWORD = "Correct-horse-42"
NO_AUTH = {"Authorization": ""}


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def refresh(client: TestClient, refresh_token: str) -> Any:
    response = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": refresh_token}, headers=NO_AUTH
    )
    client.cookies.clear()
    return response


# -- sessions ----------------------------------------------------------------------------------


def test_changing_my_password_ends_my_other_sessions_but_not_this_one(client: TestClient) -> None:
    runtime_of(client).users.create("mira", PASSWORD, Role.OPERATOR)
    here = tokens_for(client, "mira")
    laptop = tokens_for(client, "mira")  # e.g. a session someone else holds
    changed = client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "Brand-new-pass-77"},
        headers=bearer(here),
    )
    assert changed.status_code == 204, changed.text
    assert client.get("/api/v1/auth/me", headers=bearer(here)).status_code == 200
    assert client.get("/api/v1/auth/me", headers=bearer(laptop)).status_code == 401
    assert refresh(client, laptop["refresh_token"]).status_code == 401  # refresh token too
    renewed = refresh(client, here["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    assert client.get("/api/v1/auth/me", headers=bearer(renewed.json())).status_code == 200


def test_a_reused_refresh_token_ends_the_whole_session(client: TestClient) -> None:
    runtime_of(client).users.create("rhea", PASSWORD, Role.VIEWER)
    first = tokens_for(client, "rhea")
    other = tokens_for(client, "rhea")  # another session of the same user is not touched
    # The thief refreshes first with the stolen token...
    thief = refresh(client, first["refresh_token"])
    assert thief.status_code == 200
    assert client.get("/api/v1/auth/me", headers=bearer(thief.json())).status_code == 200
    age_rotation(client, first["refresh_token"], REUSE_GRACE_MS + 1000)
    # ...then, later, the owner presents the same (now rotated) token: the session ends for both.
    owner = refresh(client, first["refresh_token"])
    assert owner.status_code == 401
    assert owner.json()["error"]["code"] == "unauthorized"
    assert client.get("/api/v1/auth/me", headers=bearer(thief.json())).status_code == 401
    assert refresh(client, thief.json()["refresh_token"]).status_code == 401
    assert client.get("/api/v1/auth/me", headers=bearer(other)).status_code == 200

    reuse = audit(client, action="session.reuse")
    assert len(reuse) == 1
    assert (reuse[0]["actor"], reuse[0]["success"]) == ("rhea", False)


def age_rotation(client: TestClient, refresh_token: str, by_ms: int) -> None:
    """The clock: make the session's last rotation ``by_ms`` older."""
    session_id = refresh_token.partition(".")[0]
    c = schema.sessions.c
    with runtime_of(client).engine.begin() as conn:
        conn.execute(
            schema.sessions.update()
            .where(c.id == session_id)
            .values(rotated_ms=c.rotated_ms - by_ms)
        )


def test_two_tabs_refreshing_at_once_are_not_taken_for_a_theft(client: TestClient) -> None:
    """Tabs share the refresh cookie: the one that loses the race is refused, the session lives,
    and the loser's retry with the renewed token works."""
    runtime_of(client).users.create("tabby", PASSWORD, Role.VIEWER)
    first = tokens_for(client, "tabby")
    winner = refresh(client, first["refresh_token"])
    assert winner.status_code == 200
    loser = refresh(client, first["refresh_token"])
    assert loser.status_code == 401
    assert "renewed by another request" in loser.json()["error"]["message"]
    assert client.get("/api/v1/auth/me", headers=bearer(winner.json())).status_code == 200
    assert refresh(client, winner.json()["refresh_token"]).status_code == 200
    assert audit(client, action="session.reuse") == []


def test_a_replay_from_another_address_within_the_grace_ends_the_session(
    client: TestClient,
) -> None:
    """The race grace is for tabs of one browser: a thief who refreshed first from elsewhere
    cannot shelter behind it when the owner's replay arrives seconds later."""
    runtime_of(client).users.create("vera", PASSWORD, Role.VIEWER)
    first = tokens_for(client, "vera")
    sessions = runtime_of(client).sessions
    stolen = sessions.refresh(first["refresh_token"], address="203.0.113.9")
    with pytest.raises(UnauthorizedError):
        sessions.refresh(first["refresh_token"], address="testclient")
    with pytest.raises(UnauthorizedError):
        sessions.refresh(stolen.refresh_token, address="203.0.113.9")
    assert [e["actor"] for e in audit(client, action="session.reuse")] == ["vera"]


def test_a_wrong_refresh_secret_does_not_end_the_session(client: TestClient) -> None:
    """Only a secret the session really had counts as reuse; a guess is just refused."""
    runtime_of(client).users.create("remy", PASSWORD, Role.VIEWER)
    tokens = tokens_for(client, "remy")
    session_id = tokens["refresh_token"].partition(".")[0]
    assert refresh(client, f"{session_id}.guessed-secret").status_code == 401
    assert client.get("/api/v1/auth/me", headers=bearer(tokens)).status_code == 200
    assert refresh(client, tokens["refresh_token"]).status_code == 200
    assert audit(client, action="session.reuse") == []


# -- CSRF --------------------------------------------------------------------------------------


def cookie_login(client: TestClient, username: str) -> dict[str, str]:
    client.cookies.clear()
    response = client.post(
        "/api/v1/auth/login", json={"username": username, "password": PASSWORD}, headers=NO_AUTH
    )
    assert response.status_code == 200
    return {c.name: str(c.value) for c in client.cookies.jar}


def test_the_csrf_token_is_bound_to_its_session(make_client: ClientFactory) -> None:
    with make_client(login=False) as client:
        runtime_of(client).users.create("cleo", PASSWORD, Role.OPERATOR)
        runtime_of(client).store.create_panel("p1", {"name": "Panel 1"})
        first = cookie_login(client, "cleo")
        second = cookie_login(client, "cleo")
        assert first["pelbiot_csrf"] != second["pelbiot_csrf"]
        # Session 2's cookie with session 1's CSRF value as cookie and header (a planted or
        # lifted pair, which a double-submit check alone accepts): refused.
        client.cookies.clear()
        client.cookies.set("pelbiot_access", second["pelbiot_access"])
        client.cookies.set("pelbiot_csrf", first["pelbiot_csrf"])
        crossed = client.patch(
            "/api/v1/panels/p1",
            json={"notes": "x"},
            headers={"X-CSRF-Token": first["pelbiot_csrf"]},
        )
        assert crossed.status_code == 403
        assert "CSRF" in crossed.json()["error"]["message"]
        own = client.patch(
            "/api/v1/panels/p1",
            json={"notes": "x"},
            headers={"X-CSRF-Token": second["pelbiot_csrf"]},
        )
        assert own.status_code == 200, own.text


def test_cookie_logout_needs_the_csrf_header(make_client: ClientFactory) -> None:
    with make_client(login=False) as client:
        runtime_of(client).users.create("lou", PASSWORD, Role.VIEWER)
        cookies = cookie_login(client, "lou")
        refused = client.post("/api/v1/auth/logout")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
        assert client.get("/api/v1/auth/me").status_code == 200  # still logged in

        # With only the refresh cookie left (the access cookie expired), the same holds.
        client.cookies.delete("pelbiot_access")
        assert client.post("/api/v1/auth/logout").status_code == 403
        bad = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": "guess"})
        assert bad.status_code == 403
        out = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": cookies["pelbiot_csrf"]})
        assert out.status_code == 204
        client.cookies.set("pelbiot_access", cookies["pelbiot_access"])
        assert client.get("/api/v1/auth/me").status_code == 401


def test_bearer_and_refresh_body_logout_need_no_csrf_header(client: TestClient) -> None:
    runtime_of(client).users.create("bea", PASSWORD, Role.VIEWER)
    by_bearer = tokens_for(client, "bea")
    assert client.post("/api/v1/auth/logout", headers=bearer(by_bearer)).status_code == 204
    assert client.get("/api/v1/auth/me", headers=bearer(by_bearer)).status_code == 401
    by_body = tokens_for(client, "bea")
    out = client.post(
        "/api/v1/auth/logout", json={"refresh_token": by_body["refresh_token"]}, headers=NO_AUTH
    )
    assert out.status_code == 204
    assert client.get("/api/v1/auth/me", headers=bearer(by_body)).status_code == 401


# -- usernames and regions ---------------------------------------------------------------------


def test_usernames_are_unique_ignoring_case_and_login_ignores_case(client: TestClient) -> None:
    made = client.post(
        "/api/v1/users", json={"username": "Budi", "password": PASSWORD, "role": "viewer"}
    )
    assert made.status_code == 201
    for clash in ("budi", "BUDI", "bUdI"):
        again = client.post(
            "/api/v1/users", json={"username": clash, "password": PASSWORD, "role": "admin"}
        )
        assert again.status_code == 409, clash
        assert again.json()["error"]["code"] == "conflict"
    assert (
        len([u for u in client.get("/api/v1/users").json() if u["username"].lower() == "budi"]) == 1
    )
    for spelling in ("Budi", "budi", "BUDI"):
        me = client.get("/api/v1/auth/me", headers=bearer(tokens_for(client, spelling)))
        assert me.json()["username"] == "Budi"  # the account's own spelling
    assert runtime_of(client).users.by_name("BUDI")["username"] == "Budi"


def test_empty_region_names_on_a_user_are_refused(client: TestClient) -> None:
    for regions in ([""], ["North", " "]):
        made = client.post(
            "/api/v1/users",
            json={"username": "rina", "password": PASSWORD, "role": "viewer", "regions": regions},
        )
        assert made.status_code == 422, regions
    made = client.post(
        "/api/v1/users",
        json={"username": "rina", "password": PASSWORD, "role": "viewer", "regions": ["North"]},
    )
    assert made.status_code == 201
    patched = client.patch(f"/api/v1/users/{made.json()['id']}", json={"regions": [""]})
    assert patched.status_code == 422
    try:
        runtime_of(client).users.create("rudi", PASSWORD, Role.VIEWER, regions=[""])
    except Exception as exc:  # the CLI path refuses too
        assert "regions" in str(exc)
    else:
        raise AssertionError("an empty region name was accepted by the CLI path")
