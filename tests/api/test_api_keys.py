"""API keys and HTTP ingest: shown once, hashed, scoped, panel-restricted, expiring, revocable."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.support.databases import query
from tests.support.ingest import make_key


def ingest(client: TestClient, key: str, payload: Any, *, bearer: bool = False) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if bearer else {"X-API-Key": key}
    # No user token on these calls: the key alone must be enough (or not).
    return client.post("/api/v1/ingest", json=payload, headers={"Authorization": "", **headers})


def test_ingest_key_stores_single_telemetry_and_batch_readings(client: TestClient) -> None:
    key = make_key(client, ["ingest"])["key"]
    assert key.startswith("pbk_")
    ts = int(time.time()) - 60
    single = ingest(client, key, {"panel": "gi-1", "metric": "voltage", "value": 230.5, "ts": ts})
    assert single.status_code == 200, single.text
    assert single.json() == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": [],
        "items": [{"index": 0, "status": "stored", "stored": ["voltage"], "duplicates": []}],
    }
    telemetry = ingest(
        client,
        key,
        {"panel": "gi-1", "ts": ts + 1, "values": {"current_l1": 15.5, "frequency": 50.01}},
    )
    assert (telemetry.json()["accepted"], telemetry.json()["rejected"]) == (2, [])
    batch = ingest(
        client,
        key,
        [
            {"panel": "gi-2", "metric": "volt", "value": 229.0, "ts": ts},
            {"panel": "gi-2", "metric": "volt", "value": 229.5, "ts": ts + 1},
            {"panel": "gi-2", "metric": "volt", "value": "nope", "ts": ts + 2},
            {"metric": "volt", "value": 1},
            "not an object",
        ],
        bearer=True,  # a key in the bearer header works too
    )
    assert batch.status_code == 200
    result = batch.json()
    assert result["accepted"] == 2
    assert [r["index"] for r in result["rejected"]] == [2, 3, 4]
    assert result["rejected"][1] == {
        "index": 3,
        "metric": None,
        "reason": "bad_item",
        "detail": 'each reading needs "panel"',
    }

    # Answered after commit: read back at once.
    voltage = client.get(
        "/api/v1/panels/gi-1/readings", params={"metric": "voltage", "start": ts - 10}
    ).json()
    assert [p["value"] for p in voltage["series"][0]["points"]] == [230.5]
    latest = client.get("/api/v1/panels/gi-1/latest").json()["values"]
    assert latest["frequency"]["value"] == 50.01
    volts = client.get(
        "/api/v1/panels/gi-2/readings", params={"metric": "voltage", "start": ts - 10}
    ).json()
    assert [p["value"] for p in volts["series"][0]["points"]] == [229.0, 229.5]
    rejected = client.get("/api/v1/ingest/rejected").json()
    assert any(r["topic"].endswith("/gi-2/volt") for r in rejected)


def test_ingest_refuses_empty_oversized_and_malformed_requests(client: TestClient) -> None:
    key = make_key(client, ["ingest"])["key"]
    assert ingest(client, key, []).status_code == 422
    assert ingest(
        client, key, [{"panel": "p", "metric": "v", "value": 1}] * 10_001
    ).status_code in (
        413,  # larger than PELBIOT_MAX_REQUEST_BYTES (1 MiB) already
        422,
    )
    raw = client.post(
        "/api/v1/ingest",
        content=b"{not json",
        headers={"X-API-Key": key, "Content-Type": "application/json", "Authorization": ""},
    )
    assert raw.status_code == 422
    assert raw.json()["error"]["code"] == "invalid_input"


def test_a_read_key_a_revoked_key_and_an_expired_key_cannot_ingest(client: TestClient) -> None:
    reading = {"panel": "p1", "metric": "voltage", "value": 231.0}
    read_key = make_key(client, ["read"])["key"]
    refused = ingest(client, read_key, reading)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert ingest(client, read_key + "x", reading).status_code == 401
    assert ingest(client, "pbk_nope_nope", reading).status_code == 401
    assert ingest(client, "garbage", reading).status_code == 401

    revoked = make_key(client, ["ingest"])
    assert ingest(client, revoked["key"], reading).status_code == 200
    assert client.delete(f"/api/v1/api-keys/{revoked['id']}").status_code == 204
    gone = ingest(client, revoked["key"], reading)
    assert gone.status_code == 401
    assert "revoked" in gone.json()["error"]["message"]
    assert client.delete("/api/v1/api-keys/99999").status_code == 404

    soon = datetime.now(UTC) + timedelta(seconds=2.5)
    expiring = make_key(client, ["ingest"], expires_at=soon.isoformat())
    assert expiring["expires_at"] is not None
    assert ingest(client, expiring["key"], reading).status_code == 200
    time.sleep(max(0.0, soon.timestamp() - time.time()) + 0.1)
    expired = ingest(client, expiring["key"], reading)
    assert expired.status_code == 401
    listed = {k["id"]: k for k in client.get("/api/v1/api-keys").json()}
    assert listed[expiring["id"]]["active"] is False
    assert listed[revoked["id"]]["active"] is False
    assert listed[revoked["id"]]["revoked_at"] is not None
    past = make_key_raw(client, {"name": "old", "scopes": ["ingest"], "expires_at": "2001-01-01"})
    assert past.status_code == 422


def make_key_raw(client: TestClient, body: dict[str, Any]) -> Any:
    return client.post("/api/v1/api-keys", json=body)


def test_a_panel_restricted_key_writes_its_panel_only(client: TestClient) -> None:
    key = make_key(client, ["ingest"], panel_id="meter-7")["key"]
    own = ingest(client, key, {"panel": "meter-7", "metric": "voltage", "value": 230.0})
    assert own.status_code == 200
    other = ingest(client, key, {"panel": "meter-8", "metric": "voltage", "value": 230.0})
    assert other.status_code == 403
    assert "meter-8" in other.json()["error"]["message"]
    mixed = ingest(
        client,
        key,
        [
            {"panel": "meter-7", "metric": "voltage", "value": 231.0},
            {"panel": "meter-8", "metric": "voltage", "value": 231.0},
        ],
    )
    assert mixed.status_code == 403  # all or nothing: nothing of the batch is stored
    panels = {p["id"] for p in client.get("/api/v1/panels").json()["items"]}
    assert panels == {"meter-7"}
    assert [p["value"] for p in _points(client, "meter-7")] == [230.0]


def _points(client: TestClient, panel: str) -> list[dict[str, Any]]:
    body = client.get(f"/api/v1/panels/{panel}/readings", params={"metric": "voltage"}).json()
    return body["series"][0]["points"] if body["series"] else []


def test_a_region_restricted_key_writes_registered_panels_of_its_region(
    client: TestClient,
) -> None:
    client.post("/api/v1/panels", json={"id": "n1", "name": "N1", "region": "North"})
    client.post("/api/v1/panels", json={"id": "s1", "name": "S1", "region": "South"})
    key = make_key(client, ["ingest"], region="North")["key"]
    assert (
        ingest(client, key, {"panel": "n1", "metric": "voltage", "value": 1.0}).status_code == 200
    )
    assert (
        ingest(client, key, {"panel": "s1", "metric": "voltage", "value": 1.0}).status_code == 403
    )
    # A panel that does not exist yet has no region, so a region key may not create it.
    assert (
        ingest(client, key, {"panel": "new", "metric": "voltage", "value": 1.0}).status_code == 403
    )


def test_keys_are_shown_once_stored_hashed_and_record_last_use(
    client: TestClient, database_url: str
) -> None:
    created = make_key(client, ["read", "ingest"], region="Bandung")
    key = created["key"]
    assert created["scopes"] == ["ingest", "read"]
    assert created["created_by"] == "root"
    assert created["last_used_at"] is None
    listed = client.get("/api/v1/api-keys").json()
    assert "key" not in listed[0]
    assert key not in str(listed)
    stored = query(database_url, "SELECT prefix, key_hash FROM api_keys")
    assert stored[0][0] == created["prefix"]
    assert key.split("_")[-1] not in str(stored)
    assert len(stored[0][1]) == 64  # a SHA-256, never the secret

    used = client.get("/api/v1/panels", headers={"Authorization": "", "X-API-Key": key})
    assert used.status_code == 200
    after = client.get("/api/v1/api-keys").json()[0]
    assert after["last_used_at"] is not None
    assert after["last_used_at"].endswith("+07:00")


def test_key_creation_validation(client: TestClient) -> None:
    for body in (
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["root"]},
        {"name": "", "scopes": ["read"]},
        {"name": "x", "scopes": ["read"], "panel_id": "a/b"},
        {"name": "x", "scopes": ["read"], "owner": "me"},
    ):
        response = client.post("/api/v1/api-keys", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "invalid_input"


def test_a_restricted_admin_key_cannot_reach_beyond_its_restriction(client: TestClient) -> None:
    """An admin-scope key limited to a region or panel administers panels there; it may not
    mint unrestricted keys or accounts (that would escape its limit), nor read the audit log."""
    client.post("/api/v1/panels", json={"id": "n1", "name": "N1", "region": "North"})
    client.post("/api/v1/panels", json={"id": "s1", "name": "S1", "region": "South"})
    for restriction in ({"region": "North"}, {"panel_id": "n1"}):
        key = make_key(client, ["admin"], **restriction)["key"]
        h = {"Authorization": "", "X-API-Key": key}
        assert client.get("/api/v1/panels/n1", headers=h).status_code == 200
        assert client.get("/api/v1/panels/s1", headers=h).status_code == 404
        assert client.patch("/api/v1/panels/n1", json={"notes": "k"}, headers=h).status_code == 200
        assert client.delete("/api/v1/panels/s1", headers=h).status_code == 404
        escape = client.post("/api/v1/api-keys", json={"name": "x", "scopes": ["admin"]}, headers=h)
        assert escape.status_code == 403, restriction
        user = {"username": "sneaky", "password": "Sneaky-secret-1", "role": "admin"}
        assert client.post("/api/v1/users", json=user, headers=h).status_code == 403
        assert client.get("/api/v1/users", headers=h).status_code == 403
        assert client.get("/api/v1/audit", headers=h).status_code == 403
        outside = client.post("/api/v1/panels", json={"id": "x9", "region": "South"}, headers=h)
        assert outside.status_code == 403
    panel_key = make_key(client, ["admin"], panel_id="n1")["key"]
    h = {"Authorization": "", "X-API-Key": panel_key}
    other = client.post("/api/v1/panels", json={"id": "n2", "region": "North"}, headers=h)
    assert other.status_code == 403
    # An unrestricted admin key administers everything.
    full = {"Authorization": "", "X-API-Key": make_key(client, ["admin"])["key"]}
    assert client.get("/api/v1/users", headers=full).status_code == 200
    assert client.get("/api/v1/audit", headers=full).status_code == 200


# -- a key acts with at most its creator's current rights (#9) ----------------------------------


def _user_key(client: TestClient, username: str, role: str, scopes: list[str]) -> tuple[int, str]:
    """A user of ``role`` (made by root) creates a key; returns (user id, key)."""
    password = "Key-owner-pass-42"
    made = client.post(
        "/api/v1/users", json={"username": username, "password": password, "role": role}
    )
    assert made.status_code == 201, made.text
    token = client.post(
        "/api/v1/auth/login",
        json={"username": username, "password": password},
        headers={"Authorization": ""},
    ).json()["access_token"]
    created = client.post(
        "/api/v1/api-keys",
        json={"name": f"{username}-key", "scopes": scopes},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 201, created.text
    return int(made.json()["id"]), str(created.json()["key"])


def test_disabling_the_creator_suspends_the_key_until_re_enabled(client: TestClient) -> None:
    user_id, key = _user_key(client, "kadmin", "admin", ["ingest", "read"])
    h = {"Authorization": "", "X-API-Key": key}
    assert client.get("/api/v1/panels", headers=h).status_code == 200
    assert client.patch(f"/api/v1/users/{user_id}", json={"disabled": True}).status_code == 200
    suspended = client.get("/api/v1/panels", headers=h)
    assert suspended.status_code == 401
    listed = {k["name"]: k for k in client.get("/api/v1/api-keys").json()}
    assert (listed["kadmin-key"]["suspended"], listed["kadmin-key"]["active"]) == (True, True)
    assert "suspended" in suspended.json()["error"]["message"]
    assert "disabled" in suspended.json()["error"]["message"]
    assert ingest(client, key, {"panel": "p1", "values": {"voltage": 230}}).status_code == 401
    assert client.patch(f"/api/v1/users/{user_id}", json={"disabled": False}).status_code == 200
    assert client.get("/api/v1/panels", headers=h).status_code == 200
    assert client.get("/api/v1/api-keys").json()[0]["suspended"] is False


def test_demoting_the_creator_narrows_the_key_at_once(client: TestClient) -> None:
    user_id, key = _user_key(client, "kboss", "admin", ["admin"])
    h = {"Authorization": "", "X-API-Key": key}
    assert client.get("/api/v1/users", headers=h).status_code == 200
    assert client.patch(f"/api/v1/users/{user_id}", json={"role": "viewer"}).status_code == 200
    # The very next request: the key has the viewer's rights at most.
    assert client.get("/api/v1/users", headers=h).status_code == 403
    assert client.get("/api/v1/audit", headers=h).status_code == 403
    assert (
        client.post(
            "/api/v1/api-keys", json={"name": "x", "scopes": ["admin"]}, headers=h
        ).status_code
        == 403
    )
    assert ingest(client, key, {"panel": "p1", "values": {"voltage": 230}}).status_code == 403
    assert client.get("/api/v1/panels", headers=h).status_code == 200  # viewers read


def test_a_region_limit_on_the_creator_limits_the_key(client: TestClient) -> None:
    client.post("/api/v1/panels", json={"id": "n1", "name": "N1", "region": "North"})
    client.post("/api/v1/panels", json={"id": "s1", "name": "S1", "region": "South"})
    user_id, key = _user_key(client, "kop", "admin", ["read"])
    south_key = client.post(
        "/api/v1/api-keys", json={"name": "south", "scopes": ["read"], "region": "South"}
    ).json()
    h = {"Authorization": "", "X-API-Key": key}

    def visible(headers: dict[str, str]) -> set[str]:
        response = client.get("/api/v1/panels", headers=headers)
        assert response.status_code == 200, response.text
        return {p["id"] for p in response.json()["items"]}

    assert visible(h) == {"n1", "s1"}
    demoted = client.patch(
        f"/api/v1/users/{user_id}", json={"role": "operator", "regions": ["North"]}
    )
    assert demoted.status_code == 200
    assert visible(h) == {"n1"}
    assert client.get("/api/v1/panels/s1", headers=h).status_code == 404
    # root's South key is not touched by another user's change.
    assert visible({"Authorization": "", "X-API-Key": south_key["key"]}) == {"s1"}


def test_a_key_limited_to_a_region_its_creator_lost_sees_nothing(client: TestClient) -> None:
    client.post("/api/v1/panels", json={"id": "s1", "name": "S1", "region": "South"})
    password = "Key-owner-pass-42"
    made = client.post(
        "/api/v1/users", json={"username": "kreg", "password": password, "role": "admin"}
    ).json()
    token = client.post(
        "/api/v1/auth/login",
        json={"username": "kreg", "password": password},
        headers={"Authorization": ""},
    ).json()["access_token"]
    key = client.post(
        "/api/v1/api-keys",
        json={"name": "s", "scopes": ["read"], "region": "South"},
        headers={"Authorization": f"Bearer {token}"},
    ).json()["key"]
    h = {"Authorization": "", "X-API-Key": key}
    assert [p["id"] for p in client.get("/api/v1/panels", headers=h).json()["items"]] == ["s1"]
    client.patch(f"/api/v1/users/{made['id']}", json={"role": "viewer", "regions": ["North"]})
    assert client.get("/api/v1/panels", headers=h).json()["items"] == []


def test_a_key_made_with_a_key_keeps_the_users_bound(client: TestClient) -> None:
    user_id, admin_key = _user_key(client, "kchain", "admin", ["admin"])
    child = client.post(
        "/api/v1/api-keys",
        json={"name": "child", "scopes": ["admin"]},
        headers={"Authorization": "", "X-API-Key": admin_key},
    )
    assert child.status_code == 201
    h = {"Authorization": "", "X-API-Key": child.json()["key"]}
    client.patch(f"/api/v1/users/{user_id}", json={"disabled": True})
    assert client.get("/api/v1/panels", headers=h).status_code == 401


def test_cli_keys_keep_their_own_scopes(client: TestClient) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    _record, key = runtime.api_keys.create(name="gateway", scopes=["admin"], actor="cli")
    h = {"Authorization": "", "X-API-Key": key}
    assert client.get("/api/v1/users", headers=h).status_code == 200
    assert query(
        runtime.settings.effective_database_url, "SELECT created_by_user_id FROM api_keys"
    ) == [(None,)]


def test_an_empty_region_is_refused_not_unrestricted(client: TestClient) -> None:
    for region in ("", "   "):
        response = client.post(
            "/api/v1/api-keys", json={"name": "x", "scopes": ["read"], "region": region}
        )
        assert response.status_code == 422, region
        assert response.json()["error"]["code"] == "invalid_input"
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    try:
        runtime.api_keys.create(name="x", scopes=["read"], actor="cli", region="")
    except Exception as exc:  # the CLI path must refuse too
        assert "region" in str(exc)
    else:
        raise AssertionError("an empty region was accepted by the CLI path")
    assert client.get("/api/v1/api-keys").json() == []


def test_extreme_expiry_dates_are_422_not_500(client: TestClient) -> None:
    for stamp in ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59", "2200-01-01T00:00:00+14:00"):
        response = client.post(
            "/api/v1/api-keys", json={"name": "x", "scopes": ["read"], "expires_at": stamp}
        )
        assert response.status_code == 422, (stamp, response.text)
        assert "2200" in response.text
    for stamp in ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00+07:00"):
        response = client.post(
            "/api/v1/api-keys", json={"name": "x", "scopes": ["read"], "expires_at": stamp}
        )
        assert response.status_code == 422, (stamp, response.text)
        assert "future" in response.json()["error"]["message"]
    fine = client.post(
        "/api/v1/api-keys",
        json={"name": "x", "scopes": ["read"], "expires_at": "2199-12-31T00:00:00+07:00"},
    )
    assert fine.status_code == 201, fine.text
