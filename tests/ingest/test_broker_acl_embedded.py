"""Device credentials the embedded (amqtt) broker enforces, from the device registry.

Before issue #9 the embedded broker let any client write any panel: here a device publishes to
its own panel (stored), to another panel (dropped, never stored), with a wrong password
(refused), without credentials once devices exist (refused), and after being disabled (refused).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pelbiot.ingest.broker import free_port
from pelbiot.ingest.broker_auth import BrokerGate
from pelbiot.security.audit import AuditLog
from pelbiot.security.devices import Devices
from pelbiot.settings import Settings
from pelbiot.storage.db import make_engine
from pelbiot.storage.store import Store
from tests.support.device_clients import DeviceConnection, RawConnection, publish_as
from tests.support.embedded_broker import embedded_broker
from tests.support.readings import latest_by_panel
from tests.support.waiting import wait_for

ClientFactory = Callable[..., AbstractContextManager[TestClient]]
INGEST = ("pelbiot", "ingest-secret-0123456789")


def _gate(
    devices: Devices, prefix: str, anonymous: str = "until_devices", refresh_s: float = 2.0
) -> BrokerGate:
    return BrokerGate(
        lambda: (devices.credentials(), devices.count()),
        ingest_user=INGEST[0],
        ingest_password=INGEST[1],
        prefix=prefix,
        anonymous=anonymous,
        refresh_s=refresh_s,
    )


def _connected(client: TestClient) -> bool:
    return bool(client.get("/api/v1/ingest/status").json()["broker"]["connected"])


def _ingest_client(make_client: ClientFactory, url: str) -> AbstractContextManager[TestClient]:
    return make_client(
        mqtt_url=url, mqtt_protocol="3.1.1", mqtt_username=INGEST[0], mqtt_password=INGEST[1]
    )


def test_embedded_broker_enforces_device_credentials_and_panels(
    make_client: ClientFactory, devices: Devices, prefix: str
) -> None:
    _record, password = devices.create("meter-a", ["trafoA"])
    devices.create("meter-b", ["trafoB"])
    with (
        embedded_broker(_gate(devices, prefix)) as broker,
        _ingest_client(make_client, broker.url) as client,
    ):
        wait_for(lambda: _connected(client), 10, "ingest connected")

        # Another device's panel first, then its own: once the second is stored, the
        # first had its chance.
        assert publish_as(broker.port, f"{prefix}/trafoB/volt", "666", "meter-a", password) == 0
        assert publish_as(broker.port, f"{prefix}/trafoA/volt", "231.5", "meter-a", password) == 0
        got = wait_for(lambda: latest_by_panel(client).get("trafoA"), 10, "the own-panel reading")
        assert got["voltage"]["value"] == 231.5
        assert "trafoB" not in latest_by_panel(client)

        assert publish_as(broker.port, f"{prefix}/trafoA/volt", "1", "meter-a", "wrong") == 5
        assert publish_as(broker.port, f"{prefix}/trafoA/volt", "2") == 5  # anonymous
        assert publish_as(broker.port, f"{prefix}/trafoA/volt", "3", "pelbiot", "nope") == 5
        assert publish_as(broker.port, f"{prefix}/trafoA/volt", "4", "nobody", "x") == 5

        devices.set_disabled("meter-a", True)
        assert publish_as(broker.port, f"{prefix}/trafoA/volt", "5", "meter-a", password) == 5
        assert _connected(client)


def test_a_device_disabled_while_connected_loses_its_rights(
    make_client: ClientFactory, devices: Devices, prefix: str
) -> None:
    _record, password = devices.create("meter-a", ["trafoA"])
    _record, other = devices.create("meter-b", ["trafoB"])
    with (
        embedded_broker(_gate(devices, prefix, refresh_s=0.0)) as broker,
        _ingest_client(make_client, broker.url) as client,
    ):
        wait_for(lambda: _connected(client), 10, "ingest connected")
        connection = DeviceConnection(broker.port, "meter-a", password)
        try:
            assert connection.connected.wait(10)
            connection.publish(f"{prefix}/trafoA/volt", "230.0")
            wait_for(lambda: latest_by_panel(client).get("trafoA"), 10, "the first reading")
            devices.set_disabled("meter-a", True)
            connection.publish(f"{prefix}/trafoA/volt", "999.0")
            # In order after it on the broker: once meter-b's reading is stored, meter-a's had
            # its chance.
            assert publish_as(broker.port, f"{prefix}/trafoB/volt", "231.0", "meter-b", other) == 0
            wait_for(lambda: latest_by_panel(client).get("trafoB"), 10, "meter-b's reading")
            assert latest_by_panel(client)["trafoA"]["voltage"]["value"] == 230.0
        finally:
            connection.close()


@pytest.mark.parametrize("retain", [False, True])
def test_a_will_to_another_panel_is_refused_at_connect(
    make_client: ClientFactory, devices: Devices, prefix: str, retain: bool
) -> None:
    """amqtt sends a will without its topic check: a device's will could write any panel."""
    _record, password = devices.create("meter-a", ["trafoA"])
    _record, other = devices.create("meter-b", ["trafoB"])
    with (
        embedded_broker(_gate(devices, prefix)) as broker,
        _ingest_client(make_client, broker.url) as client,
    ):
        wait_for(lambda: _connected(client), 10, "ingest connected")
        will = (f"{prefix}/trafoB/volt", "222", retain)
        attacker = RawConnection(broker.port, "meter-a-1", "meter-a", password, will=will)
        attacker.drop()
        assert attacker.return_code == 5
        assert f"{prefix}/trafoB/volt" not in broker.amqtt.retained_messages
        # A will to its own panel is fine.
        own = RawConnection(
            broker.port,
            "meter-a-2",
            "meter-a",
            password,
            will=(f"{prefix}/trafoA/volt", "1", False),
        )
        own.drop()
        assert own.return_code == 0
        assert publish_as(broker.port, f"{prefix}/trafoB/volt", "231.0", "meter-b", other) == 0
        got = wait_for(lambda: latest_by_panel(client).get("trafoB"), 10, "meter-b's reading")
        assert got["voltage"]["value"] == 231.0


