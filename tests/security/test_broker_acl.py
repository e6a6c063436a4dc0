"""Device credentials a real Mosquitto enforces, from the files ``pelbiot device`` writes.

Before issue #9 any MQTT client could write any panel: here a device publishes to its own
panel (stored), to another panel (dropped by the broker, never stored), with a wrong password
(refused), and after ``pelbiot device disable`` plus a reload (refused).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient

from pelbiot.cli.devices import device
from pelbiot.security.broker_acl import (
    DeviceCredential,
    mosquitto_hash,
    render_acl,
    verify_mosquitto_hash,
)
from tests.support.device_clients import DeviceConnection, RawConnection, publish_as
from tests.support.mosquitto import Mosquitto
from tests.support.readings import latest_by_panel
from tests.support.waiting import wait_for

ClientFactory = Callable[..., AbstractContextManager[TestClient]]
INGEST_PASSWORD = "ingest-secret-0123456789"
# The authentication lines of the mosquitto.conf in docs/deployment.md (the test below checks
# they are there): every broker in this module runs with them.
DOCUMENTED_SETTINGS = ("allow_anonymous false", "use_username_as_clientid true")
DEPLOYMENT_DOC = Path(__file__).parents[2] / "docs" / "deployment.md"


def test_hash_format_is_the_one_mosquitto_passwd_writes(tmp_path: Path) -> None:
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed")
    passwd = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwd), "dev", "pässword:with$odd#chars"],
        check=True,
        timeout=10,
    )
    theirs = passwd.read_text().strip().split(":", 1)[1]
    assert verify_mosquitto_hash("pässword:with$odd#chars", theirs)
    ours = mosquitto_hash("pässword:with$odd#chars", iterations=101, salt=b"0123456789ab")
    assert ours.split("$")[:3] == theirs.split("$")[:3] == ["", "7", "101"]
    assert len(ours) == len(theirs)
    assert not verify_mosquitto_hash("x", "$6$abc$def")
    assert not verify_mosquitto_hash("x", "$7$0$AAAA$AAAA")
    assert not verify_mosquitto_hash("x", "$7$10$not base64$AAAA")


def test_acl_text() -> None:
    devices = [DeviceCredential("gw-1", "$7$...", ("trafo1", "trafo2"))]
    acl = render_acl(devices, prefix="panel", ingest_user="pelbiot", shared_group="workers")
    body = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert body == [
        "user pelbiot",
        "topic readwrite panel/#",
        "topic read $share/workers/panel/#",
        "user gw-1",
        "topic write panel/trafo1/#",
        "topic write panel/trafo2/#",
    ]


# -- against a real Mosquitto ---------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "broker" / "passwd", tmp_path / "broker" / "acl"


@pytest.fixture
def secured_mosquitto(tmp_path: Path, files: tuple[Path, Path]) -> Iterator[Mosquitto]:
    """Not started: the files must exist first (``pelbiot device create`` writes them)."""
    broker = Mosquitto(
        tmp_path / "mosquitto",
        extra_settings=[
            *DOCUMENTED_SETTINGS,
            f"password_file {files[0]}",
            f"acl_file {files[1]}",
        ],
    )
    yield broker
    broker.stop()


@pytest.fixture
def cli(
    database_url: str, tmp_path: Path, prefix: str, files: tuple[Path, Path]
) -> Callable[..., Result]:
    runner = CliRunner()

    def run(*args: str, port: int) -> Result:
        cwd = os.getcwd()
        os.chdir(tmp_path)  # no stray .env
        try:
            result = runner.invoke(
                device,
                list(args),
                env={
                    "PELBIOT_DATABASE_URL": database_url,
                    "PELBIOT_TOPIC_PREFIX": prefix,
                    "PELBIOT_MQTT_URL": f"mqtt://pelbiot:{INGEST_PASSWORD}@127.0.0.1:{port}",
                    "PELBIOT_MOSQUITTO_PASSWORD_FILE": str(files[0]),
                    "PELBIOT_MOSQUITTO_ACL_FILE": str(files[1]),
                },
            )
        finally:
            os.chdir(cwd)
        assert result.exit_code == 0, result.output
        return result

    return run


def test_mosquitto_enforces_device_credentials_and_panels(
    make_client: ClientFactory,
    secured_mosquitto: Mosquitto,
    cli: Callable[..., Result],
    prefix: str,
) -> None:
    port = secured_mosquitto.port
    password = cli("create", "meter-a", "--panel", "trafoA", port=port).stdout.strip()
    cli("create", "meter-b", "--panel", "trafoB", port=port)
    secured_mosquitto.start()
    url = f"mqtt://pelbiot:{INGEST_PASSWORD}@127.0.0.1:{port}"
    with make_client(mqtt_url=url) as client:
        wait_for(lambda: client.get("/api/v1/ingest/status").json()["broker"]["connected"], 10)

        # Another device's panel first, then its own, on one connection each in that order:
        # once the second is stored the first had its chance.
        assert publish_as(port, f"{prefix}/trafoB/volt", "666", "meter-a", password) == 0
        assert publish_as(port, f"{prefix}/trafoA/volt", "231.5", "meter-a", password) == 0
        got = wait_for(lambda: latest_by_panel(client).get("trafoA"), 10, "the own-panel reading")
        assert got["voltage"]["value"] == 231.5
        assert "trafoB" not in latest_by_panel(client)

        assert publish_as(port, f"{prefix}/trafoA/volt", "1", "meter-a", "wrong-password") == 5
        assert publish_as(port, f"{prefix}/trafoA/volt", "2") == 5  # anonymous
        assert publish_as(port, f"{prefix}/trafoA/volt", "3", "pelbiot", "nope") == 5

        connection = DeviceConnection(port, "meter-a", password)
        try:
            assert connection.connected.wait(10)
            cli("disable", "meter-a", port=port)
            secured_mosquitto.reload()
            assert publish_as(port, f"{prefix}/trafoA/volt", "4", "meter-a", password) == 5
            # Mosquitto also drops the open connection of a device it no longer knows.
            assert connection.disconnected.wait(10)
        finally:
            connection.close()
        # PELBIOT's own connection survived the reload and still ingests.
        assert wait_for(
            lambda: client.get("/api/v1/ingest/status").json()["broker"]["connected"], 10
        )


def test_ingest_user_with_a_shared_subscription(
    make_client: ClientFactory,
    secured_mosquitto: Mosquitto,
    cli: Callable[..., Result],
    prefix: str,
) -> None:
    """The ACL lets PELBIOT's ingest user subscribe as ``$share/<group>/<prefix>/#``."""
    port = secured_mosquitto.port
    password = cli("create", "meter-a", "--panel", "trafoA", port=port).stdout.strip()
    secured_mosquitto.start()
    url = f"mqtt://pelbiot:{INGEST_PASSWORD}@127.0.0.1:{port}"
    with make_client(mqtt_url=url, mqtt_shared_group="workers") as client:
        wait_for(lambda: client.get("/api/v1/ingest/status").json()["broker"]["connected"], 10)
        assert publish_as(port, f"{prefix}/trafoA/volt", "229.5", "meter-a", password) == 0
        got = wait_for(
            lambda: latest_by_panel(client).get("trafoA"), 10, "the shared-group reading"
        )
        assert got["voltage"]["value"] == 229.5


