"""App-level contract: health, docs, the error shape, settings that refuse to start."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pelbiot.errors import ConfigError
from pelbiot.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_health_reports_database_broker_uptime_and_version(client: TestClient) -> None:
    for path in ("/health", "/api/health"):
        body = client.get(path).json()
        assert body["status"] == "ok"
        assert body["version"] == "0.1.0"
        assert body["checks"]["database"]["ok"] is True
        assert "broker" in body["checks"]
        assert body["uptime_s"] >= 0


def test_openapi_and_docs_are_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in (
        "/api/v1/panels",
        "/api/v1/panels/{panel_id}",
        "/api/v1/panels/{panel_id}/latest",
        "/api/v1/latest",
        "/api/v1/panels/{panel_id}/readings",
        "/api/v1/ingest/status",
        "/api/v1/ingest/rejected",
        "/api/mqtt/status",
        "/api/mqtt/publish",
    ):
        assert path in spec["paths"], path
    docs = client.get("/docs")
    assert docs.status_code == 200
    # Swagger UI comes from our own static files (npm), never a CDN: /docs works offline.
    assert "/swagger/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()
    assert client.get("/swagger/swagger-ui-bundle.js").status_code == 200


def test_every_error_has_the_same_shape(client: TestClient) -> None:
    for response in (
        client.get("/api/v1/panels/none"),
        client.get("/api/v1/nowhere"),
        client.post("/api/v1/panels", json={"id": ""}),
        client.delete("/api/v1/latest"),
    ):
        body = response.json()
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message", "details"}
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"timezone": "Mars/Olympus"}, "PELBIOT_TIMEZONE"),
        ({"http_port": 70000}, "PELBIOT_HTTP_PORT"),
        ({"mqtt_url": "http://broker"}, "PELBIOT_MQTT_URL"),
        ({"database_url": "mysql://x"}, "PELBIOT_DATABASE_URL"),
        ({"env": "production"}, "PELBIOT_SECRET_KEY"),
        ({"mqtt_qos": 2}, "PELBIOT_MQTT_QOS"),
    ],
)
def test_a_bad_setting_is_named(env: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(**env)
    assert named in str(info.value) or named.removeprefix("PELBIOT_").lower() in str(info.value)


def test_bad_environment_stops_the_start_with_the_setting_name(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pelbiot", "migrate"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PELBIOT_TIMEZONE": "Nowhere/Land"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "PELBIOT_TIMEZONE" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_command_creates_the_schema(tmp_path: Path) -> None:
    db = tmp_path / "x" / "p.db"
    result = subprocess.run(
        [sys.executable, "-m", "pelbiot", "migrate"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PELBIOT_DATABASE_URL": f"sqlite:///{db}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    assert db.exists()


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"`(PELBIOT_[A-Z0-9_]+)`", doc))
    expected = {f"PELBIOT_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set(), "settings missing from docs/configuration.md"
    assert documented - expected == set(), "docs/configuration.md names unknown settings"
