"""HTTP hardening: rate limits, security headers, CORS, body size, production secret,
anonymous read mode."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from pelbiot.errors import ConfigError
from pelbiot.security.permissions import Role
from pelbiot.settings import DEV_SECRET, load_settings
from tests.support.accounts import login_as
from tests.support.mosquitto import Mosquitto

ClientFactory = Callable[..., AbstractContextManager[TestClient]]


# -- rate limits -------------------------------------------------------------------------------


def test_rate_limit_per_address_answers_429_with_retry_after(make_client: ClientFactory) -> None:
    with make_client(login=False, rate_limit_per_address=5, anonymous_read=True) as client:
        for _ in range(5):
            assert client.get("/api/v1/site").status_code == 200
        limited = client.get("/api/v1/panels")
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        error = limited.json()["error"]
        assert error["code"] == "rate_limited"
        assert 0 < error["details"]["retry_after_s"] <= 60
        # Health stays reachable for probes; the live feed is limited like the rest.
        assert client.get("/health").status_code == 200
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/api/v1/live") as ws,
        ):
            ws.receive_json()
        assert refused.value.code == 1008


def test_rate_limit_per_api_key(make_client: ClientFactory) -> None:
    with make_client(rate_limit_per_key=3) as client:
        key = client.post("/api/v1/api-keys", json={"name": "k", "scopes": ["read"]}).json()["key"]
        other = client.post("/api/v1/api-keys", json={"name": "j", "scopes": ["read"]}).json()
        headers = {"Authorization": "", "X-API-Key": key}
        for _ in range(3):
            assert client.get("/api/v1/panels", headers=headers).status_code == 200
        limited = client.get("/api/v1/panels", headers=headers)
        assert limited.status_code == 429
        assert "API key" in limited.json()["error"]["message"]
        assert int(limited.headers["retry-after"]) >= 1
        # Another key, and users, are not affected.
        assert client.get("/api/v1/panels", headers={"X-API-Key": other["key"]}).status_code == 200
        assert client.get("/api/v1/panels").status_code == 200


# -- security headers --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/api/v1/site", "/api/v1/panels", "/health"])
def test_security_headers_everywhere(client: TestClient, path: str) -> None:
    response = client.get(path)
    csp = response.headers["content-security-policy"]
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'self'" in csp
    assert "object-src 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"
    assert "strict-transport-security" not in response.headers  # plain http: no HSTS
    if path.startswith("/api"):
        assert response.headers["cache-control"] == "no-store"


def test_hsts_behind_an_https_proxy(client: TestClient) -> None:
    response = client.get("/api/v1/site", headers={"X-Forwarded-Proto": "https"})
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")


def test_error_and_refusal_answers_carry_the_headers_too(make_client: ClientFactory) -> None:
    with make_client(login=False) as client:
        for response in (client.get("/api/v1/panels"), client.get("/api/v1/nothing-here")):
            assert response.status_code in (401, 404)
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            assert response.headers["x-content-type-options"] == "nosniff"


def test_swagger_ui_alone_may_run_its_inline_bootstrap(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]


def test_cookies_are_secure_behind_an_https_proxy(make_client: ClientFactory) -> None:
    with make_client(login=False) as client:
        client.app.state.runtime.users.create(  # type: ignore[attr-defined]
            "sec", "Cookie-pass-991", Role.VIEWER
        )
        response = client.post(
            "/api/v1/auth/login",
            json={"username": "sec", "password": "Cookie-pass-991"},
            headers={"X-Forwarded-Proto": "https"},
        )
        assert response.status_code == 200
        for header in response.headers.get_list("set-cookie"):
            assert "Secure" in header, header


# -- CORS --------------------------------------------------------------------------------------


def test_cors_allow_list(make_client: ClientFactory) -> None:
    allowed = "https://dashboard.example.co.id"
    with make_client(cors_origins=[allowed]) as client:
        ok = client.get("/api/v1/site", headers={"Origin": allowed})
        assert ok.headers["access-control-allow-origin"] == allowed
        assert ok.headers["access-control-allow-credentials"] == "true"
        evil = client.get("/api/v1/site", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in evil.headers
        preflight = client.options(
            "/api/v1/panels",
            headers={
                "Origin": allowed,
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "X-CSRF-Token, Content-Type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == allowed
        assert "PATCH" in preflight.headers["access-control-allow-methods"]
        bad_preflight = client.options(
            "/api/v1/panels",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "PATCH"},
        )
        assert bad_preflight.status_code == 400
        assert "access-control-allow-origin" not in bad_preflight.headers


def test_no_cors_by_default(client: TestClient) -> None:
    response = client.get("/api/v1/site", headers={"Origin": "https://anywhere.example"})
    assert "access-control-allow-origin" not in response.headers


# -- request size ------------------------------------------------------------------------------


def test_bodies_over_the_limit_get_413(make_client: ClientFactory) -> None:
    with make_client(max_request_bytes=2048) as client:
        big = {"id": "p-big", "name": "x", "notes": "n" * 3000}
        declared = client.post("/api/v1/panels", json=big)
        assert declared.status_code == 413
        assert declared.json()["error"]["code"] == "too_large"
        assert declared.headers["x-content-type-options"] == "nosniff"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            yield b'{"id": "p-big", "name": "x", "notes": "'
            yield b"n" * 3000
            yield b'"}'

        streamed = client.post(
            "/api/v1/panels", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        assert streamed.json()["error"]["code"] == "too_large"
        assert client.get("/api/v1/panels/p-big").status_code == 404
        small = client.post("/api/v1/panels", json={"id": "p-small", "name": "x"})
        assert small.status_code == 201


# -- production secret -------------------------------------------------------------------------


REAL_SECRET = "kQ3v9ZtX0pL7mB2nR8sW4yE6uH1jD5fA"  # 32 characters, 32 different


@pytest.mark.parametrize(
    "secret",
    [None, DEV_SECRET, "short", "16-chars-is-not!", REAL_SECRET[:31], "x" * 32, "ab" * 20],
)
def test_production_refuses_a_missing_default_short_or_repetitive_secret(
    secret: str | None,
) -> None:
    values = {"env": "production"} | ({"secret_key": secret} if secret else {})
    with pytest.raises(ConfigError, match="PELBIOT_SECRET_KEY") as refused:
        load_settings(**values)
    message = str(refused.value)
    assert "at least 32 characters" in message
    assert 'python -c "import secrets; print(secrets.token_urlsafe(32))"' in message


def test_production_refuses_password_hashing_below_the_owasp_minimum() -> None:
    """The suite hashes cheaply through these settings; production must not be able to."""
    with pytest.raises(ConfigError, match="argon2id minimum"):
        load_settings(env="production", secret_key=REAL_SECRET)
    with pytest.raises(ConfigError, match="argon2id minimum"):
        load_settings(
            env="production",
            secret_key=REAL_SECRET,
            password_hash_time_cost=2,
            password_hash_memory_kib=8192,
        )


@pytest.mark.real_password_hashing
def test_production_accepts_a_real_secret_and_development_the_default() -> None:
    assert load_settings(env="production", secret_key=REAL_SECRET).env == "production"
    assert load_settings(env="production", secret_key=secrets.token_urlsafe(32)).secret_key
    assert load_settings().secret_key == DEV_SECRET


def test_serve_refuses_to_start_in_production_without_a_secret(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PELBIOT_ENV": "production",
        "PELBIOT_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
        "PELBIOT_MQTT_URL": "mqtt://127.0.0.1:9",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pelbiot", "serve", "--port", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "PELBIOT_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr


# -- anonymous read ----------------------------------------------------------------------------


def test_anonymous_read_is_off_by_default(make_client: ClientFactory) -> None:
    with make_client(login=False) as client:
        for path in ("/api/v1/panels", "/api/v1/latest", "/api/mqtt/last-values"):
            response = client.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/api/v1/live") as ws,
        ):
            ws.receive_json()
        assert refused.value.code == 1008
        assert client.get("/api/v1/site").status_code == 200  # public
        assert client.get("/health").status_code == 200


def test_anonymous_read_mode_reads_but_never_writes(make_client: ClientFactory) -> None:
    with make_client(anonymous_read=True) as client:
        root = dict(client.headers)
        assert client.post("/api/v1/panels", json={"id": "p1", "name": "P1"}).status_code == 201
        key = client.post("/api/v1/api-keys", json={"name": "m", "scopes": ["ingest"]}).json()
        ingest = client.post(
            "/api/v1/ingest",
            json={"panel": "p1", "metric": "voltage", "value": 229.9},
            headers={"Authorization": "", "X-API-Key": key["key"]},
        )
        assert ingest.status_code == 200
        client.headers.pop("Authorization")
        client.cookies.clear()

        assert [p["id"] for p in client.get("/api/v1/panels").json()["items"]] == ["p1"]
        assert client.get("/api/v1/panels/p1/latest").json()["values"]["voltage"]["value"] == 229.9
        for path in (
            "/api/v1/latest",
            "/api/v1/energy/today",
            "/api/v1/ingest/status",
            "/api/v1/ingest/rejected",
            "/api/mqtt/status",
            "/api/mqtt/last-values",
            "/api/mqtt/topics",
        ):
            assert client.get(path).status_code == 200, path
        topic = f"{client.app_settings.topic_prefix}/p1/voltage"  # type: ignore[attr-defined]
        history = client.get("/api/mqtt/history", params={"topic": topic}).json()
        assert [h["value"] for h in history["data"]] == [229.9]
        assert client.get(f"/api/mqtt/last-value/{topic}").json()["data"]["value"] == 229.9
        with client.websocket_connect("/api/v1/live") as ws:
            assert "p1" in ws.receive_json()["panels"]

        refused = [
            client.post("/api/mqtt/publish", json={"topic": topic, "message": "1"}),
            client.post("/api/v1/panels", json={"id": "p2", "name": "P2"}),
            client.patch("/api/v1/panels/p1", json={"notes": "x"}),
            client.delete("/api/v1/panels/p1"),
            client.post("/api/v1/ingest", json={"panel": "p1", "metric": "voltage", "value": 1}),
            client.get("/api/v1/users"),
            client.get("/api/v1/api-keys"),
            client.get("/api/v1/audit"),
            client.get("/api/v1/auth/me"),
            client.post(
                "/api/v1/auth/password", json={"current_password": "a", "new_password": "b"}
            ),
        ]
        for response in refused:
            assert response.status_code == 401, (response.request.url, response.text)
            assert response.json()["error"]["code"] == "unauthorized"
        assert client.get("/api/v1/panels/p1", headers=root).json()["notes"] is None
        # A logged-in viewer is still a viewer, not more.
        login_as(client, "viewer1", Role.VIEWER)
        assert client.post("/api/v1/panels", json={"id": "p3", "name": "P3"}).status_code == 403


# -- NUL characters ----------------------------------------------------------------------------


def test_nul_characters_are_refused_the_same_on_every_backend(client: TestClient) -> None:
    """PostgreSQL cannot store NUL (SQLite can): the gate refuses it everywhere with a 422."""
    client.post("/api/v1/panels", json={"id": "p1", "name": "P1"})
    nul = "a\x00b"
    calls = [
        ("POST", "/api/v1/auth/login", {"json": {"username": nul, "password": "Whatever-1"}}),
        ("POST", "/api/v1/auth/refresh", {"json": {"refresh_token": nul}}),
        ("GET", "/api/v1/panels", {"params": {"q": nul}}),
        ("GET", "/api/v1/panels", {"params": {"region": nul}}),
        ("POST", "/api/v1/panels", {"json": {"id": "p2", "name": nul}}),
        ("PATCH", "/api/v1/panels/p1", {"json": {"notes": nul}}),
        ("POST", "/api/v1/api-keys", {"json": {"name": nul, "scopes": ["read"]}}),
        ("GET", "/api/v1/audit", {"params": {"actor": nul}}),
        ("GET", "/api/v1/panels/a%00b", {}),
    ]
    for method, path, kwargs in calls:
        response = client.request(method, path, **kwargs)
        assert response.status_code == 422, (method, path, response.text)
        assert response.json()["error"]["message"] == "NUL characters are not accepted"
    # HTTP ingest refuses it per item, as MQTT does, and keeps the rest of the batch.
    key = client.post("/api/v1/api-keys", json={"name": "m", "scopes": ["ingest"]}).json()["key"]
    batch = client.post(
        "/api/v1/ingest",
        json=[
            {"panel": nul, "metric": "voltage", "value": 1.0},
            {"panel": "p1", "metric": "voltage", "value": 2.0},
        ],
        headers={"X-API-Key": key, "Authorization": ""},
    )
    assert batch.status_code == 200
    assert batch.json()["accepted"] == 1
    assert batch.json()["rejected"][0]["reason"] == "bad_topic"
    # A literal backslash-u-0000 text is no NUL and is stored as written.
    ok = client.patch("/api/v1/panels/p1", json={"notes": "\\u0000"})
    assert ok.status_code == 200
    assert ok.json()["notes"] == "\\u0000"


def test_a_topic_the_broker_refuses_is_not_published(
    make_client: ClientFactory, mosquitto: Mosquitto
) -> None:
    """Mosquitto drops a client that publishes a control character in a topic: publishing one
    through /api/mqtt/publish would cut PELBIOT's own ingest connection."""
    with make_client(mqtt_url=mosquitto.url) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        assert runtime.ingest.wait_connected(10)
        prefix = client.app_settings.topic_prefix  # type: ignore[attr-defined]
        for topic in (f"{prefix}/p1/\x1a", f"{prefix}/\x85", f"{prefix}/\ufffe", f"{prefix}/+"):
            refused = client.post("/api/mqtt/publish", json={"topic": topic, "message": "1"})
            assert refused.status_code == 400, topic
            assert refused.json()["success"] is False
        bad_text = client.post(
            "/api/mqtt/publish",
            content=b'{"topic": "%s/p1/v", "message": {"a": "\\ud800"}}' % prefix.encode(),
            headers={"Content-Type": "application/json"},
        )
        assert bad_text.status_code == 400
        ok = client.post("/api/mqtt/publish", json={"topic": f"{prefix}/p1/v", "message": "1"})
        assert ok.status_code == 200
        assert runtime.ingest.connected
        assert runtime.stats.disconnects == 0


def test_out_of_range_numbers_are_422_not_a_driver_overflow(client: TestClient) -> None:
    """Found by schemathesis: ids past INTEGER (PostgreSQL) and offsets past 64 bits (SQLite)
    crashed in the database driver."""
    for path in (
        "/api/v1/users/2147483648",
        "/api/v1/panels?offset=9223372036854775808",
        "/api/v1/panels/p1/readings?after=9223372036854775807",
        "/api/v1/audit?before_id=2147483648",
    ):
        response = client.get(path)
        assert response.status_code == 422, (path, response.text)
    assert client.delete("/api/v1/api-keys/2147483648").status_code == 422
    assert client.get("/api/v1/users/2147483647").status_code == 404
