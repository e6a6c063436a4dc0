"""The device registry (SQLite and PostgreSQL) and ``pelbiot device ...`` from the shell."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from pelbiot.cli.devices import device
from pelbiot.errors import ConflictError, InvalidInputError, NotFoundError
from pelbiot.security.broker_acl import verify_mosquitto_hash
from pelbiot.security.broker_files import reserved_device_names
from pelbiot.security.devices import Devices
from pelbiot.settings import Settings
from pelbiot.sim.demo_site import DEMO_DEVICE
from pelbiot.storage import schema
from pelbiot.storage.db import make_engine
from tests.support.databases import backend, query
from tests.support.device_clients import device_registry
from tests.support.waiting import wait_for


def test_create_stores_a_mosquitto_hash_and_shows_the_password_once(devices: Devices) -> None:
    record, password = devices.create("meter-01", ["trafo2", "trafo1", "trafo1"])
    assert record["panels"] == ["trafo1", "trafo2"] and record["disabled"] is False
    assert len(password) >= 32
    assert "password" not in str(record) and password not in str(devices.all())
    (cred,) = devices.credentials()
    assert cred.name == "meter-01" and cred.panels == ("trafo1", "trafo2")
    assert cred.password_hash.startswith("$7$")
    assert verify_mosquitto_hash(password, cred.password_hash)
    assert not verify_mosquitto_hash(password + "x", cred.password_hash)


def test_names_panels_and_passwords_are_checked(devices: Devices) -> None:
    # Each would break a line-based Mosquitto file or widen a topic filter.
    for bad in ["", "a b", "a:b", "a/b", "a#", "-x", "x" * 65, "ünï"]:
        with pytest.raises(InvalidInputError):
            devices.create(bad, ["trafo1"])
    for panels in [[], ["a/b"], ["+"], ["#"], ["a b"]]:
        with pytest.raises(InvalidInputError):
            devices.create("meter", panels)
    with pytest.raises(InvalidInputError):
        devices.create("meter", ["trafo1"], password="short")
    with pytest.raises(InvalidInputError):
        devices.create("meter", ["trafo1"], password="a-long-password\nuser evil")
    assert devices.all() == []


def test_names_are_unique_ignoring_case(devices: Devices) -> None:
    devices.create("Meter-01", ["trafo1"])
    with pytest.raises(ConflictError):
        devices.create("meter-01", ["trafo2"])


def test_disable_passwd_panels_delete(devices: Devices) -> None:
    _record, first = devices.create("gw", ["trafo1"])
    devices.create("other", ["trafo9"])
    devices.set_disabled("gw", True)
    assert devices.get("gw")["disabled"] is True
    assert [c.name for c in devices.credentials()] == ["other"]
    devices.set_disabled("gw", False)
    second = devices.set_password("gw", "a-chosen-password-1234")
    assert second == "a-chosen-password-1234"
    cred = next(c for c in devices.credentials() if c.name == "gw")
    assert verify_mosquitto_hash(second, cred.password_hash)
    assert not verify_mosquitto_hash(first, cred.password_hash)
    devices.set_panels("gw", ["trafo3"])
    assert devices.get("gw")["panels"] == ["trafo3"]
    devices.delete("gw")
    with pytest.raises(NotFoundError):
        devices.get("gw")
    assert [c.name for c in devices.credentials()] == ["other"]
    assert devices.count() == 1
    # A new device of the same name does not inherit the deleted one's panels.
    devices.create("gw", ["trafo4"])
    assert devices.get("gw")["panels"] == ["trafo4"]


# -- the command line ---------------------------------------------------------------------


@pytest.fixture
def cli(database_url: str, tmp_path: Path, prefix: str) -> Callable[..., Result]:
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None, **env: str) -> Result:
        cwd = os.getcwd()
        os.chdir(tmp_path)  # no stray .env
        try:
            return runner.invoke(
                device,
                list(args),
                input=stdin,
                env={"PELBIOT_DATABASE_URL": database_url, "PELBIOT_TOPIC_PREFIX": prefix, **env},
            )
        finally:
            os.chdir(cwd)

    return run


def _stdout(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return str(result.stdout)


def test_cli_create_list_disable_delete(cli: Callable[..., Any]) -> None:
    created = cli("create", "meter-01", "--panel", "trafo1", "--panel", "trafo2")
    password = _stdout(created).strip()
    assert len(password) >= 32 and "\n" not in password
    assert "not shown again" in created.stderr
    chosen = cli("create", "meter-02", "--panel", "trafo3", "--password-stdin", stdin="x" * 20)
    assert _stdout(chosen) == ""  # a password given is never echoed
    listing = _stdout(cli("list"))
    assert "meter-01" in listing and "trafo1,trafo2" in listing and password not in listing
    assert "[disabled]" in _stdout(cli("disable", "meter-01")) + _stdout(cli("list"))
    assert _stdout(cli("passwd", "meter-01")).strip() != password
    _stdout(cli("delete", "meter-02"))
    assert "meter-02" not in _stdout(cli("list"))
    dup = cli("create", "METER-01", "--panel", "trafo1")
    assert dup.exit_code != 0 and "already exists" in dup.output
    missing = cli("disable", "nobody")
    assert missing.exit_code != 0 and "not found" in missing.output


def test_cli_writes_mosquitto_files_on_every_change(
    cli: Callable[..., Any], tmp_path: Path, prefix: str
) -> None:
    pw_file, acl_file = tmp_path / "mosq" / "passwd", tmp_path / "mosq" / "acl"
    env = {
        "PELBIOT_MOSQUITTO_PASSWORD_FILE": str(pw_file),
        "PELBIOT_MOSQUITTO_ACL_FILE": str(acl_file),
        "PELBIOT_MQTT_URL": "mqtt://ingest:ingest-secret-123@127.0.0.1:1883",
    }
    result = cli("create", "meter-01", "--panel", "trafo1", **env)
    password = _stdout(result).strip()
    assert "reload Mosquitto" in result.stderr or "Reload Mosquitto" in result.stderr
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(acl_file.stat().st_mode) == 0o640
    entries = dict(
        line.split(":", 1) for line in pw_file.read_text().splitlines() if not line.startswith("#")
    )
    assert set(entries) == {"ingest", "meter-01"}
    assert verify_mosquitto_hash(password, entries["meter-01"])
    assert verify_mosquitto_hash("ingest-secret-123", entries["ingest"])
    acl = acl_file.read_text()
    assert f"user meter-01\ntopic write {prefix}/trafo1/#\n" in acl
    assert f"user ingest\ntopic readwrite {prefix}/#\n" in acl
    ingest_hash = entries["ingest"]
    _stdout(cli("disable", "meter-01", **env))
    assert "meter-01" not in pw_file.read_text() and "meter-01" not in acl_file.read_text()
    assert f"ingest:{ingest_hash}" in pw_file.read_text()  # unchanged hash: no needless churn
    assert not [p for p in pw_file.parent.iterdir() if p.name.startswith(".")]  # no temp left
    # Without the settings, export-mosquitto writes where it is told.
    out = tmp_path / "elsewhere"
    _stdout(cli("enable", "meter-01"))
    _stdout(
        cli(
            "export-mosquitto",
            "--password-file",
            str(out / "pw"),
            "--acl-file",
            str(out / "acl"),
            PELBIOT_MQTT_USERNAME="ingest",
        )
    )
    assert "meter-01:$7$" in (out / "pw").read_text()
    assert "user ingest" in (out / "acl").read_text()
    refused = cli("create", "ingest", "--panel", "trafo1", **env)
    assert refused.exit_code != 0 and "ingest user" in refused.output


def test_cli_refuses_half_the_mosquitto_settings(cli: Callable[..., Any], tmp_path: Path) -> None:
    result = cli(
        "create",
        "meter-01",
        "--panel",
        "trafo1",
        PELBIOT_MOSQUITTO_PASSWORD_FILE=str(tmp_path / "passwd"),
    )
    assert result.exit_code != 0
    assert "PELBIOT_MOSQUITTO_ACL_FILE" in result.output
    assert not (tmp_path / "passwd").exists()
    assert _stdout(cli("list")).strip() == "no devices yet"


def test_cli_says_when_the_files_cannot_be_written(cli: Callable[..., Any], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = cli(
        "create",
        "meter-01",
        "--panel",
        "trafo1",
        PELBIOT_MOSQUITTO_PASSWORD_FILE=str(blocker / "passwd"),
        PELBIOT_MOSQUITTO_ACL_FILE=str(blocker / "acl"),
    )
    assert result.exit_code == 1 and "export-mosquitto" in result.output
    assert "Traceback" not in result.output
    assert "meter-01" in _stdout(cli("list"))


# -- reserved names and concurrent writes ---------------------------------------------------


def test_reserved_names_are_refused_ignoring_case(database_url: str) -> None:
    # A device named like PELBIOT's own ingest user broke every later Mosquitto export.
    with device_registry(database_url, reserved=("pelbiot", "demo-simulator")) as registry:
        for name in ["pelbiot", "PELBIOT", "Demo-Simulator"]:
            with pytest.raises(ConflictError, match="reserved"):
                registry.create(name, ["trafo1"])
        assert registry.all() == []


def test_reserved_names_come_from_the_settings() -> None:
    assert reserved_device_names(Settings()) >= {"pelbiot", DEMO_DEVICE}
    assert "bus" in reserved_device_names(Settings(mqtt_username="Bus"))
    assert "bus" in reserved_device_names(Settings(mqtt_url="mqtt://bus:pw@127.0.0.1:1883"))


def test_cli_refuses_reserved_names(cli: Callable[..., Any]) -> None:
    for name, env in [
        ("pelbiot", {}),  # the embedded broker's ingest user when none is set
        ("Ingest", {"PELBIOT_MQTT_USERNAME": "ingest"}),
        ("demo-simulator", {}),
    ]:
        refused = cli("create", name, "--panel", "trafo1", **env)
        assert refused.exit_code == 1 and "reserved" in refused.output, refused.output
        assert "Traceback" not in refused.output
    assert _stdout(cli("list")).strip() == "no devices yet"


def _lock_waiters(url: str) -> int:
    sql = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return int(query(url, sql)[0][0])


def _race(url: str, holder_sql: list[str], call: Callable[[], Any]) -> BaseException | None:
    """Run ``call`` in a thread while another connection holds ``holder_sql`` uncommitted;
    commit once ``call`` waits for its locks (or has finished); return what ``call`` raised."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            raised.append(exc)

    with psycopg.connect(url) as holder:
        for sql in holder_sql:
            holder.execute(sql)  # type: ignore[arg-type]
        worker = threading.Thread(target=run)
        worker.start()
        wait_for(lambda: not worker.is_alive() or _lock_waiters(url) > 0, 10, "the writer to wait")
        holder.commit()
    worker.join(10)
    assert not worker.is_alive()
    return raised[0] if raised else None


