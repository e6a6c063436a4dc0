"""Accounts in tests: log a test client in as a user of a given role."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from pelbiot.errors import NotFoundError
from pelbiot.security.permissions import Role

TEST_PASSWORD = "Test-password-4-pelbiot"


def login_as(
    client: TestClient,
    username: str,
    role: Role,
    *,
    regions: list[str] | None = None,
    password: str = TEST_PASSWORD,
) -> dict[str, str]:
    """Create the user if needed, log in, and make the client send its bearer token."""
    users = client.app.state.runtime.users  # type: ignore[attr-defined]
    try:
        users.by_name(username)
    except NotFoundError:
        users.create(username, password, role, regions=regions)
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    client.cookies.clear()
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    client.headers.update(headers)
    return headers


PASSWORD = "Correct-horse-42"  # the password the account tests give their users


def login(client: TestClient, username: str, password: str = PASSWORD) -> Any:
    """POST /auth/login without touching the client's own credentials."""
    response = client.post(
        "/api/v1/auth/login",
        json={"username": username, "password": password},
        headers={"Authorization": ""},
    )
    client.cookies.clear()
    return response


def runtime_of(client: TestClient) -> Any:
    return client.app.state.runtime  # type: ignore[attr-defined]


def tokens_for(client: TestClient, username: str, password: str = PASSWORD) -> dict[str, Any]:
    """Log in (without touching the client's own credentials) and return the token answer."""
    response = login(client, username, password)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def audit(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    """The audit log as the client's logged-in user sees it."""
    response = client.get("/api/v1/audit", params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()
    return entries