def test_a_device_with_pelbiots_client_id_cannot_kick_ingest(
    make_client: ClientFactory,
    secured_mosquitto: Mosquitto,
    cli: Callable[..., Result],
    prefix: str,
) -> None:
    """Without ``use_username_as_clientid`` Mosquitto closes PELBIOT's connection when a device
    (valid credentials) connects with PELBIOT's client id; with a clean session it even drops
    PELBIOT's queued messages. With it, a client's id is its username."""
    port = secured_mosquitto.port
    password = cli("create", "meter-a", "--panel", "trafoA", port=port).stdout.strip()
    secured_mosquitto.start()
    url = f"mqtt://pelbiot:{INGEST_PASSWORD}@127.0.0.1:{port}"
    with make_client(mqtt_url=url) as client:
        wait_for(lambda: client.get("/api/v1/ingest/status").json()["broker"]["connected"], 10)
        ingest_id = client.app_settings.mqtt_client_id  # type: ignore[attr-defined]
        for clean in (True, False):
            RawConnection(port, ingest_id, "meter-a", password, clean=clean).drop()
        device = DeviceConnection(port, "meter-a", password, client_id=ingest_id)
        try:
            assert device.connected.wait(10)
            device.publish(f"{prefix}/trafoA/volt", "231.5")
            got = wait_for(
                lambda: latest_by_panel(client).get("trafoA"), 10, "the device's reading"
            )
            assert got["voltage"]["value"] == 231.5
            broker = client.get("/api/v1/ingest/status").json()["broker"]
            assert (broker["connects"], broker["disconnects"]) == (1, 0)
            assert "already connected, closing old connection" not in secured_mosquitto.log_text()
        finally:
            device.close()


