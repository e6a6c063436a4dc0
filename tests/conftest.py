"""Fixtures: real Mosquitto, SQLite or PostgreSQL per test, the app in-process or as a process."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pelbiot.app import create_app
from pelbiot.security.devices import Devices
from pelbiot.security.permissions import Role
from pelbiot.settings import Settings, load_settings
from tests.support.accounts import login_as
from tests.support.databases import backend, fresh_database
from tests.support.device_clients import device_registry
from tests.support.mosquitto import Mosquitto
from tests.support.processes import ServerProcess


def pytest_report_header() -> str:
    return f"pelbiot database backend: {backend()}"


@pytest.fixture(autouse=True)
def fast_password_hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at a test cost, through the settings every process reads (in-process apps, the
    CLI and server processes alike): the product's cost (~0.3 s per hash on a busy CI machine)
    would make the suite take minutes. Tests marked ``real_password_hashing`` keep it."""
    if request.node.get_closest_marker("real_password_hashing"):
        return
    monkeypatch.setenv("PELBIOT_PASSWORD_HASH_TIME_COST", "1")
    monkeypatch.setenv("PELBIOT_PASSWORD_HASH_MEMORY_KIB", "1024")


@pytest.fixture(params=["bulk", "paho"])
def mqtt_reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once per MQTT reader (PELBIOT_MQTT_CLIENT), for in-process apps and server
    processes alike: the bulk reader and paho's public manual-ack API must both lose nothing."""
    reader: str = request.param
    monkeypatch.setenv("PELBIOT_MQTT_CLIENT", reader)
    return reader


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One private broker for the session; tests keep apart by a unique topic prefix."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of this test's own, for tests that stop and start it."""
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database(tmp_path) as url:
        yield url


@pytest.fixture
def devices(database_url: str) -> Iterator[Devices]:
    """The device registry on this test's database (migrated)."""
    with device_registry(database_url) as registry:
        yield registry


@pytest.fixture
def prefix() -> str:
    """A unique topic prefix so tests sharing a broker never see each other's messages."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_settings(database_url: str, prefix: str, tmp_path: Path) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "topic_prefix": prefix,
            "mqtt_client_id": f"pelbiot-test-{uuid.uuid4().hex[:8]}",
            "data_dir": tmp_path / "data",
            "mqtt_reconnect_min": 0.2,
            "mqtt_reconnect_max": 1.0,
        }
        values.update(overrides)
        return load_settings(**values)

    return factory


@pytest.fixture
def make_client(
    make_settings: Callable[..., Settings],
) -> Callable[..., AbstractContextManager[TestClient]]:
    """``with make_client(mqtt_url=...) as client:`` runs the whole app in-process."""

    @contextmanager
    def factory(*, login: bool = True, **overrides: Any) -> Iterator[TestClient]:
        settings = make_settings(**overrides)
        with TestClient(create_app(settings)) as client:
            client.app_settings = settings  # type: ignore[attr-defined]
            if login:
                login_as(client, "root", Role.SUPER_ADMIN)
            yield client

    return factory


@pytest.fixture
def client(make_client: Callable[..., AbstractContextManager[TestClient]]) -> Iterator[TestClient]:
    """The app with no broker: REST API and HTTP-side behaviour only."""
    with make_client() as c:
        yield c


@pytest.fixture
def make_server(
    tmp_path: Path, database_url: str, prefix: str
) -> Iterator[Callable[..., ServerProcess]]:
    servers: list[ServerProcess] = []

    def factory(**env: str) -> ServerProcess:
        values = {
            "PELBIOT_DATABASE_URL": database_url,
            "PELBIOT_TOPIC_PREFIX": prefix,
            "PELBIOT_MQTT_CLIENT_ID": f"pelbiot-proc-{prefix}",
            "PELBIOT_MQTT_RECONNECT_MIN": "0.2",
            "PELBIOT_MQTT_RECONNECT_MAX": "1.0",
        }
        values.update(env)
        server = ServerProcess(tmp_path / "server", values)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()