postgres_only = pytest.mark.skipif(
    backend() != "postgresql",
    reason="SQLite serialises writers (BEGIN IMMEDIATE): no interleaving to race",
)


def test_names_are_unique_ignoring_case_in_the_database(
    database_url: str, devices: Devices
) -> None:
    devices.create("Meter-01", ["trafo1"])
    engine = make_engine(database_url)
    try:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(
                insert(schema.devices).values(
                    name="meter-01", password_hash="x", created_ms=0, updated_ms=0, created_by="t"
                )
            )
    finally:
        engine.dispose()


@postgres_only
def test_a_concurrent_look_alike_create_is_a_conflict(database_url: str, devices: Devices) -> None:
    raised = _race(
        database_url,
        [
            "INSERT INTO devices (name, password_hash, created_ms, updated_ms, created_by) "
            "VALUES ('Meter-01', 'x', 0, 0, 'test')"
        ],
        lambda: devices.create("meter-01", ["trafo1"]),
    )
    assert isinstance(raised, ConflictError), raised
    assert [d["name"] for d in devices.all()] == ["Meter-01"]


@postgres_only
@pytest.mark.parametrize("change", ["panels", "disable", "passwd"])
def test_a_change_racing_a_delete_is_not_found(
    database_url: str, devices: Devices, change: str
) -> None:
    devices.create("gw", ["trafo1"])
    calls: dict[str, Callable[[], Any]] = {
        "panels": lambda: devices.set_panels("gw", ["trafo2"]),
        "disable": lambda: devices.set_disabled("gw", True),
        "passwd": lambda: devices.set_password("gw"),
    }
    raised = _race(
        database_url,
        [
            "DELETE FROM device_panels "
            "WHERE device_id = (SELECT id FROM devices WHERE name = 'gw')",
            "DELETE FROM devices WHERE name = 'gw'",
        ],
        calls[change],
    )
    assert isinstance(raised, NotFoundError), raised  # not a foreign-key 500, not a silent no-op
    assert devices.all() == []
    assert query(database_url, "SELECT count(*) FROM device_panels") == [(0,)]