def test_mosquitto_never_sends_a_device_will_outside_its_panels(
    make_client: ClientFactory,
    secured_mosquitto: Mosquitto,
    cli: Callable[..., Result],
    prefix: str,
) -> None:
    """The generated ACL covers wills too: Mosquitto accepts the CONNECT (2.0.11 does) but the
    will to another device's panel never reaches PELBIOT; a will to its own panel does."""
    port = secured_mosquitto.port
    password = cli("create", "meter-a", "--panel", "trafoA", port=port).stdout.strip()
    secured_mosquitto.start()
    url = f"mqtt://pelbiot:{INGEST_PASSWORD}@127.0.0.1:{port}"
    with make_client(mqtt_url=url) as client:
        wait_for(lambda: client.get("/api/v1/ingest/status").json()["broker"]["connected"], 10)
        for n, topic in enumerate((f"{prefix}/trafoB/volt", f"{prefix}/trafoA/volt")):
            will = (topic, "222", n == 0)
            RawConnection(port, "meter-a-1", "meter-a", password, will=will).drop()
            # Mosquitto sends a will while it handles the dropped socket, before the log line
            # (the client id is the username: use_username_as_clientid).
            wait_for(
                lambda n=n: secured_mosquitto.log_text().count("Client meter-a closed its") > n,
                10,
                "the dropped connection",
            )
        got = wait_for(lambda: latest_by_panel(client).get("trafoA"), 10, "the allowed will")
        assert got["voltage"]["value"] == 222
        assert "trafoB" not in latest_by_panel(client)


def test_the_documented_mosquitto_conf_has_the_tested_settings() -> None:
    text = DEPLOYMENT_DOC.read_text()
    conf = text.split("A complete `/etc/mosquitto/conf.d/pelbiot.conf`:", 1)[1]
    lines = [line.strip() for line in conf.split("```")[1].splitlines()]
    assert "allow_anonymous false" in lines
    # A listener setting in Mosquitto: it must follow every listener line.
    listeners = [i for i, line in enumerate(lines) if line.startswith("listener ")]
    assert listeners
    for start, end in zip(listeners, [*listeners[1:], len(lines)], strict=True):
        assert "use_username_as_clientid true" in lines[start:end], lines[start]


def test_device_panels_follow_the_decoders_panel_rule() -> None:
    # One rule: a panel a device may be given is one the decoder accepts in a topic.
    from pelbiot.decode import payloads
    from pelbiot.security import broker_acl

    assert broker_acl.PANEL_RE is payloads.PANEL_RE
