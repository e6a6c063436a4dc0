"""HTTP ingest in tests: an API key made through the API, and a post that carries only it."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def make_key(client: TestClient, scopes: list[str], **extra: Any) -> dict[str, Any]:
    """Create an API key as the client's logged-in user; the answer holds the key once."""
    response = client.post(
        "/api/v1/api-keys", json={"name": f"key-{'-'.join(scopes)}", "scopes": scopes, **extra}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def post_readings(client: TestClient, key: str, payload: Any) -> Any:
    """POST /api/v1/ingest with the key alone (no user token rides along)."""
    return client.post(
        "/api/v1/ingest", json=payload, headers={"Authorization": "", "X-API-Key": key}
    )
