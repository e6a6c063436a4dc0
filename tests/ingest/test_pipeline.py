"""End to end: a plain MQTT client publishes, the REST API reads it back."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.mosquitto import Mosquitto, mosquitto_pub
from tests.support.waiting import wait_for

ClientFactory = Callable[..., AbstractContextManager[TestClient]]

pytestmark = pytest.mark.usefixtures("mqtt_reader")  # each test with both MQTT readers


def test_mosquitto_pub_reading_is_served(
    make_client: ClientFactory, mosquitto: Mosquitto, prefix: str
) -> None:
    """How fast is for ``make bench``; here only that it arrives (a generous bound)."""
    with make_client(mqtt_url=mosquitto.url) as client:
        wait_for(lambda: client.get("/api/v1/ingest/status").json()["broker"]["connected"], 10)
        mosquitto_pub(mosquitto, f"{prefix}/trafo1/volt", "230.45")

        def latest() -> Any:
            values = client.get("/api/v1/panels/trafo1/latest")
            return values.status_code == 200 and values.json()["values"].get("voltage")

        voltage = wait_for(latest, 10, "the reading served by /latest")
        assert voltage["value"] == 230.45
        assert voltage["unit"] == "V"
        history = client.get("/api/v1/panels/trafo1/readings", params={"metric": "voltage"}).json()
        assert [p["value"] for p in history["series"][0]["points"]] == [230.45]


def test_telemetry_with_timestamp_is_stored_per_metric(
    make_client: ClientFactory, mosquitto: Mosquitto, prefix: str
) -> None:
    with make_client(mqtt_url=mosquitto.url) as client:
        wait_for(lambda: client.get("/api/v1/ingest/status").json()["broker"]["connected"], 10)
        mosquitto_pub(
            mosquitto,
            f"{prefix}/gardu-7/telemetry",
            '{"ts": 1795000000000, "voltage_l1": 231.2, "voltage_l2": 229.8, "current_l1": 15.1}',
        )
        latest = wait_for(
            lambda: client.get("/api/v1/panels/gardu-7/latest").json().get("values"), 10
        )
        assert latest["voltage_l1"]["value"] == 231.2
        assert latest["voltage_l2"]["value"] == 229.8
        assert latest["current_l1"]["value"] == 15.1
        assert latest["voltage_l1"]["ts"] == "2026-11-18T18:06:40.000+07:00"


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_both_protocol_versions_ingest(
    make_client: ClientFactory, mosquitto: Mosquitto, prefix: str, protocol: str
) -> None:
    with make_client(mqtt_url=mosquitto.url, mqtt_protocol=protocol) as client:
        wait_for(lambda: client.get("/api/v1/ingest/status").json()["broker"]["connected"], 10)
        mosquitto_pub(mosquitto, f"{prefix}/p1/ampere", "12.5")
        got = wait_for(lambda: client.get("/api/v1/latest").json(), 10)
        assert got[0]["values"]["current"]["value"] == 12.5
