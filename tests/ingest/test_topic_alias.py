"""MQTT 5 topic aliases: a device may use them towards the broker; the broker resolves them and
delivers full topic names to PELBIOT, which asks for none of its own (docs/architecture.md)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support.mosquitto import Mosquitto
from tests.support.waiting import wait_for


def _aliased(alias: int) -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.TopicAlias = alias
    return props


@pytest.mark.usefixtures("mqtt_reader")
def test_a_device_publishing_with_a_topic_alias_is_stored(
    make_client: Callable[..., AbstractContextManager[TestClient]],
    mosquitto: Mosquitto,
    prefix: str,
) -> None:
    with make_client(mqtt_url=mosquitto.url) as client:
        wait_for(lambda: client.get("/api/v1/ingest/status").json()["broker"]["connected"], 10)
        device = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"dev-{prefix}",
            protocol=mqtt.MQTTv5,
        )
        connected = threading.Event()

        def on_connect(*_args: Any) -> None:
            connected.set()

        device.on_connect = on_connect
        device.connect("127.0.0.1", mosquitto.port)
        device.loop_start()
        try:
            assert connected.wait(10)
            ts = (int(time.time()) - 60) * 1000
            first = json.dumps({"value": 231.0, "ts": ts})
            # The first use binds alias 1 to the topic; the second sends the alias alone.
            device.publish(f"{prefix}/ta1/volt", first, qos=1, properties=_aliased(1))
            second = json.dumps({"value": 232.0, "ts": ts + 1000})
            device.publish("", second, qos=1, properties=_aliased(1)).wait_for_publish(10)
        finally:
            device.disconnect()
            device.loop_stop()

        def values() -> list[float] | None:
            got = client.get("/api/v1/panels/ta1/readings", params={"metric": "voltage"})
            if got.status_code != 200 or not got.json()["series"]:
                return None
            points = [p["value"] for p in got.json()["series"][0]["points"]]
            return points if len(points) == 2 else None

        assert wait_for(values, 5, "both aliased readings stored") == [231.0, 232.0]
        rejected = client.get("/api/v1/ingest/rejected").json()
        assert rejected == [], rejected
