"""``pelbiot device ...``: MQTT credentials per meter or gateway, and Mosquitto's files.

Every change rewrites Mosquitto's password and ACL files when ``PELBIOT_MOSQUITTO_PASSWORD_FILE``
and ``PELBIOT_MOSQUITTO_ACL_FILE`` are set; ``export-mosquitto`` writes them on demand. The
embedded broker reads the registry itself and needs neither.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click

from pelbiot.errors import PelbiotError
from pelbiot.security.audit import AuditLog
from pelbiot.security.broker_files import (
    configured_files,
    export_mosquitto,
    reserved_device_names,
)
from pelbiot.security.devices import Devices
from pelbiot.settings import Settings, load_settings
from pelbiot.storage.db import make_engine
from pelbiot.storage.migrations import upgrade

RELOAD_HINT = (
    "Reload Mosquitto so it reads them: systemctl reload mosquitto (or kill -HUP <mosquitto pid>)."
)


@contextmanager
def _registry() -> Iterator[tuple[Devices, Settings]]:
    try:
        settings = load_settings()
        configured_files(settings)  # half of the pair set: refuse before changing anything
    except PelbiotError as exc:
        raise click.ClickException(exc.message) from None
    engine = make_engine(settings.effective_database_url)
    try:
        upgrade(engine)
        registry = Devices(engine, AuditLog(engine), reserved=reserved_device_names(settings))
        yield registry, settings
    except PelbiotError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        engine.dispose()


def _export(devices: Devices, settings: Settings, files: tuple[Path, Path] | None) -> None:
    """Write the files (given, or from the settings); say what to do next."""
    files = files or configured_files(settings)
    if files is None:
        click.echo(
            "(Mosquitto files not written: set PELBIOT_MOSQUITTO_PASSWORD_FILE and "
            "PELBIOT_MOSQUITTO_ACL_FILE, or run pelbiot device export-mosquitto)",
            err=True,
        )
        return
    try:
        result = export_mosquitto(devices, settings, *files)
    except OSError as exc:
        raise click.ClickException(
            f"the change is saved, but writing the Mosquitto files failed ({exc}); fix that "
            "and run pelbiot device export-mosquitto"
        ) from None
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"wrote {result.password_file} and {result.acl_file} ({result.devices} enabled "
        f"devices). {RELOAD_HINT}",
        err=True,
    )


def _read_password(from_stdin: bool) -> str | None:
    if not from_stdin:
        return None
    return sys.stdin.readline().rstrip("\r\n")


def _show_password(password: str) -> None:
    click.echo(password)
    click.echo("(the device's MQTT password: store it now, it is not shown again)", err=True)


@click.group()
def device() -> None:
    """MQTT credentials for meters and gateways (one username per device)."""


@device.command("create")
@click.argument("name")
@click.option("--panel", "panels", multiple=True, required=True, help="Repeatable.")
@click.option("--password-stdin", "password_stdin", is_flag=True, help="Else one is generated.")
def create(name: str, panels: tuple[str, ...], password_stdin: bool) -> None:
    """Create a device that may publish under <prefix>/<panel>/... for each --panel."""
    password = _read_password(password_stdin)
    with _registry() as (devices, settings):
        record, secret = devices.create(name, panels, password=password)
        if password is None:
            _show_password(secret)
        click.echo(f"created device {name!r} for panels {', '.join(record['panels'])}", err=True)
        _export(devices, settings, None)


@device.command("list")
def list_devices() -> None:
    """List devices and their panels (never a password)."""
    with _registry() as (devices, _settings):
        rows = devices.all()
    if not rows:
        click.echo("no devices yet")
    for row in rows:
        created = datetime.fromtimestamp(row["created_ms"] / 1000, UTC).strftime("%Y-%m-%d")
        state = "  [disabled]" if row["disabled"] else ""
        click.echo(f"{row['name']:<32} {','.join(row['panels']):<40} {created}{state}")


@device.command("passwd")
@click.argument("name")
@click.option("--password-stdin", "password_stdin", is_flag=True, help="Else one is generated.")
def passwd(name: str, password_stdin: bool) -> None:
    """Give a device a new password (the old one stops working once the broker reloads)."""
    password = _read_password(password_stdin)
    with _registry() as (devices, settings):
        secret = devices.set_password(name, password)
        if password is None:
            _show_password(secret)
        _export(devices, settings, None)


@device.command("panels")
@click.argument("name")
@click.option("--panel", "panels", multiple=True, required=True, help="Repeatable.")
def set_panels(name: str, panels: tuple[str, ...]) -> None:
    """Replace the panels a device may publish for."""
    with _registry() as (devices, settings):
        devices.set_panels(name, panels)
        click.echo(f"device {name!r} now publishes for {', '.join(sorted(set(panels)))}")
        _export(devices, settings, None)


@device.command("disable")
@click.argument("name")
def disable(name: str) -> None:
    """Refuse a device (kept in the list; enable brings it back)."""
    with _registry() as (devices, settings):
        devices.set_disabled(name, True)
        click.echo(f"device {name!r} disabled")
        _export(devices, settings, None)


@device.command("enable")
@click.argument("name")
def enable(name: str) -> None:
    """Accept a disabled device again."""
    with _registry() as (devices, settings):
        devices.set_disabled(name, False)
        click.echo(f"device {name!r} enabled")
        _export(devices, settings, None)


@device.command("delete")
@click.argument("name")
def delete(name: str) -> None:
    """Delete a device."""
    with _registry() as (devices, settings):
        devices.delete(name)
        click.echo(f"device {name!r} deleted")
        _export(devices, settings, None)


@device.command("export-mosquitto")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Default: PELBIOT_MOSQUITTO_PASSWORD_FILE.",
)
@click.option(
    "--acl-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Default: PELBIOT_MOSQUITTO_ACL_FILE.",
)
def export(password_file: Path | None, acl_file: Path | None) -> None:
    """Write Mosquitto's password_file and acl_file from the registry (atomically)."""
    with _registry() as (devices, settings):
        password_file = password_file or settings.mosquitto_password_file
        acl_file = acl_file or settings.mosquitto_acl_file
        if password_file is None or acl_file is None:
            raise click.UsageError(
                "give --password-file and --acl-file (or set PELBIOT_MOSQUITTO_PASSWORD_FILE "
                "and PELBIOT_MOSQUITTO_ACL_FILE)"
            )
        _export(devices, settings, (password_file, acl_file))
