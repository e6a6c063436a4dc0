"""Benchmark set-up: persistent MQTT sessions that queue a backlog, and fresh databases."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

PELBIOT_SESSION_EXPIRY = 3600


def prepare_session(
    port: int, client_id: str, topic: str, *, v5: bool, receive_maximum: int | None = None
) -> None:
    """Create a persistent session with a QoS 1 subscription, then leave it (messages queue).

    Give the consumer's receive-maximum: Mosquitto moves messages into the in-flight set of an
    offline session up to the window of its last connection, and resends all of those at once
    on reconnect, whatever receive-maximum the new connection asks for.
    """
    subscribed: list[bool] = []
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
    )
    client.on_subscribe = lambda *_a: subscribed.append(True)
    if v5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = PELBIOT_SESSION_EXPIRY
        if receive_maximum is not None:
            props.ReceiveMaximum = receive_maximum
        client.connect("127.0.0.1", port, clean_start=False, properties=props)
    else:
        client.connect("127.0.0.1", port)
    client.subscribe(topic, qos=1)
    deadline = time.monotonic() + 10
    while not subscribed and time.monotonic() < deadline:
        client.loop(0.05)
    client.disconnect()
    client.loop(0.05)
    if not subscribed:
        raise RuntimeError(f"could not subscribe {client_id}")


@contextmanager
def fresh_database(kind: str, workdir: Path, pg_url: str) -> Iterator[str]:
    """A fresh SQLite file in ``workdir`` or a fresh PostgreSQL database (dropped after)."""
    if kind == "sqlite":
        path = workdir / f"db-{uuid.uuid4().hex[:8]}.sqlite"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    name = f"pelbiot_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = pg_url.rpartition("/")[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(pg_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_available(url: str) -> str | None:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    except psycopg.OperationalError:
        return None
