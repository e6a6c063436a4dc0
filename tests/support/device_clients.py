"""Devices as a broker sees them (``mosquitto_pub`` with a username and password), and the
registry they are kept in."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pelbiot.security.audit import AuditLog
from pelbiot.security.devices import Devices
from pelbiot.storage.db import make_engine
from pelbiot.storage.migrations import upgrade
from tests.support.mosquitto import pub_command


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
        pub_command(port, topic, message, "-V", "mqttv311", *creds),
        capture_output=True,
        timeout=10,
        check=False,
    )
    return done.returncode


class DeviceConnection:
    """A device that stays connected (paho, MQTT 3.1.1): ``connected``/``disconnected`` events."""

    def __init__(
        self, port: int, user: str, password: str, *, client_id: str | None = None
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"device-{user}",
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


def _mqtt_string(value: str) -> bytes:
    data = value.encode()
    return struct.pack("!H", len(data)) + data


class RawConnection:
    """One MQTT 3.1.1 CONNECT on a plain socket (any client id, clean or not, an optional will);
    ``return_code`` is the CONNACK's (0 accepted, 5 not authorised). ``drop()`` closes the
    socket without a DISCONNECT, so the broker sends the will."""

    def __init__(
        self,
        port: int,
        client_id: str,
        user: str | None = None,
        password: str | None = None,
        *,
        will: tuple[str, str, bool] | None = None,
        clean: bool = True,
    ) -> None:
        flags = 0x02 if clean else 0
        payload = _mqtt_string(client_id)
        if will is not None:
            topic, message, retain = will
            flags |= 0x04 | (1 << 3) | (0x20 if retain else 0)  # will, QoS 1, retain
            payload += _mqtt_string(topic) + _mqtt_string(message)
        if user is not None:
            flags |= 0x80
            payload += _mqtt_string(user)
        if password is not None:
            flags |= 0x40
            payload += _mqtt_string(password)
        body = _mqtt_string("MQTT") + bytes([4, flags]) + struct.pack("!H", 60) + payload
        length, remaining = b"", len(body)
        while True:
            byte, remaining = remaining % 128, remaining // 128
            length += bytes([byte | (0x80 if remaining else 0)])
            if not remaining:
                break
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._sock.sendall(b"\x10" + length + body)
        connack = b""
        while len(connack) < 4:
            chunk = self._sock.recv(4 - len(connack))
            if not chunk:
                raise ConnectionError(f"closed after {connack!r}, before a CONNACK")
            connack += chunk
        self.return_code = connack[3]

    def drop(self) -> None:
        self._sock.close()
