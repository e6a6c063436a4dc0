"""Devices as a broker sees them (``mosquitto_pub`` with a username and password), and the
registry they are kept in."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pelbiot.security.audit import AuditLog
from pelbiot.security.devices import Devices
from pelbiot.storage.db import make_engine
from pelbiot.storage.migrations import upgrade


@contextmanager
def device_registry(database_url: str, *, reserved: tuple[str, ...] = ()) -> Iterator[Devices]:
    """``Devices`` on a migrated database; the engine is disposed afterwards."""
    engine = make_engine(database_url)
    upgrade(engine)
    try:
        yield Devices(engine, AuditLog(engine), reserved=reserved)
    finally:
        engine.dispose()


def publish_as(
    port: int, topic: str, message: str, user: str | None = None, password: str | None = None
) -> int:
    """Publish one QoS 1 message over MQTT 3.1.1 (which amqtt speaks too); return
    mosquitto_pub's exit code: 0 sent and acknowledged, 5 refused (bad credentials or not
    authorised). A broker drops a publish its ACL forbids but still acknowledges it."""
    creds = ["-u", user, "-P", password or ""] if user else []
    done = subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-V",
            "mqttv311",
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            message,
            *creds,
        ],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return done.returncode


class DeviceConnection:
    """A device that stays connected (paho, MQTT 3.1.1): ``connected``/``disconnected`` events."""

    def __init__(self, port: int, user: str, password: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"device-{user}",
            protocol=mqtt.MQTTv311,
        )
        self._client.username_pw_set(user, password)
        self._client.on_connect = lambda *_a: self.connected.set()
        self._client.on_disconnect = lambda *_a: self.disconnected.set()
        self._client.reconnect_delay_set(30, 60)  # no quick reconnect to blur the test
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def publish(self, topic: str, payload: str) -> None:
        """QoS 1, returns once the broker acknowledged it (which says nothing about delivery)."""
        self._client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