@pytest.mark.parametrize("change", ["disable", "delete"])
def test_a_will_is_checked_again_when_it_is_sent(
    make_client: ClientFactory, devices: Devices, prefix: str, change: str
) -> None:
    """A device disabled or deleted after it connected sends no will, retained or not."""
    _record, password = devices.create("meter-a", ["trafoA"])
    _record, other = devices.create("meter-b", ["trafoB"])
    with (
        embedded_broker(_gate(devices, prefix)) as broker,
        _ingest_client(make_client, broker.url) as client,
    ):
        wait_for(lambda: _connected(client), 10, "ingest connected")
        will = (f"{prefix}/trafoA/volt", "222", True)
        device = RawConnection(broker.port, "meter-a-1", "meter-a", password, will=will)
        assert device.return_code == 0
        if change == "disable":
            devices.set_disabled("meter-a", True)
        else:
            devices.delete("meter-a")
        device.drop()
        # Once amqtt has ended the session, the will (if any) is ahead of the next message.
        wait_for(
            lambda: not broker.amqtt.sessions["meter-a-1"][0].transitions.is_connected(),
            10,
            "the dropped session",
        )
        assert publish_as(broker.port, f"{prefix}/trafoB/volt", "231.0", "meter-b", other) == 0
        wait_for(lambda: latest_by_panel(client).get("trafoB"), 10, "meter-b's reading")
        assert "trafoA" not in latest_by_panel(client)
        assert f"{prefix}/trafoA/volt" not in broker.amqtt.retained_messages


