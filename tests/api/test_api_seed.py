"""Seed-compatible /api/mqtt endpoints keep the original {"success": true, "data": ...} shapes."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from fastapi.testclient import TestClient

from tests.support.mosquitto import Mosquitto, mosquitto_pub
from tests.support.waiting import wait_for

ClientFactory = Callable[..., AbstractContextManager[TestClient]]


def test_seed_endpoints_over_a_real_broker(
    make_client: ClientFactory, mosquitto: Mosquitto, prefix: str
) -> None:
    with make_client(mqtt_url=mosquitto.url) as client:
        wait_for(lambda: client.get("/api/mqtt/status").json()["data"]["connected"], 10)
        status = client.get("/api/mqtt/status").json()
        assert status["success"] is True
        assert status["data"]["subscribedTopics"] == [f"{prefix}/#"]

        for value in ("230.1", "231.4"):
            mosquitto_pub(mosquitto, f"{prefix}/trafo1/volt", value)
        topic = f"{prefix}/trafo1/volt"
        wait_for(
            lambda: (
                len(client.get("/api/mqtt/history", params={"topic": topic}).json()["data"]) == 2
            ),
            3,
        )

        history = client.get("/api/mqtt/history", params={"topic": topic, "limit": 1}).json()
        assert history["success"] is True
        assert [h["value"] for h in history["data"]] == [231.4]  # newest first

        last = client.get(f"/api/mqtt/last-value/{topic}").json()
        assert last == {
            "success": True,
            "data": {"topic": topic, "value": 231.4, "timestamp": last["data"]["timestamp"]},
        }
        values = client.get("/api/mqtt/last-values").json()["data"]
        assert values[topic]["value"] == 231.4
        assert topic in client.get("/api/mqtt/topics").json()["data"]

        published = client.post(
            "/api/mqtt/publish", json={"topic": f"{prefix}/trafo2/ampere", "message": "17.5"}
        )
        assert published.json() == {
            "success": True,
            "data": {"topic": f"{prefix}/trafo2/ampere", "message": "17.5"},
        }
        latest = wait_for(
            lambda: client.get("/api/v1/panels/trafo2/latest").json().get("values"), 3
        )
        assert latest["current"]["value"] == 17.5


def test_seed_errors_keep_the_seed_shape(client: TestClient) -> None:
    missing = client.get("/api/mqtt/last-value/panel/none/volt")
    assert missing.status_code == 404
    assert missing.json()["success"] is False
    no_broker = client.post("/api/mqtt/publish", json={"topic": "panel/x/volt", "message": 1})
    assert no_broker.status_code == 503
    wildcard = client.post("/api/mqtt/publish", json={"topic": "panel/#", "message": 1})
    assert wildcard.status_code == 400
    assert client.get("/api/mqtt/history", params={"topic": "nope"}).status_code == 400
