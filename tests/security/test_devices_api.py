"""``/api/v1/devices``: admins manage MQTT device credentials over HTTP (in-process app)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from fastapi.testclient import TestClient

from pelbiot.security.broker_acl import verify_mosquitto_hash
from pelbiot.security.devices import Devices
from pelbiot.security.permissions import Role
from tests.support.accounts import login_as

ClientFactory = Callable[..., AbstractContextManager[TestClient]]


def _hashes(client: TestClient) -> dict[str, str]:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    registry = Devices(runtime.engine, runtime.audit)
    return {c.name: c.password_hash for c in registry.credentials()}


def test_admin_creates_lists_changes_and_deletes_devices(client: TestClient) -> None:
    created = client.post("/api/v1/devices", json={"name": "gw-1", "panels": ["trafo2", "trafo1"]})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["panels"] == ["trafo1", "trafo2"] and body["disabled"] is False
    assert body["mosquitto_files"] == "not_configured"
    password = body["password"]
    assert verify_mosquitto_hash(password, _hashes(client)["gw-1"])

    listed = client.get("/api/v1/devices").json()
    assert [d["name"] for d in listed] == ["gw-1"] and password not in str(listed)
    assert "password" not in listed[0]

    patched = client.patch("/api/v1/devices/gw-1", json={"panels": ["trafo3"], "disabled": True})
    assert patched.status_code == 200, patched.text
    assert patched.json()["panels"] == ["trafo3"] and patched.json()["disabled"] is True
    assert patched.json()["disabled_at"] is not None
    assert "gw-1" not in _hashes(client)

    client.patch("/api/v1/devices/gw-1", json={"disabled": False})
    chosen = client.post("/api/v1/devices/gw-1/password", json={"password": "x" * 20})
    assert chosen.status_code == 200 and chosen.json()["password"] == "x" * 20
    assert verify_mosquitto_hash("x" * 20, _hashes(client)["gw-1"])

    assert client.delete("/api/v1/devices/gw-1").status_code == 204
    assert client.get("/api/v1/devices").json() == []
    actions = [e["action"] for e in client.get("/api/v1/audit").json()]
    assert {"device.create", "device.panels", "device.disable", "device.delete"} <= set(actions)


def test_bad_input_gets_clear_4xx(client: TestClient) -> None:
    client.post("/api/v1/devices", json={"name": "gw-1", "panels": ["trafo1"]})
    cases = [
        ({"name": "a b", "panels": ["trafo1"]}, 422),
        ({"name": "gw-2", "panels": []}, 422),
        ({"name": "gw-2", "panels": ["a/#"]}, 422),
        ({"name": "gw-2", "panels": ["trafo1"], "password": "short"}, 422),
        ({"name": "gw-2", "panels": ["trafo1"], "extra": 1}, 422),
        ({"name": "GW-1", "panels": ["trafo1"]}, 409),
    ]
    for payload, code in cases:
        answer = client.post("/api/v1/devices", json=payload)
        assert answer.status_code == code, (payload, answer.text)
        assert set(answer.json()["error"]) == {"code", "message", "details"}
    missing = client.patch("/api/v1/devices/nobody", json={"disabled": True})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert client.post("/api/v1/devices/nobody/password", json={}).status_code == 404
    assert client.delete("/api/v1/devices/nobody").status_code == 404


def test_only_admins(client: TestClient) -> None:
    for role in (Role.OPERATOR, Role.VIEWER):
        login_as(client, f"someone-{role.value}", role)
        assert client.get("/api/v1/devices").status_code == 403
        answer = client.post("/api/v1/devices", json={"name": "gw", "panels": ["trafo1"]})
        assert answer.status_code == 403
    login_as(client, "an-admin", Role.ADMIN)
    assert client.post("/api/v1/devices", json={"name": "gw", "panels": ["t1"]}).status_code == 201


def test_changes_rewrite_the_mosquitto_files(make_client: ClientFactory, tmp_path: Path) -> None:
    pw_file, acl_file = tmp_path / "m" / "passwd", tmp_path / "m" / "acl"
    with make_client(
        mosquitto_password_file=pw_file,
        mosquitto_acl_file=acl_file,
        mqtt_username="pelbiot",
        mqtt_password="ingest-secret-0123456789",
    ) as client:
        created = client.post("/api/v1/devices", json={"name": "gw-1", "panels": ["trafo1"]})
        assert created.json()["mosquitto_files"] == "written"
        assert "gw-1:$7$" in pw_file.read_text() and "user gw-1" in acl_file.read_text()
        client.patch("/api/v1/devices/gw-1", json={"disabled": True})
        assert "gw-1" not in pw_file.read_text() and "gw-1" not in acl_file.read_text()


def test_reserved_names_are_refused(make_client: ClientFactory) -> None:
    # Created, such a device made every later Mosquitto export fail ("mosquitto_files": "failed").
    with make_client(mqtt_username="bus") as client:
        for name in ["BUS", "pelbiot", "demo-simulator"]:
            answer = client.post("/api/v1/devices", json={"name": name, "panels": ["trafo1"]})
            assert answer.status_code == 409, answer.text
            assert answer.json()["error"]["code"] == "conflict"
            assert "reserved" in answer.json()["error"]["message"]
        assert client.get("/api/v1/devices").json() == []