def test_a_will_within_the_rules_is_still_sent(
    make_client: ClientFactory, devices: Devices, prefix: str
) -> None:
    _record, password = devices.create("meter-a", ["trafoA"])
    with (
        embedded_broker(_gate(devices, prefix)) as broker,
        _ingest_client(make_client, broker.url) as client,
    ):
        wait_for(lambda: _connected(client), 10, "ingest connected")
        will = (f"{prefix}/trafoA/volt", "222", False)
        device = RawConnection(broker.port, "meter-a-1", "meter-a", password, will=will)
        assert device.return_code == 0
        device.drop()
        got = wait_for(lambda: latest_by_panel(client).get("trafoA"), 10, "the will")
        assert got["voltage"]["value"] == 222


def test_the_amqtt_hooks_match_amqtt() -> None:
    # Fails loudly when an amqtt upgrade moves the places where the will is sent or a CONNECT
    # is read before its session is looked up.
    from pelbiot.ingest.broker import check_amqtt_hooks

    check_amqtt_hooks()


def test_anonymous_clients_only_before_the_first_device(
    make_client: ClientFactory, devices: Devices, prefix: str
) -> None:
    with (
        embedded_broker(_gate(devices, prefix)) as broker,
        _ingest_client(make_client, broker.url) as client,
    ):
        wait_for(lambda: _connected(client), 10, "ingest connected")
        # A fresh demo: meters without credentials work, as they did before devices.
        assert publish_as(broker.port, f"{prefix}/trafo1/volt", "230.1") == 0
        wait_for(lambda: latest_by_panel(client).get("trafo1"), 10, "the anonymous reading")
        # The first device closes the door, even once it is disabled again.
        devices.create("meter-a", ["trafoA"])
        devices.set_disabled("meter-a", True)
        assert publish_as(broker.port, f"{prefix}/trafo2/volt", "230.2") == 5


def test_never_anonymous(devices: Devices, prefix: str) -> None:
    with embedded_broker(_gate(devices, prefix, anonymous="never")) as broker:
        assert publish_as(broker.port, f"{prefix}/trafo1/volt", "230.1") == 5
        assert publish_as(broker.port, f"{prefix}/trafo1/volt", "230.1", *INGEST) == 0


def test_demo_simulator_has_its_own_device_and_strangers_are_refused(tmp_path: Path) -> None:
    """``pelbiot demo``: the simulator publishes as device ``demo-simulator`` (its panels only);
    a client without credentials is refused from the first moment."""
    http_port, broker_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PELBIOT_")}
    env["PELBIOT_DATA_DIR"] = str(tmp_path / "data")
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "pelbiot", "demo", "--port", str(http_port)),
                *("--panels", "2", "--broker-port", str(broker_port), "--interval", "0.5"),
            ],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'pelbiot.db'}")
    try:
        wait_for(lambda: "PELBIOT is running" in log.read_text(), 30, "the demo start")
        assert publish_as(broker_port, "panel/trafo1/volt", "1") == 5
        assert publish_as(broker_port, "panel/trafo1/volt", "1", "demo-simulator", "guess") == 5
        listed = Devices(engine, AuditLog(engine)).get("demo-simulator")
        assert listed["panels"] == ["trafo1", "trafo2"] and not listed["disabled"]
        # Its readings arrive: the simulator authenticated with its device credentials.
        store = Store(engine)
        wait_for(lambda: {"trafo1", "trafo2"} <= set(store.latest()), 15, "simulated readings")
    finally:
        engine.dispose()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


