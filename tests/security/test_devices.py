"""The device registry (SQLite and PostgreSQL) and ``pelbiot device ...`` from the shell."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pelbiot.cli.devices import device
from pelbiot.errors import ConflictError, InvalidInputError, NotFoundError
from pelbiot.security.audit import AuditLog
from pelbiot.security.broker_acl import verify_mosquitto_hash
from pelbiot.security.devices import Devices
from pelbiot.storage.db import make_engine
from pelbiot.storage.migrations import upgrade


@pytest.fixture
def devices(database_url: str) -> Iterator[Devices]:
    engine = make_engine(database_url)
    upgrade(engine)
    try:
        yield Devices(engine, AuditLog(engine))
    finally:
        engine.dispose()


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