@contextmanager
def _pelbiot_demo(tmp_path: Path, **env: str) -> Iterator[int]:
    """``pelbiot demo`` (one simulated panel) as a subprocess; yields the embedded broker port."""
    http_port, broker_port = free_port(), free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PELBIOT_")}
    environ.update(PELBIOT_DATA_DIR=str(tmp_path / "data"), **env)
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "pelbiot", "demo", "--port", str(http_port)),
                *("--panels", "1", "--broker-port", str(broker_port), "--interval", "0.5"),
            ],
            cwd=tmp_path,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "PELBIOT is running" in log.read_text(), 30, "the demo start")
        yield broker_port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_a_refused_connect_with_pelbiot_client_id_cannot_cut_ingest(
    tmp_path: Path, database_url: str, devices: Devices, prefix: str
) -> None:
    """amqtt deletes (clean session) or takes over (persistent) the session of a client id
    before it checks the login: with PELBIOT's guessable default id (``pelbiot-<hostname>``) a
    refused CONNECT silently cut ingest. The embedded broker's ingest id is random per start."""
    _record, password = devices.create("meter-x", ["trafoX"])
    with _pelbiot_demo(
        tmp_path, PELBIOT_DATABASE_URL=database_url, PELBIOT_TOPIC_PREFIX=prefix
    ) as port:
        engine = make_engine(database_url)
        try:
            store = Store(engine)
            wait_for(lambda: "trafo1" in store.latest(), 15, "simulated readings")
            guess = f"pelbiot-{socket.gethostname()}"[:64]
            for clean in (True, False):
                attacker = RawConnection(port, guess, "pelbiot", "guess", clean=clean)
                attacker.drop()
                assert attacker.return_code == 5
                anonymous = RawConnection(port, guess, clean=clean)
                anonymous.drop()
                assert anonymous.return_code == 5
            # A device that uses the guessed id is just a device with an odd client id.
            as_device = RawConnection(port, guess, "meter-x", password)
            as_device.drop()
            assert as_device.return_code == 0
            assert publish_as(port, f"{prefix}/trafoX/volt", "231.7", "meter-x", password) == 0
            got = wait_for(lambda: store.latest().get("trafoX"), 15, "the device's reading")
            assert got is not None
        finally:
            engine.dispose()


def test_a_refused_connect_touches_no_session(
    make_client: ClientFactory, devices: Devices, prefix: str
) -> None:
    """amqtt looks the client id's session up (deleting or taking it over) before it asks for the
    login: the embedded broker refuses a bad login first, so even a known client id (here the
    ingest's and a device's) is safe from clients without credentials."""
    _record, password = devices.create("meter-a", ["trafoA"])
    with (
        embedded_broker(_gate(devices, prefix)) as broker,
        _ingest_client(make_client, broker.url) as client,
    ):
        wait_for(lambda: _connected(client), 10, "ingest connected")
        ingest_id = client.app_settings.mqtt_client_id  # type: ignore[attr-defined]
        device = DeviceConnection(broker.port, "meter-a", password, client_id="meter-a-1")
        try:
            assert device.connected.wait(10)
            for client_id in (ingest_id, "meter-a-1"):
                for clean in (True, False):
                    for creds in ((), ("meter-a", "wrong"), ("pelbiot", "wrong")):
                        attacker = RawConnection(broker.port, client_id, *creds, clean=clean)
                        attacker.drop()
                        assert attacker.return_code == 5
            device.publish(f"{prefix}/trafoA/volt", "231.5")
            got = wait_for(
                lambda: latest_by_panel(client).get("trafoA"), 10, "the device's reading"
            )
            assert got["voltage"]["value"] == 231.5
            status = client.get("/api/v1/ingest/status").json()["broker"]
            assert (status["connects"], status["disconnects"]) == (1, 0)
            assert not device.disconnected.is_set()
        finally:
            device.close()


def test_the_ingest_client_id_is_pelbiots_alone() -> None:
    from pelbiot.ingest.broker_auth import Identity, Role
    from pelbiot.security.broker_acl import DeviceCredential, mosquitto_hash

    cred = DeviceCredential("gw", mosquitto_hash("gw-password-123456"), ("trafo1",))
    gate = BrokerGate(
        lambda: ([cred], 1),
        ingest_user="pelbiot",
        ingest_password="pw",
        ingest_client_id="pelbiot-ingest-0a1b",
        prefix="panel",
    )

    async def check() -> None:
        assert await gate.authenticate("gw", "gw-password-123456", "pelbiot-ingest-0a1b") is None
        assert await gate.authenticate("gw", "gw-password-123456", "pelbiot-ingest-0a1bx") is None
        assert await gate.authenticate("gw", "gw-password-123456", "gw-1") == Identity(
            Role.DEVICE, "gw"
        )
        ingest = await gate.authenticate("pelbiot", "pw", "pelbiot-ingest-0a1b")
        assert ingest == Identity(Role.INGEST, "pelbiot")

    asyncio.run(check())


def test_gate_rules_at_topic_boundaries() -> None:
    from pelbiot.ingest.broker_auth import Identity, Role
    from pelbiot.security.broker_acl import DeviceCredential, mosquitto_hash

    cred = DeviceCredential("gw", mosquitto_hash("gw-password-123456"), ("trafo1",))
    gate = BrokerGate(
        lambda: ([cred], 1), ingest_user="pelbiot", ingest_password="pw", prefix="panel"
    )

    async def check() -> None:
        device = await gate.authenticate("gw", "gw-password-123456")
        assert device == Identity(Role.DEVICE, "gw")
        assert await gate.may_publish(device, "panel/trafo1/volt")
        assert await gate.may_publish(device, "panel/trafo1/a/b")
        assert not await gate.may_publish(device, "panel/trafo10/volt")  # not a prefix match
        assert not await gate.may_publish(device, "panel/trafo2/volt")
        assert not await gate.may_publish(device, "other/trafo1/volt")
        assert not await gate.may_subscribe(device)  # devices only publish
        assert not gate.may_receive(device)
        ingest = await gate.authenticate("pelbiot", "pw")
        assert ingest is not None and await gate.may_subscribe(ingest)
        assert await gate.authenticate(None, None) is None  # a device exists

    asyncio.run(check())


def test_device_passwords_are_checked_off_the_event_loop() -> None:
    # PBKDF2 takes about 1 ms: on the loop, a reconnect storm or a password guesser would stall
    # the API and the live feed that share it.
    from pelbiot.ingest.broker_auth import Identity, Role
    from pelbiot.security.broker_acl import (
        DeviceCredential,
        mosquitto_hash,
        verify_mosquitto_hash,
    )

    cred = DeviceCredential("gw", mosquitto_hash("gw-password-123456"), ("trafo1",))
    verified_on: list[int] = []

    def verify(password: str, stored: str) -> bool:
        verified_on.append(threading.get_ident())
        return verify_mosquitto_hash(password, stored)

    gate = BrokerGate(
        lambda: ([cred], 1),
        ingest_user="pelbiot",
        ingest_password="pw",
        prefix="panel",
        verify=verify,
    )

    async def check() -> int:
        assert await gate.authenticate("gw", "gw-password-123456") == Identity(Role.DEVICE, "gw")
        assert await gate.authenticate("gw", "wrong-password-123456") is None
        return threading.get_ident()

    loop_thread = asyncio.run(check())
    assert len(verified_on) == 2 and loop_thread not in verified_on


def _production(**overrides: Any) -> Settings:
    return Settings(
        env="production",
        secret_key="Zq8v-Lr2mXc4Tn7bWk1pYs5dHf9gJa3u",
        password_hash_time_cost=2,
        password_hash_memory_kib=19_456,
        **overrides,
    )


def test_production_refuses_anonymous_clients_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().embedded_broker_anonymous == "until_devices"  # a fresh demo just works
    assert _production().embedded_broker_anonymous == "never"
    explicit = _production(embedded_broker_anonymous="until_devices")
    assert explicit.embedded_broker_anonymous == "until_devices"  # an explicit setting wins
    monkeypatch.setenv("PELBIOT_EMBEDDED_BROKER_ANONYMOUS", "until_devices")
    assert _production().embedded_broker_anonymous == "until_devices"  # from the environment too


def test_production_default_reaches_the_gate(devices: Devices, prefix: str) -> None:
    # No device yet: in development anonymous clients may connect, in production not.
    async def anonymous(settings: Settings) -> Any:
        return await _gate(devices, prefix, settings.embedded_broker_anonymous).authenticate(
            None, None
        )

    assert asyncio.run(anonymous(Settings())) is not None
    assert asyncio.run(anonymous(_production())) is None
